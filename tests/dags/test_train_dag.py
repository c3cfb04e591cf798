"""``<model>__train`` end to end with ``dag.test()`` on SQLite Airflow and a real local MLflow store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

pytestmark = pytest.mark.integration

LINEAGE = (
    "mlops.data_uri",
    "mlops.data_sha256",
    "mlops.config_sha256",
    "mlops.code_version",
    "mlops.seed",
    "mlops.dag_run_id",
)


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def aliases(client: Any, model: str = "fraud") -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(model).aliases.items()}


def candidate_events(model: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == f"mlops://{model}/candidate")
            .order_by(AssetEvent.id)
        ).all()
    return [dict(row[0] or {}) for row in rows]


def test_pass_path_registers_challenger_with_lineage_and_rerun_is_idempotent(workspace: Any, airflow_db: Any) -> None:
    from airflow_mlops.data.fingerprint import fingerprint

    config_path = workspace.write_config("fraud")
    dag = workspace.dag("fraud")
    logical_date = datetime(2026, 1, 5, tzinfo=UTC)
    events_before = len(candidate_events("fraud"))

    run = dag.test(logical_date=logical_date, run_after=logical_date)

    assert run.state == "success", states(run)
    client = workspace.client()
    versions = client.search_model_versions("name = 'fraud'")
    assert [str(v.version) for v in versions] == ["1"]
    version = client.get_model_version("fraud", "1")
    assert aliases(client) == {"challenger": "1"}
    assert version.tags["mlops.gate"] == "passed"
    mlflow_run = client.get_run(version.run_id)
    data_path = mlflow_run.data.tags["mlops.data_uri"]
    with open(data_path, "rb") as fh:
        assert mlflow_run.data.tags["mlops.data_sha256"] == fingerprint(fh.read())
    for key in LINEAGE:
        assert version.tags[key] == mlflow_run.data.tags[key], key
    assert version.tags["mlops.dag_run_id"] == run.run_id
    assert version.tags["mlops.seed"] == "42"
    assert version.tags["mlops.code_version"].startswith("airflow-mlops==0.1.0")
    assert set(mlflow_run.data.metrics) >= {"roc_auc", "recall", "precision", "f1", "accuracy"}
    assert mlflow_run.data.params["estimator"] == "sklearn.linear_model.LogisticRegression"
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "gate")}
    artifacts |= {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "validation")}
    artifacts |= {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "evaluation")}
    assert artifacts == {
        "gate/gate_report.json",
        "gate/gate_report.md",
        "validation/expectations.json",
        "evaluation/holdout_predictions.csv",
    }
    import mlflow

    mlflow.set_tracking_uri(workspace.tracking_uri)
    mlflow.set_registry_uri(workspace.tracking_uri)
    info = mlflow.models.get_model_info("models:/fraud/1")
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs][:2] == ["amount", "hour"]
    assert info.saved_input_example_info is not None
    events = candidate_events("fraud")
    assert len(events) == events_before + 1
    assert events[-1]["version"] == "1" and events[-1]["model"] == "fraud"
    assert str(config_path).endswith("fraud.yaml")

    # Clear and re-run every task of the same DAG run: nothing is registered or moved twice.
    rerun = dag.test(logical_date=logical_date, run_after=logical_date)

    assert rerun.run_id == run.run_id
    assert rerun.state == "success", states(rerun)
    assert [str(v.version) for v in client.search_model_versions("name = 'fraud'")] == ["1"]
    assert aliases(client) == {"challenger": "1"}
    experiment = client.get_experiment_by_name("airflow-mlops/fraud")
    assert len(client.search_runs([experiment.experiment_id])) == 1
    set_challenger = next(ti for ti in rerun.get_task_instances() if ti.task_id == "set_challenger")
    assert set_challenger.xcom_pull(task_ids="set_challenger")["alias_moved"] is False
    register = next(ti for ti in rerun.get_task_instances() if ti.task_id == "register_model")
    assert register.xcom_pull(task_ids="register_model")["created"] is False


def test_failed_expectation_fails_validation_and_trains_nothing(workspace: Any, airflow_db: Any) -> None:
    workspace.write_config(
        "fraud",
        {
            "expectations": [
                {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "max_value": 10}},
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "hour"}},
            ]
        },
    )
    run = workspace.dag("fraud").test()

    assert run.state == "failed"
    assert states(run) == {
        "fingerprint_data": "success",
        "validate_data": "failed",
        "train_model": "upstream_failed",
        "register_model": "upstream_failed",
        "gate_model": "upstream_failed",
        "set_challenger": "upstream_failed",
    }
    client = workspace.client()
    assert client.search_model_versions("name = 'fraud'") == []
    experiment = client.get_experiment_by_name("airflow-mlops/fraud")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.data.tags["mlops.validation"] == "failed"
    assert "mlops.model_uri" not in mlflow_run.data.tags
    assert mlflow_run.info.status == "FAILED"
    assert [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "validation")] == [
        "validation/expectations.json"
    ]


def test_failed_gate_moves_no_alias_and_fails_the_run(workspace: Any, airflow_db: Any) -> None:
    workspace.write_config("fraud", {"gates": {"thresholds": [{"metric": "roc_auc", "min": 0.99}]}})
    run = workspace.dag("fraud").test()

    assert run.state == "failed"
    assert states(run)["gate_model"] == "failed"
    assert states(run)["set_challenger"] == "upstream_failed"
    client = workspace.client()
    version = client.get_model_version("fraud", "1")
    assert version.tags["mlops.gate"] == "failed"
    assert aliases(client) == {}
    report = client.download_artifacts(version.run_id, "gate/gate_report.json")
    import json

    with open(report) as fh:
        body = json.load(fh)
    assert body["result"] == "failed"
    failing = [c for c in body["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failing] == ["threshold:roc_auc"]
    assert version.tags["mlops.gate_report"].endswith("gate/gate_report.md")


def test_gate_compares_with_champion_on_the_same_holdout(workspace: Any, airflow_db: Any) -> None:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    workspace.write_config("fraud")
    assert workspace.dag("fraud").test().state == "success"
    client = workspace.client()
    LocalGatewayTarget.from_options(client=client, state_url=f"sqlite:///{workspace.root / 'state.db'}").promote(
        "fraud", "1", actor="test", reason="first champion"
    )

    # A much worse candidate: absolute gates off, only the comparison with champion v1 can fail it.
    workspace.write_config(
        "fraud",
        replace={
            "estimator": {"class": "sklearn.dummy.DummyClassifier", "params": {"strategy": "prior"}},
            "gates": {"champion": {"metric": "roc_auc", "max_regression": 0.02}},
        },
    )
    run = workspace.dag("fraud").test()

    assert run.state == "failed"
    version = client.get_model_version("fraud", "2")
    assert version.tags["mlops.gate"] == "failed"
    assert aliases(client) == {"champion": "1"}
    report_path = client.download_artifacts(version.run_id, "gate/gate_report.json")
    import json

    with open(report_path) as fh:
        (check,) = [c for c in json.load(fh)["checks"] if c["kind"] == "champion"]
    assert check["status"] == "fail"
    assert check["value"] == pytest.approx(0.5)
    assert "champion v1" in check["threshold"]


def test_two_trainings_with_same_data_config_and_seed_are_identical(workspace: Any, airflow_db: Any) -> None:
    workspace.write_config("fraud")
    dag = workspace.dag("fraud")
    first, second = dag.test(), dag.test()

    assert (first.state, second.state) == ("success", "success")
    client = workspace.client()
    v1, v2 = client.get_model_version("fraud", "1"), client.get_model_version("fraud", "2")
    run1, run2 = client.get_run(v1.run_id), client.get_run(v2.run_id)
    assert run1.info.run_id != run2.info.run_id
    assert run1.data.metrics == run2.data.metrics
    assert v1.tags["mlops.data_sha256"] == v2.tags["mlops.data_sha256"]
    assert v1.tags["mlops.config_sha256"] == v2.tags["mlops.config_sha256"]
    p1 = client.download_artifacts(run1.info.run_id, "evaluation/holdout_predictions.csv")
    p2 = client.download_artifacts(run2.info.run_id, "evaluation/holdout_predictions.csv")
    with open(p1, "rb") as a, open(p2, "rb") as b:
        assert a.read() == b.read()


def test_hand_written_training_dag_without_yaml(
    workspace: Any, airflow_db: Any, request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dags/examples/example_training.py``: the training operators from a mapping, no config file,
    wired by the fingerprint task's run id; a second run is gated against the first as champion."""
    import os
    import shutil
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.deploy.promotion import Deployments

    repo = Path(__file__).parents[2]
    example = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "example_training.py"
    shutil.copy(repo / "dags" / "examples" / "example_training.py", example)  # dag.test() runs the DAG bundle
    request.addfinalizer(example.unlink)
    bag = DagBag(dag_folder=str(example))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_training")
    assert list(workspace.config_dir.iterdir()) == []  # no YAML anywhere

    first = repo / "dags" / "data" / "fraud" / "transactions_batch_001.csv"
    # the example's config names /var/lib/mlops/...: conf may point elsewhere only under [mlops] data_roots
    refused = dag.test(run_conf={"data_uri": str(first)})
    assert refused.state == "failed" and states(refused)["fingerprint_data"] == "failed"
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_ROOTS", f"{first.parent},{tmp_path}")
    run = dag.test(run_conf={"data_uri": str(first)})

    assert run.state == "success", states(run)
    client = workspace.client()
    assert aliases(client) == {"challenger": "1"}
    version = client.get_model_version("fraud", "1")
    assert version.tags["mlops.data_uri"] == str(first)
    assert version.tags["mlops.gate"] == "passed"
    Deployments(client, AuditTrail(os.environ["AIRFLOW_MLOPS_STATE_DB"])).promote("fraud", "1", actor="t", reason="r")

    from airflow_mlops.examples.datasets import fraud_batch

    second = tmp_path / "transactions_batch_002.csv"
    fraud_batch(2).to_csv(second, index=False)
    run = dag.test(run_conf={"data_uri": str(second)})
    assert run.state == "success", states(run)
    report = client.get_model_version("fraud", "2").tags["mlops.gate_report"]
    assert "champion" in Path(report.removeprefix("file://")).read_text()  # compared with champion v1


def test_resources_queue_routes_only_the_training_step(workspace: Any) -> None:
    """``resources.queue`` puts ``train_model`` on that executor queue; every other task stays on the default."""
    from airflow.configuration import conf

    default = conf.get("operators", "default_queue")
    workspace.write_config("fraud", {"resources": {"queue": "gpu"}})
    queues = {task.task_id: task.queue for task in workspace.dag("fraud").tasks}
    assert queues.pop("train_model") == "gpu"
    assert set(queues.values()) == {default}, queues
    assert "executor queue `gpu`" in (workspace.dag("fraud").doc_md or "")

    workspace.write_config("fraud")
    assert {task.queue for task in workspace.dag("fraud").tasks} == {default}
