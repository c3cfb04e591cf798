"""``<model>__monitor`` with ``dag.test()``: clean traffic -> no event; drifted traffic -> drift event; cooldown.

The prediction log is written with the real ``PredictionLog`` (as the gateway writes it), with inputs
from the fraud generator and outputs from the champion itself, spread over several hour partitions
so the summarize task is mapped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support import train_version

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def log_traffic(
    root: Path,
    client: Any,
    *,
    data_drift: float,
    seed: int,
    rows: int = 1500,
    hours: int = 3,
    review_flagged: bool = False,
) -> None:
    """Served answers of the champion over ``hours``; with ``review_flagged``, a label (fraud confirmed) a
    minute later for every answer that flagged the transaction, and none for the others."""
    import mlflow

    from airflow_mlops.examples.fraud import generate_transactions
    from airflow_mlops.prediction_log import FeedbackRecord, LocalStorage, PredictionLog, PredictionRecord

    frame = generate_transactions(rows, seed=seed, data_drift=data_drift).drop(columns=["is_fraud"])
    numeric = [c for c in frame.columns if c != "merchant_category"]
    frame[numeric] = frame[numeric].astype(float)
    model = mlflow.sklearn.load_model(client.get_model_version_download_uri("fraud", "1"))
    scores = model.predict_proba(frame)[:, 1]
    records = []
    for i, (row, score) in enumerate(zip(frame.to_dict("records"), scores, strict=True)):
        ts = END - timedelta(minutes=5) - timedelta(hours=i % hours, seconds=i)
        records.append(
            PredictionRecord(
                request_id=f"r{seed}-{i}",
                ts=ts,
                model="fraud",
                version="1",
                role="champion",
                inputs=json.dumps(row),
                output=json.dumps({"prediction": int(score >= 0.5), "score": float(score)}),
                latency_ms=1.0,
                error=None,
            )
        )
    log = PredictionLog(LocalStorage(root))
    log.append(records)
    if review_flagged:
        flagged = [r for r in records if json.loads(r.output)["prediction"] == 1]
        log.append_feedback([FeedbackRecord(r.request_id, r.ts + timedelta(minutes=1), "fraud", "1") for r in flagged])
    log.close()


@pytest.fixture
def monitored(workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    root = tmp_path / "prediction-log"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{tmp_path / 'state.db'}")
    config = workspace.write_config(
        "fraud",
        {
            "serving": {"prediction_log": str(root)},
            "monitoring": {"window": "6h", "cooldown": "6h", "label_coverage": {"min_answers": 5}},
        },
    )
    version = train_version(config, "manual__champion")
    LocalGatewayTarget.from_options(client=workspace.client(), state_url=f"sqlite:///{tmp_path / 'state.db'}").promote(
        "fraud", version, actor="test", reason="champion"
    )
    return {"root": root, "client": workspace.client()}


def run_monitor(workspace: Any) -> Any:
    from airflow_mlops.factories import build_dags

    return build_dags(None, workspace.config_dir)["fraud__monitor"].test(run_conf={"window_end": END.isoformat()})


def states(run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances()}


def test_clean_traffic_records_statistics_and_emits_nothing(
    workspace: Any, airflow_db: Any, monitored: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: the hours are read once, by the mapped tasks; nothing reads the window's predictions again."""
    import airflow_mlops.prediction_log as prediction_log
    import airflow_mlops.prediction_log.reader as reader

    log_traffic(monitored["root"], monitored["client"], data_drift=0.0, seed=21, review_flagged=True)

    def whole_window(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the monitor read the whole window of predictions again")

    monkeypatch.setattr(prediction_log, "read_predictions", whole_window)
    monkeypatch.setattr(reader, "read_predictions", whole_window)
    run = run_monitor(workspace)

    assert run.state == "success", states(run)
    assert states(run)["emit_drift[-1]"] == "skipped"
    assert sorted(k for k in states(run) if k.startswith("summarize_partition")) == [
        "summarize_partition[0]",
        "summarize_partition[1]",
        "summarize_partition[2]",
    ]
    client = monitored["client"]
    experiment = client.get_experiment_by_name("airflow-mlops/fraud/monitoring")
    (monitoring_run,) = client.search_runs([experiment.experiment_id])
    assert monitoring_run.data.tags["mlops.drift.act"] == "false"
    assert monitoring_run.data.metrics["rows"] == 1500
    assert monitoring_run.data.metrics["psi.amount"] < 0.1
    artifacts = {a.path for a in client.list_artifacts(monitoring_run.info.run_id, "drift")}
    assert artifacts == {"drift/statistics.json", "drift/evidently_drift_report.html"}
    # evidently's verdict, with our PSI thresholds, is stored next to ours
    assert monitoring_run.data.tags["mlops.drift.evidently"] == "no_drift"
    assert "mlops.drift.disagreement" not in monitoring_run.data.tags
    local = client.download_artifacts(monitoring_run.info.run_id, "drift/statistics.json", str(workspace.root))
    statistics = json.loads(Path(local).read_text())
    assert statistics["evidently"]["method"] == "psi" and statistics["evidently"]["dataset_drift"] is False
    assert set(statistics["evidently"]["psi"]) == set(statistics["scores"]) - {"__prediction__"}
    assert statistics["disagreement"] is None
    assert statistics["samples"] == {"answers": 1500, "inputs": 1500}  # a small window is sampled whole
    # only flagged transactions were reviewed: the monitor names the feedback loop
    coverage = statistics["coverage"]
    assert coverage["by_decision"]["0"]["labelled"] == 0 and coverage["by_decision"]["1"]["coverage"] == 1.0
    assert coverage["by_version"] == {"1": {k: coverage[k] for k in ("answered", "labelled", "coverage")}}
    assert set(coverage["by_slice"]) == {"merchant_category"}  # the example's slice column, a feature
    assert monitoring_run.data.metrics["label_coverage"] == pytest.approx(coverage["coverage"]) and coverage["labelled"]
    assert monitoring_run.data.tags["mlops.feedback.warning"].startswith("labels arrive for 0.0% of ")


def test_drifted_traffic_emits_one_event_then_cooldown_holds_the_next(
    workspace: Any, airflow_db: Any, monitored: Any
) -> None:
    log_traffic(monitored["root"], monitored["client"], data_drift=1.0, seed=22)
    before = len(drift_events("fraud"))

    first = run_monitor(workspace)
    second = run_monitor(workspace)

    assert first.state == "success" and second.state == "success"
    assert states(first)["emit_drift[-1]"] == "success"
    assert states(second)["emit_drift[-1]"] == "skipped"
    events = drift_events("fraud")[before:]
    assert len(events) == 1
    assert "amount" in events[0]["features"] and events[0]["scores"]["amount"] > 0.25
    assert events[0]["window"] == {"start": (END - timedelta(hours=6)).isoformat(), "end": END.isoformat()}
    client = monitored["client"]
    experiment = client.get_experiment_by_name("airflow-mlops/fraud/monitoring")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["mlops.drift.act"] for r in runs] == ["true", "true"]
    assert [r.data.tags["mlops.drift.evidently"] for r in runs] == ["drift", "drift"]
    assert runs[1].data.tags["mlops.drift.suppressed"].startswith("cooldown since ")


