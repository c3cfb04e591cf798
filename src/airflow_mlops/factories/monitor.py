"""Build ``<model>__monitor``: on its schedule and when a new prediction-log hour lands.

With ``monitoring.retention`` set, ``prune_prediction_log`` runs last, as a *teardown* task: its trigger rule
(all upstream done, whatever their state) makes it run after the monitoring tasks even when they failed (the log
must not grow forever because there is no champion yet), and Airflow leaves teardowns out of the DAG run's state,
so a failed prune shows as a failed task but never turns the run (the drift verdict) red, nor a failed monitoring
run green.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, Param, XComArg, chain

from airflow_mlops.factories.assets import GROUP, cron_or_assets, drift_asset
from airflow_mlops.factories.train import START_DATE
from airflow_mlops.operators.monitoring import (
    PARAM_WINDOW_END,
    PLAN_KEY,
    EmitDriftEventOperator,
    EvaluateDriftOperator,
    PlanMonitoringWindowOperator,
    PrunePredictionLogOperator,
    SummarizePartitionOperator,
)
from airflow_mlops.vocabulary import AssetKind, asset_uri

if TYPE_CHECKING:
    from airflow_mlops.config.loader import LoadedConfig


def predictions_asset(loaded: LoadedConfig) -> Asset | None:
    """``mlops://<model>/predictions``, watched for new hour partitions when the log root is known."""
    from airflow.sdk import AssetWatcher

    from airflow_mlops.triggers.prediction_log import NewPredictionHourTrigger

    cfg = loaded.config
    root, conn_id = loaded.prediction_log()
    if not root:
        return None
    trigger = NewPredictionHourTrigger(log_root=root, log_conn_id=conn_id, model=cfg.name)
    uri = asset_uri(cfg.name, AssetKind.PREDICTIONS)
    return Asset(name=uri, uri=uri, group=GROUP, watchers=[AssetWatcher(name=f"{cfg.name}_new_hour", trigger=trigger)])


def monitor_schedule(loaded: LoadedConfig) -> Any:
    watched = predictions_asset(loaded)
    return cron_or_assets(loaded.config.monitoring.schedule, [watched] if watched is not None else [])


def build_monitor_dag(loaded: LoadedConfig) -> DAG:
    cfg = loaded.config
    common: dict[str, Any] = {
        "model_name": cfg.name,
        "config_path": str(loaded.path),
        "mlflow_conn_id": cfg.mlflow_conn_id,
    }
    with DAG(
        dag_id=cfg.dag_ids["monitor"],
        schedule=monitor_schedule(loaded),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["airflow-mlops", cfg.name, "monitor"],
        doc_md=(
            f"### {cfg.name}: drift and performance monitoring\n\nWindow `{cfg.monitoring.window}` of served "
            "traffic vs the champion's training data; act-level findings emit "
            f"`{asset_uri(cfg.name, AssetKind.DRIFT)}` "
            f"(cooldown `{cfg.monitoring.cooldown}`)."
            + (
                f" Prediction-log hours older than `{cfg.monitoring.retention}` are deleted after each run."
                if cfg.monitoring.retention is not None
                else ""
            )
        ),
        default_args={"owner": cfg.owner, "retries": 0},
        params={PARAM_WINDOW_END: Param(None, type=["null", "string"], description="Window end (ISO, default now)")},
    ) as dag:
        plan = PlanMonitoringWindowOperator(task_id="plan_window", **common)
        window = XComArg(plan, key=PLAN_KEY)
        summarize = SummarizePartitionOperator.partial(task_id="summarize_partition", plan=window, **common).expand(
            paths=XComArg(plan)
        )
        evaluate = EvaluateDriftOperator(task_id="evaluate_drift", plan=window, summaries=XComArg(summarize), **common)
        emit = EmitDriftEventOperator(
            task_id="emit_drift", result=XComArg(evaluate), outlets=[drift_asset(cfg.name)], **common
        )
        chain(plan, summarize, evaluate, emit)
        if cfg.monitoring.retention is not None:
            prune = PrunePredictionLogOperator(task_id="prune_prediction_log", **common)
            emit >> prune.as_teardown()
    return dag
