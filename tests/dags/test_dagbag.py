"""The DAG folder parses with zero import errors, without heavy ML libraries, and survives broken configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("mlflow", "great_expectations", "evidently", "sklearn", "pandas")

PARSE_SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dags": sorted(bag.dag_ids),
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "heavy": sorted(m for m in %r if m in sys.modules),
    "warnings": {k: list(v) for k, v in bag.captured_warnings.items()},
    "docs": {d: (bag.dags[d].doc_md or "") for d in bag.dag_ids},
    "files": {d: bag.dags[d].fileloc for d in bag.dag_ids},
}))
""" % (HEAVY,)


def parse_in_fresh_process(dags_folder: Path, config_dir: Path) -> dict:
    """A fresh interpreter, so modules other tests imported cannot hide a heavy import."""
    env = {**os.environ, "AIRFLOW_MLOPS_CONFIG_DIR": str(config_dir)}
    out = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(dags_folder)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_repository_dags_parse_without_errors_or_heavy_imports() -> None:
    """The whole folder, ``dags/examples`` included (the DagBag recurses): zero errors, nothing heavy imported."""
    result = parse_in_fresh_process(REPO / "dags", REPO / "dags" / "configs")

    assert result["errors"] == {}
    assert [d for d in result["dags"] if not result["files"][d].startswith(str(REPO / "dags" / "examples"))] == [
        "diabetes__deploy",
        "diabetes__monitor",
        "diabetes__rollback",
        "diabetes__train",
        "fraud__deploy",
        "fraud__monitor",
        "fraud__rollback",
        "fraud__train",
        "tickets__deploy",
        "tickets__monitor",
        "tickets__rollback",
        "tickets__train",
    ]
    assert result["heavy"] == []


def test_every_hand_written_example_dag_parses_alone_without_heavy_imports() -> None:
    """``dags/examples``: each file defines a DAG, none imports mlflow/pandas/sklearn/GX/evidently at parse time."""
    examples = REPO / "dags" / "examples"
    result = parse_in_fresh_process(examples, REPO / "dags" / "configs")

    assert result["errors"] == {}
    assert result["heavy"] == []
    files = sorted(str(path) for path in examples.glob("*.py"))
    assert sorted(set(result["files"].values())) == files
    assert {"example_approval_answered_sensor", "example_drift_sensor", "example_model_alias_sensor"} <= set(
        result["dags"]
    )


def test_broken_config_never_hides_other_models_and_is_visible(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    good = (REPO / "dags" / "configs" / "fraud.yaml").read_text()
    (configs / "fraud.yaml").write_text(good.replace("../data/", str(REPO / "dags" / "data") + "/"))
    (configs / "churn.yaml").write_text("name: churn\ntask: classify\n")
    (configs / "broken_yaml.yaml").write_text("name: [unclosed\n")

    result = parse_in_fresh_process(REPO / "dags", configs)

    assert result["errors"] == {}
    assert [d for d in result["dags"] if not result["files"][d].startswith(str(REPO / "dags" / "examples"))] == [
        "broken_yaml__config_error",
        "churn__config_error",
        "fraud__deploy",
        "fraud__monitor",
        "fraud__rollback",
        "fraud__train",
    ]
    churn_doc = result["docs"]["churn__config_error"]
    assert "churn.yaml: task: got 'classify'; expected: input should be 'classification' or 'regression'" in churn_doc
    assert "churn.yaml: data: this field is required" in churn_doc
    assert "invalid YAML (line" in result["docs"]["broken_yaml__config_error"]
    shown = [w for ws in result["warnings"].values() for w in ws]
    assert any("churn.yaml: invalid model config" in w for w in shown), shown


@pytest.mark.integration
def test_config_error_dag_fails_with_the_error(workspace: Any, airflow_db: object) -> None:
    from airflow_mlops.factories.build import build_dags

    (workspace.config_dir / "churn.yaml").write_text("name: churn\ntask: classify\n")
    dag = build_dags(None, workspace.config_dir)["churn__config_error"]
    run = dag.test()

    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.task_id == "report_config_error" and ti.state == "failed"