def drift_events(model: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == f"mlops://{model}/drift")
            .order_by(AssetEvent.id)
        ).all()
    return [dict(row[0] or {}) for row in rows]


def test_without_the_reports_extra_the_run_says_why_and_our_statistics_still_decide(
    workspace: Any, airflow_db: Any, monitored: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evidently not installed (``None`` in sys.modules): no HTML, a reason naming the pip install, a decision."""
    import sys

    log_traffic(monitored["root"], monitored["client"], data_drift=1.0, seed=23)
    monkeypatch.setitem(sys.modules, "evidently", None)
    monkeypatch.setitem(sys.modules, "evidently.presets", None)
    before = len(drift_events("fraud"))

    run = run_monitor(workspace)

    assert run.state == "success", states(run)
    assert states(run)["emit_drift[-1]"] == "success"
    assert len(drift_events("fraud")) == before + 1
    client = monitored["client"]
    experiment = client.get_experiment_by_name("airflow-mlops/fraud/monitoring")
    (monitoring_run,) = client.search_runs([experiment.experiment_id])
    assert monitoring_run.data.tags["mlops.drift.act"] == "true"
    reason = monitoring_run.data.tags["mlops.drift.report_skipped"]
    assert reason.endswith("install it with: pip install 'airflow-mlops[reports]'"), reason
    artifacts = {a.path for a in client.list_artifacts(monitoring_run.info.run_id, "drift")}
    assert artifacts == {"drift/statistics.json", "drift/evidently_report_skipped.txt"}


def test_retention_prunes_old_hours_after_the_run_as_a_teardown_that_cannot_fail_it(
    workspace: Any, airflow_db: Any, monitored: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``monitoring.retention`` adds ``prune_prediction_log`` after ``emit_drift``: it deletes hours past retention
    (wall-clock now) and keeps the window; a failing prune shows as a failed task in a successful run."""
    from airflow.sdk import TriggerRule

    import airflow_mlops.prediction_log.retention as retention
    from airflow_mlops.factories import build_dags
    from airflow_mlops.prediction_log import LocalStorage, PredictionLog, PredictionRecord, read_predictions

    dag = build_dags(None, workspace.config_dir)["fraud__monitor"]
    assert "prune_prediction_log" not in dag.task_ids, "no retention, no pruning"
    workspace.write_config(
        "fraud",
        {"serving": {"prediction_log": str(monitored["root"])}, "monitoring": {"window": "6h", "retention": "30d"}},
    )
    dag = build_dags(None, workspace.config_dir)["fraud__monitor"]
    prune = dag.get_task("prune_prediction_log")
    assert prune.upstream_task_ids == {"emit_drift"} and not prune.downstream_task_ids
    assert prune.is_teardown and not prune.on_failure_fail_dagrun
    assert prune.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS  # no setups: runs once everything is done

    log_traffic(monitored["root"], monitored["client"], data_drift=0.0, seed=24, rows=300)
    old = datetime.now(UTC) - timedelta(days=45)
    log = PredictionLog(LocalStorage(monitored["root"]))
    log.append([PredictionRecord("old", old, "fraud", "1", "champion", "{}", None, 1.0, "x")])
    log.close()

    run = run_monitor(workspace)

    assert run.state == "success", states(run)
    assert states(run)["prune_prediction_log[-1]"] == "success"
    rows = read_predictions(LocalStorage(monitored["root"]), "fraud")
    assert "old" not in set(rows["request_id"]) and len(rows) == 300

    def store_down(*args: Any, **kwargs: Any) -> None:
        raise OSError("store down")

    monkeypatch.setattr(retention, "prune_partitions", store_down)
    run = run_monitor(workspace)

    assert states(run)["prune_prediction_log[-1]"] == "failed"
    assert states(run)["evaluate_drift[-1]"] == "success"
    assert run.state == "success", "a failed prune does not fail the monitoring run"


def test_a_champion_trained_on_a_data_folder_is_compared_with_its_own_files_after_new_ones_land(
    workspace: Any, airflow_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.uri`` is a folder (as ``make up`` configures it): evidently's reference is the champion's recorded
    training file, not the folder (which failed the run: "is a directory"), and not a batch that landed later."""
    import shutil

    from airflow_mlops.deploy.targets import LocalGatewayTarget
    from airflow_mlops.examples.datasets import fraud_batch

    root, folder = tmp_path / "prediction-log", tmp_path / "batches"
    folder.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "dags" / "data" / "fraud" / "transactions_batch_001.csv", folder)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", state_url)
    config = workspace.write_config(
        "fraud",
        {
            "data": {"uri": str(folder)},
            "serving": {"prediction_log": str(root)},
            "monitoring": {"window": "6h", "cooldown": "6h"},
        },
    )
    version = train_version(config, "manual__folder_champion")
    client = workspace.client()
    LocalGatewayTarget.from_options(client=client, state_url=state_url).promote("fraud", version, actor="t", reason="c")
    fraud_batch(2, data_drift=1.0).to_csv(folder / "transactions_batch_002.csv", index=False)  # lands later
    log_traffic(root, client, data_drift=0.0, seed=24)

    run = run_monitor(workspace)

    assert run.state == "success", states(run)
    experiment = client.get_experiment_by_name("airflow-mlops/fraud/monitoring")
    (monitoring_run,) = client.search_runs([experiment.experiment_id])
    assert "mlops.drift.report_skipped" not in monitoring_run.data.tags, monitoring_run.data.tags
    # the reference is the clean first batch: the clean window is no drift for evidently either
    assert monitoring_run.data.tags["mlops.drift.evidently"] == "no_drift"
