"""Helpers for the sensor tests: a real MLflow SQLite store (migrated once per process, then copied),
registered versions with chosen tags, and monitoring runs shaped like ``EvaluateDriftOperator``'s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_mlops.monitoring.verdicts import STATISTICS_ARTIFACT, monitoring_experiment
from airflow_mlops.vocabulary import Role, Tag

_TEMPLATE: Path | None = None


def mlflow_store(directory: Path) -> str:
    """A fresh MLflow SQLite store in ``directory``: its tracking URI. The first call pays the migration (~8 s)."""
    global _TEMPLATE
    import mlflow

    if _TEMPLATE is None:
        template = Path(tempfile.mkdtemp(prefix="mlflow-template-")) / "mlflow.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
        _TEMPLATE = template
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE, directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


def mlflow_connection(tracking_uri: str, artifact_root: Path) -> str:
    """The ``AIRFLOW_CONN_MLFLOW_DEFAULT`` value for that store."""
    return json.dumps({"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(artifact_root)}})


def client(tracking_uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def unique_model(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_version(mlflow_client: Any, model: str, tags: dict[str, str] | None = None) -> str:
    """Register a new version of ``model`` (created on first use) carrying ``tags``; return its number.

    The version's source is a placeholder path: these tests read tags and aliases, never the model itself.
    """
    try:
        mlflow_client.get_registered_model(model)
    except Exception:
        mlflow_client.create_registered_model(model)
    created = mlflow_client.create_model_version(model, source=f"/nonexistent/{model}", tags=tags or {})
    return str(created.version)


def gated(**extra: str) -> dict[str, str]:
    """Tags of a version whose gate passed, plus ``extra``."""
    return {Tag.GATE: "passed", **extra}


def record_monitoring_run(
    mlflow_client: Any,
    model: str,
    artifact_root: Path,
    *,
    act: bool,
    statuses: dict[str, str] | None,
    suppressed: bool = False,
    finish: bool = True,
) -> str:
    """A monitoring run as ``EvaluateDriftOperator._record`` writes it: tags, PSI metrics, ``statistics.json``.

    ``statuses`` maps feature -> status (``ok``/``warn``/``act``) for the artifact; ``None`` writes no artifact.
    """
    name = monitoring_experiment(model)
    experiment = mlflow_client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else mlflow_client.create_experiment(name, artifact_location=str(artifact_root / f"{model}-monitoring"))
    )
    tags = {
        Tag.MODEL: model,
        Tag.CHAMPION: "1",
        Tag.WINDOW_START: "2026-12-01T00:00:00+00:00",
        Tag.WINDOW_END: "2026-12-01T06:00:00+00:00",
        Tag.DRIFT_ACT: str(act).lower(),
    }
    if suppressed:
        tags[Tag.DRIFT_SUPPRESSED] = "cooldown since 2026-12-01T00:00:00+00:00"
    run = mlflow_client.create_run(experiment_id, tags=tags)
    run_id = run.info.run_id
    psi = {"ok": 0.01, "warn": 0.15, "act": 0.4}
    for feature, status in (statuses or {}).items():
        mlflow_client.log_metric(run_id, f"psi.{feature}", psi[status])
    if statuses is not None:
        scores = {f: {"psi": psi[s], "status": s} for f, s in statuses.items()}
        mlflow_client.log_text(run_id, json.dumps({"scores": scores, "act": act}), STATISTICS_ARTIFACT)
    if finish:
        mlflow_client.set_terminated(run_id)
    return str(run_id)


def prediction(model: str, request_id: str, version: str, role: str = Role.CHAMPION, error: str | None = None) -> Any:
    """One logged answer of ``version`` (now), as the gateway records it."""
    from airflow_mlops.prediction_log import PredictionRecord

    return PredictionRecord(
        request_id=request_id,
        ts=datetime.now(UTC),
        model=model,
        version=version,
        role=role,
        inputs=json.dumps({"amount": 10.0}),
        output=None if error else json.dumps({"prediction": 1, "score": 0.8}),
        latency_ms=3.0,
        error=error,
    )


def label(model: str, request_id: str) -> Any:
    """A delayed label for ``request_id`` (now)."""
    from airflow_mlops.prediction_log import FeedbackRecord

    return FeedbackRecord(request_id=request_id, ts=datetime.now(UTC), model=model, label="1")


def write_log(root: Path, predictions: list[Any], labels: list[Any] | None = None) -> None:
    """Through the prediction log's own writer, flushed to Parquet part files."""
    from airflow_mlops.prediction_log import LocalStorage, PredictionLog

    with PredictionLog(LocalStorage(root)) as log:
        log.append(predictions)
        if labels:
            log.append_feedback(labels)
        log.flush()
