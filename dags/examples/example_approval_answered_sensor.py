"""Hand-written DAG (no YAML): wait until a model version's approval is answered, then act on the answer.

The answer is read from the registry: ``RecordApprovalOperator`` tags the version after Airflow's
``ApprovalOperator`` (in the training DAG) was approved; ``reject`` tags a rejection. A rejection
fails this sensor unless ``fail_on_reject=False``, in which case the decision is returned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_mlops.sensors.approval import ApprovalAnsweredSensor

with DAG(
    dag_id="example_approval_answered_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"model": Param("fraud", type="string"), "version": Param("1", type="string")},
    tags=["airflow-mlops", "example"],
):
    # [START howto_sensor_approval_answered]
    wait_for_approval = ApprovalAnsweredSensor(
        task_id="wait_for_approval",
        model_name="{{ params.model }}",
        version="{{ params.version }}",
        fail_on_reject=True,  # a rejection fails the task with who rejected it and why
        deferrable=True,
        poke_interval=10,
        timeout=24 * 3600,
    )
    # [END howto_sensor_approval_answered]

    @task
    def approved_by(answer: dict[str, Any]) -> str:
        print(f"{answer['model']} v{answer['version']} {answer['decision']} by {answer['by']} at {answer['at']}")
        return str(answer["by"])

    approved_by(wait_for_approval.output)
