"""``airflow-mlops dry-gate``: train on a sample, run the gates without a champion, register nothing.

In-process through ``airflow_mlops.cli.main`` (``capsys``) for exit codes and messages, and once in a
fresh interpreter with an MLflow tracking URI, an empty working directory and an empty TMPDIR, to prove
that nothing reaches MLflow and no file is left behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_mlops.cli import main
from airflow_mlops.config.loader import load_config
from airflow_mlops.gates.dry_run import dry_gate, take_sample

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "configs"
FRAUD_DATA = REPO / "dags" / "data" / "fraud" / "transactions_batch_001.csv"


@pytest.mark.integration  # trains on the example data (~6 s)
def test_example_configs_pass(capsys: pytest.CaptureFixture[str]) -> None:
    fraud, diabetes = EXAMPLES / "fraud.yaml", EXAMPLES / "diabetes.yaml"

    assert main(["dry-gate", str(fraud), str(diabetes), "--sample-rows", "3000"]) == 0

    out, err = capsys.readouterr()
    assert f"## Dry gate: {fraud} (fraud) — **PASSED**" in out
    assert f"## Dry gate: {diabetes} (diabetes) — **PASSED**" in out
    assert (
        "- sample: 3000 of 6000 rows (seed 42, stratified on is_fraud); trained on 2250, gated on 750 held-out rows"
        in out
    )
    assert "- sample: 442 of 442 rows (all rows); trained on 331, gated on 111 held-out rows" in out
    # no champion: the comparison is reported as skipped, the absolute checks decide
    assert "| champion:roc_auc | champion |  |  | skipped | no champion yet; absolute thresholds decide |" in out
    for check in ("threshold:roc_auc", "threshold:recall", "behaviour:typical restaurant bill", "slice:sex:mae"):
        assert re.search(rf"^\| {re.escape(check)} \| .* \| pass \|", out, re.MULTILINE), check
    assert err.endswith("dry gate: 2 of 2 config(s) passed\n")
    assert "FAIL" not in err
    # the examples' attributions: method auto, so SHAP (the explain extra is installed for the tests)
    assert out.count("## Feature attributions\n\nMethod: **shap** — mean \\|SHAP value\\| of ") == 2


def test_a_threshold_no_candidate_can_meet_fails_and_names_the_check(
    workspace: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workspace.write_config("fraud", overrides={"gates": {"thresholds": [{"metric": "roc_auc", "min": 0.999}]}})

    assert main(["dry-gate", str(config)]) == 1

    out, err = capsys.readouterr()
    assert f"## Dry gate: {config} (fraud) — **FAILED**" in out
    assert re.search(r"^\| threshold:roc_auc \| threshold \| 0\.\d{4} \| >= 0\.999 \| fail \|", out, re.MULTILINE)
    lines = err.splitlines()
    assert lines[0] == f"FAIL {config}"
    assert re.fullmatch(rf"  {re.escape(str(config))}: threshold:roc_auc \(fail: 0\.\d{{4}} vs >= 0\.999\)", lines[1])
    assert lines[-1] == "dry gate: 0 of 1 config(s) passed"


def test_json_report_per_config(workspace: Any, capsys: pytest.CaptureFixture[str]) -> None:
    good = workspace.write_config("diabetes")
    bad = workspace.write_config(
        "fraud",
        overrides={"gates": {"behaviour": None, "slices": [], "thresholds": [{"metric": "recall", "min": 1.0}]}},
    )

    assert main(["dry-gate", "--json", str(good), str(bad)]) == 1

    document = json.loads(capsys.readouterr().out)
    assert document["result"] == "failed"
    by_model = {item["model"]: item for item in document["configs"]}
    assert [by_model["diabetes"]["result"], by_model["fraud"]["result"]] == ["passed", "failed"]
    fraud = by_model["fraud"]
    assert (fraud["path"], fraud["error"], fraud["rows"], fraud["sampled_rows"]) == (str(bad), None, 6000, 5000)
    assert fraud["report"]["version"] is None and fraud["report"]["run_id"] is None  # nothing registered
    assert [(c["name"], c["status"]) for c in fraud["report"]["checks"]] == [
        ("threshold:recall", "fail"),
        ("champion:roc_auc", "skipped"),
    ]
    assert "champion comparison" in fraud["not_checked"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"estimator": {"seed": -1}},
            "{path}: estimator.seed: got -1; expected: input should be greater than or equal to 0",
            id="schema",
        ),
        pytest.param(
            {"estimator": {"params": {"C": -1.0}}},
            "{path}: estimator.params: got {'C': -1.0, 'class_weight': 'balanced', 'max_iter': 1000}; "
            "LogisticRegression rejected them: ",
            id="estimator-params",
        ),
        pytest.param(
            {"features": {"numeric": ["amount", "no_such_column"]}},
            "{path}: data: data is missing columns ['no_such_column'] named in the config; it has 8 columns: [",
            id="missing-column",
        ),
        pytest.param(
            {"data": {"uri": "/nonexistent/transactions.csv"}},
            "{path}: data.uri: Cannot read '/nonexistent/transactions.csv': local file "
            "'/nonexistent/transactions.csv' does not exist",
            id="missing-data",
        ),
    ],
)
def test_a_bad_config_fails_naming_file_and_field(
    workspace: Any, capsys: pytest.CaptureFixture[str], overrides: dict[str, object], message: str
) -> None:
    config = workspace.write_config("fraud", overrides=overrides)

    assert main(["dry-gate", str(config), "--sample-rows", "1000"]) == 1

    out, err = capsys.readouterr()
    assert f"## Dry gate: {config} " in out and "**FAILED**" in out
    lines = err.splitlines()
    assert lines[0] == f"FAIL {config}"
    assert lines[1].startswith("  " + message.replace("{path}", str(config))), lines[1]
    assert "Traceback" not in err


def test_one_bad_config_does_not_hide_the_others(workspace: Any, capsys: pytest.CaptureFixture[str]) -> None:
    broken = workspace.config_dir / "broken.yaml"
    broken.write_text("name: broken\ntask: [not, a, task]\n")
    good = workspace.write_config("diabetes")

    assert main(["dry-gate", str(workspace.config_dir)]) == 1

    out, err = capsys.readouterr()
    assert f"## Dry gate: {good} (diabetes) — **PASSED**" in out
    assert f"FAIL {broken}" in err and f"FAIL {good}" not in err
    assert err.endswith("dry gate: 1 of 2 config(s) passed\n")


def test_data_uri_replaces_the_configs_data(
    workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pd.read_csv(FRAUD_DATA).head(2000).to_csv(tmp_path / "small.csv", index=False)
    monkeypatch.chdir(tmp_path)
    config = workspace.write_config("fraud")  # the example, attributions off (SHAP would cost seconds here)

    assert main(["dry-gate", str(config), "--data-uri", "small.csv"]) == 0  # relative to cwd

    out = capsys.readouterr().out
    assert "- sample: 2000 of 2000 rows (all rows); trained on 1500, gated on 500 held-out rows" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--sample-rows", "0"], "argument --sample-rows: got 0; expected a positive number", id="rows"),
        pytest.param(
            ["--data-uri", "x.csv"], "--data-uri replaces one config's data.uri; give exactly one config", id="uri"
        ),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dry-gate", str(EXAMPLES), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_no_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-gate", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"no config files found in [{str(tmp_path)!r}]\n"


# --- the sample ------------------------------------------------------------------------------------------


def test_the_sample_is_seeded_stratified_and_in_row_order() -> None:
    config = load_config(EXAMPLES / "fraud.yaml").config
    frame = pd.read_csv(FRAUD_DATA)

    sample, how = take_sample(frame, config, 1000)
    again, _ = take_sample(frame, config, 1000)
    other, _ = take_sample(
        frame, config.model_copy(update={"estimator": config.estimator.model_copy(update={"seed": 1})}), 1000
    )

    assert how == "seed 42, stratified on is_fraud"
    assert sample.index.equals(again.index)  # reproducible
    assert not sample.index.equals(other.index)  # the config's seed decides
    assert sample.index.is_monotonic_increasing  # the data's row order
    shares = frame["is_fraud"].value_counts() * 1000 / len(frame)
    assert (sample["is_fraud"].value_counts() - shares).abs().max() <= 0.5  # each class keeps its share
    assert take_sample(frame, config, 6000) == (frame, "all rows")


def test_regression_samples_exactly_the_rows_asked_for() -> None:
    loaded = load_config(EXAMPLES / "diabetes.yaml")
    frame = pd.read_csv(REPO / "dags" / "data" / "diabetes" / "diabetes.csv")
    sample, how = take_sample(frame, loaded.config, 100)
    assert (len(sample), how) == (100, "seed 7")


def test_the_result_is_an_error_not_an_exception_when_the_sample_has_one_class(workspace: Any) -> None:
    config = workspace.write_config("fraud")
    result = dry_gate(config, sample_rows=10)  # ~0 fraud rows in 10: stratified split is impossible
    assert not result.passed and result.report is None
    assert result.error is not None
    assert result.error.startswith(f"{config}: data: evaluation.split 'stratified': cannot split 10 rows: "), result


# --- nothing is written ----------------------------------------------------------------------------------

_PROBE = """
import sys
from airflow_mlops.cli import main
code = main(["dry-gate", *sys.argv[1:]])
print("imported:", sorted(m for m in ("mlflow", "airflow") if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.integration  # trains on the example data (~6 s)
def test_nothing_reaches_mlflow_and_no_file_is_left_behind(workspace: Any, tmp_path: Path) -> None:
    """A fresh interpreter (other tests import mlflow): the dry path never imports mlflow, so the tracking
    store named by MLFLOW_TRACKING_URI is never created, and the cwd, TMPDIR and config folder stay as they were."""
    config = workspace.write_config("fraud")
    cwd, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    store = tmp_path / "mlflow.db"
    before = sorted(workspace.config_dir.iterdir())
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}", "TMPDIR": str(tmpdir), "PYTHONWARNINGS": "ignore"}

    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(config), "--sample-rows", "2000"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "**PASSED**" in proc.stdout
    assert "imported: []" in proc.stderr  # neither mlflow nor Airflow
    assert not store.exists()
    assert list(cwd.iterdir()) == [] and list(tmpdir.iterdir()) == []
    assert sorted(workspace.config_dir.iterdir()) == before


def test_the_module_is_cheap_to_import() -> None:
    code = (
        "import sys, airflow_mlops.gates.dry_run, airflow_mlops.cli\n"
        "print(sorted(m for m in ('pandas', 'sklearn', 'mlflow', 'airflow', 'numpy') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
