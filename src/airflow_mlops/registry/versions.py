"""Idempotent MLflow registry operations: one run per DAG run, one version per run, guarded alias moves.

Every function looks before it writes, so a retried or cleared Airflow task finds what the first
attempt did instead of doing it again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_mlops.exceptions import RegistryError
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


def experiment_name(model: str) -> str:
    return f"airflow-mlops/{model}"


def ensure_experiment(client: MlflowClient, model: str, artifact_root: str | None = None) -> str:
    """The model's experiment id, created on first use (under ``artifact_root`` when given)."""
    name = experiment_name(model)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    try:
        location = f"{artifact_root.rstrip('/')}/{model}" if artifact_root else None
        return str(client.create_experiment(name, artifact_location=location, tags={Tag.MODEL: model}))
    except Exception:  # a concurrent task created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def find_or_create_run(
    client: MlflowClient, model: str, dag_run_id: str, tags: dict[str, str], artifact_root: str | None = None
) -> str:
    """The MLflow run for (model, DAG run): created once, found again on every retry."""
    experiment_id = ensure_experiment(client, model, artifact_root)
    existing = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{Tag.DAG_RUN_ID}` = '{_quote(dag_run_id)}'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if existing:
        return str(existing[0].info.run_id)
    run = client.create_run(
        experiment_id,
        run_name=f"{model}-{dag_run_id}"[:250],
        tags={**tags, Tag.MODEL: model, Tag.DAG_RUN_ID: dag_run_id},
    )
    return str(run.info.run_id)


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def version_for_run(client: MlflowClient, model: str, run_id: str) -> ModelVersion | None:
    for version in client.search_model_versions(f"name = '{_quote(model)}' and run_id = '{run_id}'"):
        return version
    return None


def register_version(
    client: MlflowClient, model: str, run_id: str, model_uri: str, model_id: str | None, tags: dict[str, str]
) -> tuple[str, bool]:
    """Register the run's model once. Returns (version, created); a second call returns the first version."""
    try:
        client.get_registered_model(model)
    except Exception:
        try:
            client.create_registered_model(model, tags={Tag.MANAGED_BY: "airflow-mlops"})
        except Exception:  # created concurrently; fine if it exists now
            client.get_registered_model(model)
    existing = version_for_run(client, model, run_id)
    if existing is not None:
        log.info("Run %s is already registered as %s v%s; not registering again", run_id, model, existing.version)
        return str(existing.version), False
    created = client.create_model_version(model, source=model_uri, run_id=run_id, tags=tags, model_id=model_id)
    return str(created.version), True


#: What MLflow answers when the model or the alias does not exist (an unset alias, not a failure).
_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


def alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    """The version ``alias`` points at; ``None`` only when MLflow says the model or the alias does not exist.

    Any other error (MLflow unreachable, a server error) is raised: an alias that could not be read is not an
    unset alias (the gate would otherwise skip the champion comparison during an MLflow outage).
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise


def set_alias_once(client: MlflowClient, model: str, alias: str, version: str) -> bool:
    """Point ``alias`` at ``version`` unless it already does. Returns True when the alias moved."""
    if alias_version(client, model, alias) == str(version):
        return False
    client.set_registered_model_alias(model, alias, str(version))
    return True


def require_gate_passed(client: MlflowClient, model: str, version: str) -> None:
    tags = client.get_model_version(model, str(version)).tags
    if tags.get(Tag.GATE) != "passed":
        raise RegistryError(
            f"{model} v{version}: {Tag.GATE} is {tags.get(Tag.GATE)!r}; only versions whose gate passed can move "
            "to challenger or champion"
        )
