"""The seeded fraud generator and its drift knobs, the bundled example datasets, and lineage tags."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from airflow_mlops import __version__
from airflow_mlops.examples.datasets import FRAUD_ROWS, diabetes_frame, fraud_batch, write_example_data
from airflow_mlops.examples.fraud import COLUMNS, MERCHANT_CATEGORIES, generate_transactions
from airflow_mlops.lineage import LINEAGE_KEYS, code_version, git_sha, lineage_tags

REPO = Path(__file__).resolve().parents[2]
ROWS = 5000


def online_fraud_rate(frame: pd.DataFrame) -> float:
    return float(frame.loc[frame["merchant_category"] == "online", "is_fraud"].mean())


# --- determinism -------------------------------------------------------------------------------------------


def test_same_seed_same_frame() -> None:
    assert_frame_equal(generate_transactions(500, seed=7), generate_transactions(500, seed=7))
    assert_frame_equal(
        generate_transactions(500, seed=7, data_drift=0.4, concept_drift=0.6),
        generate_transactions(500, seed=7, data_drift=0.4, concept_drift=0.6),
    )


def test_different_seed_different_frame() -> None:
    a, b = generate_transactions(500, seed=7), generate_transactions(500, seed=8)
    with pytest.raises(AssertionError):
        assert_frame_equal(a, b)
    assert not a["amount"].equals(b["amount"])


def test_schema() -> None:
    frame = generate_transactions(200, seed=0)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 200
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        "amount": "float64",
        "hour": "int64",
        "distance_from_home_km": "float64",
        "txn_count_24h": "int64",
        "account_age_days": "int64",
        "card_present": "int64",
        "merchant_category": "object",
        "is_fraud": "int64",
    }
    assert set(frame["merchant_category"]) <= set(MERCHANT_CATEGORIES)
    assert set(frame["is_fraud"]) == {0, 1}
    assert set(frame["card_present"]) == {0, 1}
    assert frame["hour"].between(0, 23).all()
    assert (frame["amount"] > 0).all()
    assert frame["account_age_days"].between(1, 3649).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_fraud_rate_is_plausible(seed: int) -> None:
    # observed ~5.5-5.9 % for these seeds (the module docstring says "about 8 %"; see the test report)
    rate = generate_transactions(ROWS, seed=seed)["is_fraud"].mean()
    assert 0.04 <= rate <= 0.08


# --- drift knobs -------------------------------------------------------------------------------------------


def test_data_drift_moves_the_features() -> None:
    ref = generate_transactions(ROWS, seed=0)
    drifted = generate_transactions(ROWS, seed=0, data_drift=1.0)

    assert drifted["amount"].mean() > 1.5 * ref["amount"].mean()
    online_ref = (ref["merchant_category"] == "online").mean()
    online_drifted = (drifted["merchant_category"] == "online").mean()
    assert online_drifted > online_ref + 0.1
    assert drifted["card_present"].mean() < ref["card_present"].mean() - 0.2
    assert drifted["txn_count_24h"].mean() > ref["txn_count_24h"].mean() + 1.5


def test_data_drift_is_gradual() -> None:
    means = [generate_transactions(ROWS, seed=0, data_drift=d)["amount"].mean() for d in (0.0, 0.5, 1.0)]
    assert means[0] < means[1] < means[2]


def test_concept_drift_changes_labels_not_features() -> None:
    ref = generate_transactions(ROWS, seed=0)
    drifted = generate_transactions(ROWS, seed=0, concept_drift=1.0)

    assert_frame_equal(ref.drop(columns="is_fraud"), drifted.drop(columns="is_fraud"))
    assert online_fraud_rate(drifted) > 2 * online_fraud_rate(ref)
    assert online_fraud_rate(drifted) > 0.12
    # outside online, the reference world's big/far/night fraud fades
    offline = ref["merchant_category"] != "online"
    assert drifted.loc[offline, "is_fraud"].mean() < ref.loc[offline, "is_fraud"].mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"n_rows": 0}, "n_rows: got 0; expected a positive number of rows", id="zero-rows"),
        pytest.param({"n_rows": -5}, "n_rows: got -5; expected a positive number of rows", id="negative-rows"),
        pytest.param({"data_drift": 1.5}, "data_drift: got 1.5; expected a number between 0 and 1", id="data-high"),
        pytest.param({"data_drift": -0.1}, "data_drift: got -0.1; expected a number between 0 and 1", id="data-low"),
        pytest.param(
            {"concept_drift": 2}, "concept_drift: got 2; expected a number between 0 and 1", id="concept-high"
        ),
        pytest.param(
            {"concept_drift": float("nan")},
            "concept_drift: got nan; expected a number between 0 and 1",
            id="concept-nan",
        ),
    ],
)
def test_invalid_knobs(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as e:
        generate_transactions(**{"n_rows": 10, **kwargs})  # type: ignore[arg-type]
    assert str(e.value) == message


def test_knob_bounds_are_inclusive() -> None:
    assert len(generate_transactions(10, data_drift=0.0, concept_drift=1.0)) == 10
    assert len(generate_transactions(10, data_drift=1.0, concept_drift=0.0)) == 10


# --- example datasets --------------------------------------------------------------------------------------


def test_fraud_batch_is_seeded_by_batch_number() -> None:
    batch = fraud_batch(2)
    assert len(batch) == FRAUD_ROWS == 6000
    assert_frame_equal(batch, generate_transactions(6000, seed=2))


def test_diabetes_frame() -> None:
    frame = diabetes_frame()
    assert frame.shape == (442, 12)
    assert list(frame.columns) == [
        "age",
        "sex",
        "bmi",
        "bp",
        "s1",
        "s2",
        "s3",
        "s4",
        "s5",
        "s6",
        "progression",
        "age_band",
    ]
    assert set(frame["sex"]) == {"sex_1", "sex_2"}
    assert frame["age_band"].value_counts().to_dict() == {"40_to_59": 222, "under_40": 117, "60_plus": 103}
    assert frame["progression"].between(25, 346).all()
    # original units, not scikit-learn's scaled features
    assert frame["bmi"].between(18, 43).all()
    assert frame["age"].min() == 19 and frame["age"].max() == 79
    young = frame["age"] <= 39
    assert (frame.loc[young, "age_band"] == "under_40").all()


def test_write_example_data_reproduces_shipped_files(tmp_path: Path) -> None:
    written = write_example_data(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "fraud/transactions_batch_001.csv",
        "diabetes/diabetes.csv",
        "tickets/tickets.csv",
    ]
    for path in written:
        shipped = REPO / "dags" / "data" / path.relative_to(tmp_path)
        assert path.read_bytes() == shipped.read_bytes(), f"{shipped} differs from what the generator writes"


# --- lineage -----------------------------------------------------------------------------------------------


def test_code_version_honours_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_MLOPS_CODE_VERSION", "release-2024.06+build.7")
    assert code_version(tmp_path / "fraud.yaml") == "release-2024.06+build.7"


def test_code_version_outside_git_is_the_package_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_MLOPS_CODE_VERSION", "")  # empty means "not set"
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    git_sha.cache_clear()
    assert code_version(tmp_path / "fraud.yaml") == f"airflow-mlops=={__version__}"
    assert __version__ == importlib.metadata.version("airflow-mlops")


def test_code_version_in_a_git_checkout_adds_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_MLOPS_CODE_VERSION", raising=False)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        pytest.skip("the repository is not a git checkout here")
    git_sha.cache_clear()
    version = code_version(REPO / "dags" / "configs" / "fraud.yaml")
    assert version == f"airflow-mlops=={__version__}+g{head.stdout.strip()[:12]}"
    assert re.fullmatch(r"airflow-mlops==\d+\.\d+\.\d+\S*\+g[0-9a-f]{12}", version)


def test_lineage_tags() -> None:
    tags = lineage_tags(
        data_uri="s3://bucket/a.csv",
        data_sha256="d" * 64,
        config_sha256="c" * 64,
        code="airflow-mlops==0.1.0",
        seed=42,
        dag_run_id="manual__1",
    )
    assert tuple(tags) == LINEAGE_KEYS
    assert tags["mlops.seed"] == "42"
    assert all(isinstance(v, str) for v in tags.values())
