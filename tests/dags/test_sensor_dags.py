"""The hand-written sensor DAGs in ``dags/examples`` with ``dag.test()``: each sensor defers, then resumes.

Each test starts the DAG while the condition does not hold, waits until the sensor has deferred (its task
instance waits in ``queued`` with ``next_method`` set while ``dag.test()`` runs the trigger inline), makes
the condition true in the real MLflow store, and checks the run succeeded with the sensor's result handed to
the downstream task through ``XComArg``. The sensors' poke interval is shortened on the parsed task.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.vocabulary import Alias, Tag
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

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "dags" / "examples"
DEFER_TIMEOUT_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def examples_in_dags_folder() -> Iterator[None]:
    """``dag.test()`` syncs the configured DAG folder to the metadata DB: the example files must be in it."""
    target = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__"))
    yield
    shutil.rmtree(target)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: object) -> Iterator[tuple[Any, Path]]:
    uri = mlflow_store(tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_connection(uri, tmp_path / "artifacts"))
    yield client(uri), tmp_path / "artifacts"


def example_dag(dag_id: str, sensor_task: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "examples" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    dag = bag.dags[dag_id]
    dag.task_dict[sensor_task].poke_interval = 0.5
    return dag


def sensor_state(dag_id: str, task_id: str) -> tuple[str | None, str | None]:
    """(state, next_method) of the sensor's newest task instance, read from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(
            select(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
            .order_by(TaskInstance.start_date.desc().nullslast())
        ).first()
        if ti is None:
            return None, None
        return (str(ti.state) if ti.state is not None else None), ti.next_method


class WhenDeferred:
    """In a thread: once the sensor has deferred, call ``act``.

    Deferred under ``dag.test()`` reads as ``queued`` with ``next_method == "execute_complete"``: the task
    recorded its deferral, and ``dag.test()`` runs the trigger inline while the instance waits in ``queued``.
    """

    def __init__(self, dag_id: str, task_id: str, act: Callable[[], None]) -> None:
        self.dag_id, self.task_id, self.act = dag_id, task_id, act
        self.seen: list[str] = []
        self.error: BaseException | None = None
        self.acted = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WhenDeferred:
        # Import and configure every ORM model here, in the main thread: a first query from the watcher
        # thread would configure the mappers (importing modules) while dag.test() imports the same modules
        # in the main thread, and the two deadlock on the import lock.
        import airflow.models.dagbag
        import airflow.providers.standard.operators.trigger_dagrun
        import airflow.serialization.serialized_objects  # noqa: F401
        from airflow.models import import_all_models
        from sqlalchemy.orm import configure_mappers

        import_all_models()
        configure_mappers()
        sensor_state(self.dag_id, self.task_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=DEFER_TIMEOUT_S)

    def _run(self) -> None:
        deadline = time.monotonic() + DEFER_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                state, next_method = sensor_state(self.dag_id, self.task_id)
                seen = f"{state}/{next_method}"
                if not self.seen or self.seen[-1] != seen:
                    self.seen.append(seen)
                if state == "queued" and next_method == "execute_complete":
                    time.sleep(1.0)  # a few trigger polls with the condition still false
                    self.act()
                    self.acted = True
                    return
                time.sleep(0.05)
            self.act()  # never leave dag.test() waiting forever: the test then fails on ``acted``
        except BaseException as exc:
            self.error = exc


def run_until_deferred_then(dag: Any, task_id: str, act: Callable[[], None], conf: dict[str, Any]) -> Any:
    with WhenDeferred(dag.dag_id, task_id, act) as watcher:
        run = dag.test(run_conf=conf)
    assert watcher.error is None, watcher.error
    assert watcher.acted, f"the sensor never deferred; states seen: {watcher.seen}"
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    return run


def xcom(run: Any, task_id: str) -> Any:
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return ti.xcom_pull(task_ids=task_id)


def test_model_alias_sensor_dag(store: tuple[Any, Path]) -> None:
    mlflow_client, _ = store
    model = f"alias-dag-{datetime.now(UTC).strftime('%H%M%S%f')}"
    version = make_version(mlflow_client, model, gated())
    dag = example_dag("example_model_alias_sensor", "wait_for_champion")

    run = run_until_deferred_then(
        dag,
        "wait_for_champion",
        lambda: mlflow_client.set_registered_model_alias(model, Alias.CHAMPION, version),
        {"model": model},
    )

    assert xcom(run, "wait_for_champion") == {"model": model, "alias": "champion", "version": version}
    # the scheduler-side xcom_pull reads a bare "1" back as 1 (JSON); the task itself returned the string
    assert str(xcom(run, "announce")) == version


def test_approval_answered_sensor_dag(store: tuple[Any, Path]) -> None:
    mlflow_client, _ = store
    model = f"approval-dag-{datetime.now(UTC).strftime('%H%M%S%f')}"
    version = make_version(mlflow_client, model, gated())
    dag = example_dag("example_approval_answered_sensor", "wait_for_approval")

    run = run_until_deferred_then(
        dag,
        "wait_for_approval",
        lambda: mlflow_client.set_model_version_tag(model, version, Tag.APPROVED_BY, "alice"),
        {"model": model, "version": version},
    )

    assert xcom(run, "wait_for_approval")["decision"] == "approved"
    assert xcom(run, "approved_by") == "alice"


def test_drift_sensor_dag(store: tuple[Any, Path]) -> None:
    mlflow_client, artifacts = store
    model = f"drift-dag-{datetime.now(UTC).strftime('%H%M%S%f')}"
    record_monitoring_run(mlflow_client, model, artifacts, act=True, statuses={"amount": "act"})  # before the run
    dag = example_dag("example_drift_sensor", "wait_for_drift")

    run = run_until_deferred_then(
        dag,
        "wait_for_drift",
        lambda: record_monitoring_run(
            mlflow_client, model, artifacts, act=True, statuses={"amount": "act", "hour": "warn"}
        ),
        {"model": model, "level": "act"},
    )

    assert xcom(run, "drifted_features") == ["amount", "hour"]


def test_prediction_volume_sensor_dag(store: tuple[Any, Path]) -> None:
    _, artifacts = store
    model = f"volume-dag-{datetime.now(UTC).strftime('%H%M%S%f')}"
    root = artifacts.parent / "prediction-log"
    write_log(root, [prediction(model, "r1", "4"), prediction(model, "r2", "4")], [label(model, "r1")])
    dag = example_dag("example_prediction_volume_sensor", "wait_for_traffic")
    conf = {"model": model, "version": "4", "log_root": str(root), "min_predictions": 3, "min_labels": 2}

    run = run_until_deferred_then(
        dag, "wait_for_traffic", lambda: write_log(root, [prediction(model, "r3", "4")], [label(model, "r3")]), conf
    )

    volume = xcom(run, "wait_for_traffic")
    assert (volume["predictions"], volume["labelled"]) == (3, 2)
    assert xcom(run, "report") == 2
