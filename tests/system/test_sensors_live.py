"""Each sensor's example DAG in a live Airflow: the sensor defers to the real triggerer, then resumes.

One live Airflow for the module (``live_airflow.py``: scheduler, dag-processor, triggerer and api-server on
loopback, LocalExecutor on a fresh PostgreSQL database) with the four hand-written DAGs of ``dags/examples``
(``example_model_alias_sensor``, ``example_approval_answered_sensor``, ``example_drift_sensor``,
``example_prediction_volume_sensor``; all ``deferrable=True``, ``poke_interval=10``), a real MLflow SQLite
store (the ``mlflow_default`` connection) and a real prediction log on disk.

All four runs start while their conditions do not hold. For each, the test polls the REST API until the
sensor's task instance is ``deferred`` (waiting in the triggerer, no worker slot), then makes its condition
true from the test (moves the alias, tags the approval, records a monitoring run, writes traffic), and waits
for the run to succeed with the sensor's XCom value as expected.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.vocabulary import Alias, Tag
from live_airflow import LiveAirflow
from sensor_support import (
    client,
    gated,
    label,
    make_version,
    mlflow_connection,
    mlflow_store,
    prediction,
    record_monitoring_run,
    write_log,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "examples"
MODEL = "sensed"
DEFER_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 180.0


def log(message: str) -> None:
    print(f"[sensors-live {datetime.now(UTC).strftime('%H:%M:%S.%f')[:-3]}] {message}", flush=True)


@dataclass
class Live:
    airflow: LiveAirflow
    mlflow: Any
    artifacts: Path
    log_root: Path
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("sensors-live")
    dags = tmp / "dags"
    dags.mkdir()
    for path in EXAMPLES.glob("example_*_sensor.py"):
        shutil.copy(path, dags / path.name)
    uri = mlflow_store(tmp / "mlflow")
    env = {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_connection(uri, tmp / "artifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    started = time.monotonic()
    with LiveAirflow(tmp / "airflow", dags, env) as airflow:
        log(f"Airflow ready in {time.monotonic() - started:.1f} s ({airflow.timings})")
        yield Live(airflow, client(uri), tmp / "artifacts", tmp / "prediction-log")


@dataclass
class Case:
    dag_id: str
    task_id: str
    conf: dict[str, Any]
    make_true: Callable[[], None]
    check: Callable[[dict[str, Any]], None]
    run_id: str = ""


def cases(live: Live) -> list[Case]:
    """One run per example DAG, each while its condition does not hold yet."""
    mlflow = live.mlflow
    champion = make_version(mlflow, MODEL, gated())
    pending = make_version(mlflow, MODEL, gated())
    record_monitoring_run(mlflow, MODEL, live.artifacts, act=True, statuses={"amount": "act"})  # before the runs
    write_log(live.log_root, [prediction(MODEL, "r1", pending)], [label(MODEL, "r1")])
    drift_runs: list[str] = []

    def drift() -> None:
        drift_runs.append(
            record_monitoring_run(mlflow, MODEL, live.artifacts, act=True, statuses={"amount": "act", "hour": "ok"})
        )

    def expect(expected: dict[str, Any] | Callable[[], dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
        def check(value: dict[str, Any]) -> None:
            wanted = expected() if callable(expected) else expected
            assert {key: value.get(key) for key in wanted} == wanted, value

        return check

    return [
        Case(
            "example_model_alias_sensor",
            "wait_for_champion",
            {"model": MODEL},
            lambda: mlflow.set_registered_model_alias(MODEL, Alias.CHAMPION, champion),
            expect({"model": MODEL, "alias": "champion", "version": champion}),
        ),
        Case(
            "example_approval_answered_sensor",
            "wait_for_approval",
            {"model": MODEL, "version": pending},
            lambda: mlflow.set_model_version_tag(MODEL, pending, Tag.APPROVED_BY, "alice"),
            expect({"decision": "approved", "by": "alice", "version": pending}),
        ),
        Case(
            "example_drift_sensor",
            "wait_for_drift",
            {"model": MODEL, "level": "act"},
            drift,
            expect(lambda: {"level": "act", "run_id": drift_runs[-1], "features": ["amount"]}),
        ),
        Case(
            "example_prediction_volume_sensor",
            "wait_for_traffic",
            {"model": MODEL, "version": pending, "log_root": str(live.log_root), "min_predictions": 2, "min_labels": 2},
            lambda: write_log(live.log_root, [prediction(MODEL, "r2", pending)], [label(MODEL, "r2")]),
            expect({"version": pending, "predictions": 2, "labelled": 2}),
        ),
    ]


def ti_state(airflow: LiveAirflow, case: Case) -> str | None:
    states = airflow.task_states(case.dag_id, case.run_id)
    return states.get(case.task_id)


def wait_deferred(airflow: LiveAirflow, case: Case, deadline: float) -> list[str | None]:
    """Poll the REST API until the sensor is ``deferred``; return the states seen on the way."""
    seen: list[str | None] = []
    while time.monotonic() < deadline:
        state = ti_state(airflow, case)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "deferred":
            return seen
        if state in ("success", "failed", "up_for_retry"):
            break
        time.sleep(0.5)
    run = airflow.run(case.dag_id, case.run_id)
    raise AssertionError(
        f"{case.dag_id}.{case.task_id} never deferred (states {seen}):\n{airflow.describe_run(case.dag_id, run)}"
    )


def xcom(airflow: LiveAirflow, case: Case) -> Any:
    data = airflow._request(
        "GET",
        f"/api/v2/dags/{case.dag_id}/dagRuns/{case.run_id}/taskInstances/{case.task_id}/xcomEntries/return_value",
        params={"stringify": "false"},
    )
    return data["value"]


def test_every_sensor_defers_to_the_triggerer_then_succeeds_once_its_condition_holds(live: Live) -> None:
    airflow = live.airflow
    all_cases = cases(live)
    for case in all_cases:
        airflow.wait_dag(case.dag_id)
    began = time.monotonic()
    for case in all_cases:
        case.run_id = airflow.trigger(case.dag_id, conf=case.conf)["dag_run_id"]
        log(f"triggered {case.dag_id} {case.run_id}")

    deadline = time.monotonic() + DEFER_TIMEOUT_S
    for case in all_cases:
        seen = wait_deferred(airflow, case, deadline)
        log(f"{case.dag_id}: deferred after {time.monotonic() - began:.1f} s (states {seen})")

    # Airflow 3.3.2 race (apache/airflow#67287, #72716): the executor's "success" event of the worker that
    # deferred can be processed after the trigger already re-queued the task, which then fails it. Let the
    # scheduler consume every deferral's exit event before any trigger can fire (as the REST approval test does).
    for case in all_cases:
        waited = airflow.wait_exit_event_consumed(case.dag_id, case.run_id, case.task_id)
        log(f"{case.dag_id}: deferral exit consumed ({waited:.1f} s more)")
    for case in all_cases:
        assert ti_state(airflow, case) == "deferred", case.dag_id  # still waiting: nothing satisfied it early
        case.make_true()
        log(f"{case.dag_id}: condition made true")
    made_true = time.monotonic()

    for case in all_cases:
        run = airflow.wait_run(
            case.dag_id,
            lambda r, c=case: r["dag_run_id"] == c.run_id and r["state"] == "success",  # type: ignore[misc]
            RUN_TIMEOUT_S,
            fail_on=lambda r, c=case: r["dag_run_id"] == c.run_id and r["state"] == "failed",  # type: ignore[misc]
        )
        log(f"{case.dag_id}: success {time.monotonic() - made_true:.1f} s after the condition held")
        assert airflow.task_states(case.dag_id, run["dag_run_id"]) == {
            case.task_id: "success",
            next_task(case): "success",
        }
        value = xcom(airflow, case)
        case.check(value if isinstance(value, dict) else json.loads(value))


def next_task(case: Case) -> str:
    return {
        "example_model_alias_sensor": "announce",
        "example_approval_answered_sensor": "approved_by",
        "example_drift_sensor": "drifted_features",
        "example_prediction_volume_sensor": "report",
    }[case.dag_id]
