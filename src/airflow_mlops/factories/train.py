"""Build ``<model>__train``: fingerprint -> validate -> train -> register -> gate -> (approve) -> challenger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, XComArg, chain

from airflow_mlops.config.schema import parse_duration
from airflow_mlops.factories.assets import candidate_asset, cron_or_assets, data_asset, drift_asset
from airflow_mlops.operators.base import PARAM_DATA_CONN_ID, PARAM_DATA_URI
from airflow_mlops.operators.gates import GateModelOperator
from airflow_mlops.operators.registry import SetChallengerOperator, candidate_asset_uri
from airflow_mlops.operators.training import (
    FingerprintDataOperator,
    RegisterModelOperator,
    TrainModelOperator,
    ValidateDataOperator,
)
from airflow_mlops.vocabulary import Alias, AssetKind, asset_uri

if TYPE_CHECKING:
    from airflow_mlops.config.loader import LoadedConfig

START_DATE = datetime(2025, 1, 1, tzinfo=UTC)


def train_schedule(loaded: LoadedConfig) -> Any:
    """The cron schedule, OR a drift event, OR a new-data event (each as configured)."""
    cfg = loaded.config
    events = [drift_asset(cfg.name)] if cfg.retraining.on_drift else []
    events += [data_asset(cfg.name)] if cfg.retraining.on_new_data else []
    return cron_or_assets(cfg.schedule, events)


def _doc(loaded: LoadedConfig) -> str:
    cfg = loaded.config
    return (
        f"### {cfg.name}: training pipeline\n\n{cfg.description}\n\n"
        f"* config: `{loaded.path}` (sha256 `{loaded.sha256[:12]}`)\n"
        f"* estimator: `{cfg.trainer}` seed {cfg.estimator.seed}\n"
        f'* data: `{cfg.data.uri}` (override with `conf={{"{PARAM_DATA_URI}": "..."}}`)\n'
        f"* on pass: alias `challenger` and an event on `{candidate_asset_uri(cfg.name)}`\n"
        f"* also runs on `{asset_uri(cfg.name, AssetKind.DRIFT)}` and `{asset_uri(cfg.name, AssetKind.DATA)}` events"
        " (see `retraining`)\n"
        + (f"* training runs on executor queue `{cfg.resources.queue}`\n" if cfg.resources.queue else "")
    )


def build_train_dag(loaded: LoadedConfig) -> DAG:
    cfg = loaded.config
    common: dict[str, Any] = {
        "model_name": cfg.name,
        "config_path": str(loaded.path),
        "mlflow_conn_id": cfg.mlflow_conn_id,
    }
    with DAG(
        dag_id=cfg.dag_ids["train"],
        schedule=train_schedule(loaded),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["airflow-mlops", cfg.name, *cfg.tags],
        doc_md=_doc(loaded),
        default_args={"owner": cfg.owner, "retries": 0},
        params={
            PARAM_DATA_URI: Param(cfg.data.uri, type="string", description="Training data URI for this run"),
            PARAM_DATA_CONN_ID: Param(
                cfg.data.conn_id, type=["null", "string"], description="Airflow connection for the data URI"
            ),
        },
    ) as dag:
        fingerprint = FingerprintDataOperator(task_id="fingerprint_data", multiple_outputs=True, **common)
        run: dict[str, Any] = {"mlflow_run_id": XComArg(fingerprint, key="mlflow_run_id")}
        validate = ValidateDataOperator(task_id="validate_data", **run, **common)
        queue: dict[str, Any] = {"queue": cfg.resources.queue} if cfg.resources.queue else {}  # else default_queue
        train = TrainModelOperator(task_id="train_model", **queue, **run, **common)
        register = RegisterModelOperator(task_id="register_model", **run, **common)
        gate = GateModelOperator(task_id="gate_model", **run, **common)
        challenger = SetChallengerOperator(
            task_id="set_challenger",
            require_approval=cfg.approval.required,
            outlets=[candidate_asset(cfg.name)],
            **run,
            **common,
        )
        tasks: list[Any] = [fingerprint, validate, train, register, gate]
        if cfg.approval.required:
            from airflow_mlops.operators.approval import ModelApprovalOperator

            tasks.append(
                ModelApprovalOperator(
                    task_id="approve",
                    version=f"{{{{ ti.xcom_pull(task_ids='{gate.task_id}')['version'] }}}}",
                    stage=Alias.CHALLENGER,
                    subject=f"Promote {cfg.name} candidate to challenger?",
                    body=f"Training run {{{{ run_id }}}} of {cfg.name} registered a candidate; the evidence follows.",
                    assigned_users=[{"id": user, "name": user} for user in cfg.approval.approvers] or None,
                    response_timeout=parse_duration(cfg.approval.timeout),
                    **common,
                )
            )
        chain(*tasks, challenger)
    return dag
