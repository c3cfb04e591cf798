"""The third shipped example: the seeded support-ticket generator, ``dags/configs/tickets.yaml`` and its demo's
pure parts (no Airflow, no MLflow)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal

from airflow_mlops.cli import main
from airflow_mlops.config.loader import load_config
from airflow_mlops.examples.datasets import TICKETS_ROWS, tickets_frame
from airflow_mlops.examples.tickets import CHANNELS, COLUMNS, QUEUES, generate_tickets

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "configs"
SHIPPED = REPO / "dags" / "data" / "tickets" / "tickets.csv"


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return pd.read_csv(SHIPPED)


# --- the generator -----------------------------------------------------------------------------------------


def test_same_seed_same_frame_and_another_seed_another() -> None:
    assert_frame_equal(generate_tickets(400, seed=3), generate_tickets(400, seed=3))
    with pytest.raises(AssertionError):
        assert_frame_equal(generate_tickets(400, seed=3), generate_tickets(400, seed=4))


def test_the_shipped_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    written = tmp_path / "tickets.csv"
    tickets_frame().to_csv(written, index=False)
    assert written.read_bytes() == SHIPPED.read_bytes()


def test_shape_and_string_classes(shipped: pd.DataFrame) -> None:
    assert list(shipped.columns) == list(COLUMNS)
    assert len(shipped) == TICKETS_ROWS
    assert shipped.notna().all().all()
    shares = shipped["queue"].value_counts(normalize=True)
    assert sorted(shares.index) == sorted(QUEUES) == ["account", "billing", "sales", "technical"]
    assert shares.min() > 0.1, shares.to_dict()  # every queue is a real class, not a handful of rows
    assert set(shipped["channel"]) == set(CHANNELS)


def test_created_at_orders_four_months_and_gives_the_hour(shipped: pd.DataFrame) -> None:
    created = pd.to_datetime(shipped["created_at"], format="%Y-%m-%dT%H:%M:%S")
    assert created.is_monotonic_increasing
    assert created.min() >= pd.Timestamp("2024-01-01") and created.max() < pd.Timestamp("2024-04-30")
    assert (created.max() - created.min()).days >= 110
    assert (created.dt.hour == shipped["hour"]).all()


def test_the_queue_mix_drifts_over_time(shipped: pd.DataFrame) -> None:
    """Technical tickets grow and billing ones shrink from the oldest quarter of the rows to the newest."""
    quarter = len(shipped) // 4
    oldest = shipped["queue"].iloc[:quarter].value_counts(normalize=True)
    newest = shipped["queue"].iloc[-quarter:].value_counts(normalize=True)
    assert newest["technical"] - oldest["technical"] > 0.08, (oldest.to_dict(), newest.to_dict())
    assert oldest["billing"] - newest["billing"] > 0.05, (oldest.to_dict(), newest.to_dict())


def test_a_later_export_continues_the_drift() -> None:
    later = generate_tickets(TICKETS_ROWS, seed=2, start="2024-04-30", days=60, mix_progress=(1.0, 1.5))
    assert later["created_at"].min() >= "2024-04-30"
    assert later["queue"].value_counts(normalize=True)["technical"] > 0.43  # the shipped file's last days: ~0.42


def test_features_carry_signal_about_the_queue(shipped: pd.DataFrame) -> None:
    by_queue = shipped.groupby("queue")
    assert by_queue["message_length"].median().idxmax() == "technical"
    assert by_queue["attachments"].mean().idxmax() == "technical"
    assert by_queue["account_age_days"].median().idxmin() == "sales"
    assert pd.crosstab(shipped["queue"], shipped["channel"]).loc["billing"].idxmax() == "email"
    assert pd.crosstab(shipped["queue"], shipped["customer_tier"]).loc["sales"].idxmax() == "free"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_rows": 0}, r"n_rows: got 0; expected a positive number of rows"),
        ({"days": 0}, r"days: got 0; expected a positive number of days"),
        ({"mix_progress": (0.0, 2.5)}, r"mix_progress: got \(0.0, 2.5\); expected two numbers between 0 and 2.0"),
        ({"mix_progress": (-0.1, 1.0)}, r"mix_progress: got \(-0.1, 1.0\)"),
    ],
    ids=["no-rows", "no-days", "drift-too-far", "drift-before-start"],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_tickets(**kwargs)  # type: ignore[arg-type]


# --- the config --------------------------------------------------------------------------------------------


def test_the_config_is_a_multiclass_model_with_a_time_split(shipped: pd.DataFrame) -> None:
    loaded = load_config(EXAMPLES / "tickets.yaml")
    config = loaded.config
    assert (config.name, config.task, config.target, config.schedule) == ("tickets", "classification", "queue", None)
    assert config.positive_class is None  # four classes
    assert (config.split, config.evaluation.time_column, config.primary_metric) == ("time", "created_at", "f1_macro")
    assert config.metrics[:2] == ["f1_macro", "accuracy"] and "recall.technical" in config.metrics
    assert config.gates.champion is not None and config.gates.champion.metric == "f1_macro"
    assert "created_at" not in config.features.all
    assert set(config.features.all) | {"created_at", "queue"} == set(shipped.columns)
    queue_set = [e for e in config.expectations if e.kwargs.get("column") == "queue"]
    assert [sorted(e.kwargs["value_set"]) for e in queue_set] == [sorted(QUEUES)]
    assert loaded.resolve(config.data.uri) == str(SHIPPED.resolve())


def test_validate_config_accepts_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", str(EXAMPLES / "tickets.yaml")]) == 0
    assert capsys.readouterr().out == f"ok   {EXAMPLES / 'tickets.yaml'} (tickets)\n"


def test_behaviour_cases_name_only_known_classes_and_use_every_kind_of_check() -> None:
    config = load_config(EXAMPLES / "tickets.yaml").config
    cases = pd.read_csv(EXAMPLES / "tickets_behaviour_cases.csv")
    assert set(config.features.all) <= set(cases.columns)
    for column in ("expected", "expected_not", "probability_of"):
        named = set(cases[column].dropna())
        assert named and named <= set(QUEUES), column
    assert cases["expected_min"].notna().any() and cases["expected_max"].notna().any()


# --- the demo's pure parts ---------------------------------------------------------------------------------


def test_demo_config_points_at_a_copy_of_the_data_and_loads(tmp_path: Path) -> None:
    from airflow_mlops.examples.tickets_demo import write_tickets_config

    path = write_tickets_config(tmp_path, REPO / "dags")
    raw = yaml.safe_load(path.read_text())
    data = tmp_path.resolve() / "data" / "tickets" / "tickets.csv"
    assert raw["data"]["uri"] == str(data) and data.read_bytes() == SHIPPED.read_bytes()
    assert Path(raw["gates"]["behaviour"]["cases"]).is_file()
    assert load_config(path).config.evaluation == load_config(EXAMPLES / "tickets.yaml").config.evaluation


def test_demo_tickets_command_runs_the_tickets_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_mlops.examples import tickets_demo

    homes: list[Path] = []
    monkeypatch.setattr(tickets_demo, "run_tickets_demo", lambda home: homes.append(home) or 3)
    assert main(["demo-tickets"]) == 3
    assert main(["demo-tickets", "--home", "elsewhere"]) == 3
    assert homes == [Path(".demo-tickets"), Path("elsewhere")]
