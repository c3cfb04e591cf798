"""Hand-written DAG (no YAML): wait until the champion alias points at a gated version, then use that version.

The sensor defers to the triggerer while it waits; ``.output["version"]`` hands the version that satisfied
it to the next task as an ``XComArg``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from airflow_mlops.sensors.model_alias import ModelAliasSensor
from airflow_mlops.vocabulary import Alias

with DAG(
    dag_id="example_model_alias_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"model": Param("fraud", type="string")},
    tags=["airflow-mlops", "example"],
):
    # [START howto_sensor_model_alias]
    wait_for_champion = ModelAliasSensor(
        task_id="wait_for_champion",
        model_name="{{ params.model }}",
        alias=Alias.CHAMPION,
        mlflow_conn_id="mlflow_default",
        deferrable=True,  # wait in the triggerer; deferrable=False with mode="reschedule" frees the slot too
        poke_interval=10,  # short for the example: minutes are plenty in production
        timeout=3600,
    )
    # [END howto_sensor_model_alias]

    @task
    def announce(found: dict[str, str]) -> str:
        """Downstream work gets the version that passed its gate (here: just report it)."""
        print(f"{found['model']}@{found['alias']} is v{found['version']}")
        return found["version"]

    announce(wait_for_champion.output)
