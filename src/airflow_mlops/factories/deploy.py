"""Build ``<model>__deploy`` (on the candidate Asset) and ``<model>__rollback`` (manual)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, XComArg, chain

from airflow_mlops.config.schema import parse_duration
from airflow_mlops.factories.assets import candidate_asset
from airflow_mlops.factories.train import START_DATE
from airflow_mlops.operators.rollout import (
    PARAM_VERSION,
    CanaryStepOperator,
    PromoteOperator,
    ResolveCandidateOperator,
    RollbackOperator,
    ShadowOperator,
)
from airflow_mlops.vocabulary import Alias

if TYPE_CHECKING:
    from airflow_mlops.config.loader import LoadedConfig


def _approval(task_id: str, stage: str, subject: str, loaded: LoadedConfig, version: Any) -> Any:
    from airflow_mlops.operators.approval import ModelApprovalOperator

    approval = loaded.config.approval
    return ModelApprovalOperator(
        task_id=task_id,
        version=version,
        stage=stage,
        subject=subject,
        body=f"Candidate v{{{{ ti.xcom_pull(task_ids='{version.operator.task_id}', key='version') }}}} of "
        f"{loaded.name}",
        assigned_users=[{"id": user, "name": user} for user in approval.approvers] or None,
        response_timeout=parse_duration(approval.timeout),
        **rollout_arguments(loaded),
    )


def rollout_arguments(loaded: LoadedConfig) -> dict[str, Any]:
    """What every rollout task of ``loaded``'s model is given explicitly (the config fills it)."""
    cfg = loaded.config
    root, conn_id = loaded.prediction_log()
    return {
        "model_name": cfg.name,
        "config_path": str(loaded.path),
        "mlflow_conn_id": cfg.mlflow_conn_id,
        "target": cfg.rollout.target,
        "log_root": root,
        "log_conn_id": conn_id,
    }


def build_deploy_dag(loaded: LoadedConfig) -> DAG:
    cfg = loaded.config
    rollout = cfg.rollout
    common = rollout_arguments(loaded)
    with DAG(
        dag_id=cfg.dag_ids["deploy"],
        schedule=[candidate_asset(cfg.name)],
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["airflow-mlops", cfg.name, "deploy"],
        doc_md=(
            f"### {cfg.name}: rollout\n\nShadow → canary {rollout.canary.steps} % → champion, with automatic "
            f"rollback. Target: `{rollout.target}`."
        ),
        default_args={"owner": cfg.owner, "retries": 0},
        params={PARAM_VERSION: Param(None, type=["null", "string"], description="Version (default: the event's)")},
    ) as dag:
        resolve = ResolveCandidateOperator(
            task_id="resolve_candidate", version="{{ params.version or '' }}", multiple_outputs=True, **common
        )
        version, champion = XComArg(resolve, key="version"), XComArg(resolve, key="champion")
        tasks: list[Any] = [resolve]
        if rollout.shadow.enabled:
            policy = rollout.shadow.model_dump(mode="json")
            tasks.append(ShadowOperator(task_id="shadow", version=version, champion=champion, policy=policy, **common))
        if rollout.approval_before_canary:
            tasks.append(_approval("approve_canary", Alias.CANARY, f"Start the canary of {cfg.name}?", loaded, version))
        for percent in rollout.canary.steps:
            label = f"{percent:g}".replace(".", "_")
            tasks.append(
                CanaryStepOperator(
                    task_id=f"canary_{label}",
                    version=version,
                    champion=champion,
                    percent=percent,
                    policy=rollout.canary.model_dump(mode="json"),
                    metric=cfg.primary_metric,
                    **common,
                )
            )
        if rollout.approval_before_promotion:
            tasks.append(
                _approval("approve_promotion", Alias.CHAMPION, f"Promote {cfg.name} to champion?", loaded, version)
            )
        tasks.append(PromoteOperator(task_id="promote", version=version, **common))
        chain(*tasks)
    return dag


def build_rollback_dag(loaded: LoadedConfig) -> DAG:
    cfg = loaded.config
    with DAG(
        dag_id=cfg.dag_ids["rollback"],
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["airflow-mlops", cfg.name, "rollback"],
        doc_md=f"### {cfg.name}: manual rollback\n\nServe `version` (an alias such as `previous`, or a number).",
        default_args={"owner": cfg.owner, "retries": 0},
        params={PARAM_VERSION: Param(Alias.PREVIOUS, type="string", description="Version number or alias")},
    ) as dag:
        RollbackOperator(
            task_id="rollback",
            version="{{ params.version }}",
            gateway_url=cfg.serving.gateway_url,
            **rollout_arguments(loaded),
        )
    return dag
