"""Hand-written DAG (no YAML): shadow, canary and promote a version with the rollout operators.

Every argument is explicit and templated; each task hands its result to the next as an ``XComArg``
(``resolve.output["version"]``). Waiting (shadow window, canary steps) happens in the triggerer.
Trigger it with ``conf={"model": ..., "version": ..., "log_root": ...}``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, XComArg, chain

from airflow_mlops.operators.rollout import (
    CanaryStepOperator,
    PromoteOperator,
    ResolveCandidateOperator,
    ShadowOperator,
)

with DAG(
    dag_id="example_rollout",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "model": Param("fraud", type="string", description="Registered model name"),
        "version": Param(None, type=["null", "string"], description="Version to roll out (default: challenger)"),
        "log_root": Param("/var/lib/mlops/prediction-log", type="string", description="Gateway prediction log"),
    },
    tags=["airflow-mlops", "example"],
) as dag:
    # [START howto_operator_rollout]
    common = {
        "model_name": "{{ params.model }}",
        "log_root": "{{ params.log_root }}",
        "target": "local",  # the bundled gateway; it follows the registry aliases
        "mlflow_conn_id": "mlflow_default",
    }
    resolve = ResolveCandidateOperator(
        task_id="resolve_candidate", version="{{ params.version or '' }}", multiple_outputs=True, **common
    )
    version, champion = XComArg(resolve, key="version"), XComArg(resolve, key="champion")
    shadow = ShadowOperator(
        task_id="shadow",
        version=version,
        champion=champion,
        policy={"duration": "3s", "min_requests": 20, "min_agreement": 0.5, "max_error_rate": 0.05},
        **common,
    )
    canary = [
        CanaryStepOperator(
            task_id=f"canary_{percent}",
            version=version,
            champion=champion,
            percent=percent,
            policy={"step_duration": "3s", "check_interval": "1s", "max_error_rate": 0.05},
            metric="roc_auc",
            **common,
        )
        for percent in (50, 100)
    ]
    promote = PromoteOperator(task_id="promote", version=version, **common)
    chain(resolve, shadow, *canary, promote)
    # [END howto_operator_rollout]
