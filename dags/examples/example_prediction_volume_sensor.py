"""Hand-written DAG (no YAML): wait until a version has served enough live traffic, with labels, to judge it.

Counts come from the prediction log the gateway writes (``log_root``; an ``s3://`` or ``wasbs://`` root
is read through ``log_conn_id``). Only champion and canary answers count (shadow answers reached no client).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_mlops.sensors.prediction_volume import PredictionVolumeSensor

with DAG(
    dag_id="example_prediction_volume_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "model": Param("fraud", type="string"),
        "version": Param("1", type="string"),
        "log_root": Param("/var/lib/airflow-mlops/prediction-log", type="string"),
        "min_predictions": Param(1000, type="integer", minimum=0),
        "min_labels": Param(100, type="integer", minimum=0),
    },
    tags=["airflow-mlops", "example"],
):
    # [START howto_sensor_prediction_volume]
    wait_for_traffic = PredictionVolumeSensor(
        task_id="wait_for_traffic",
        model_name="{{ params.model }}",
        version="{{ params.version }}",
        min_predictions="{{ params.min_predictions }}",
        min_labels="{{ params.min_labels }}",
        since="{{ dag_run.start_date - macros.timedelta(days=1) }}",  # the last day's traffic
        log_root="{{ params.log_root }}",
        log_conn_id=None,  # e.g. "aws_default" for an s3:// root
        deferrable=True,
        poke_interval=10,
        timeout=3 * 24 * 3600,
    )
    # [END howto_sensor_prediction_volume]

    @task
    def report(volume: dict[str, Any]) -> int:
        print(f"{volume['model']} v{volume['version']}: {volume['predictions']} served, {volume['labelled']} labelled")
        return int(volume["labelled"])

    report(wait_for_traffic.output)
