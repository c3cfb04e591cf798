"""Hand-written DAG (no YAML): wait for a drift verdict at ``act`` level from a monitoring run after this run started.

``level`` is ``"warn"`` or ``"act"`` (``ok < warn < act``); ``since`` keeps older verdicts out. The result
names the monitoring run and the features that shifted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_mlops.sensors.drift import DriftSensor

with DAG(
    dag_id="example_drift_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"model": Param("fraud", type="string"), "level": Param("act", enum=["warn", "act"])},
    tags=["airflow-mlops", "example"],
):
    # [START howto_sensor_drift]
    wait_for_drift = DriftSensor(
        task_id="wait_for_drift",
        model_name="{{ params.model }}",
        level="{{ params.level }}",
        since="{{ dag_run.start_date }}",
        deferrable=True,
        poke_interval=10,
        timeout=7 * 24 * 3600,
    )
    # [END howto_sensor_drift]

    @task
    def drifted_features(verdict: dict[str, Any]) -> list[str]:
        print(f"{verdict['model']}: {verdict['level']} in window ending {verdict['window_end']}: {verdict['features']}")
        return list(verdict["features"])

    drifted_features(wait_for_drift.output)
