"""The registry sensors and their triggers against a real MLflow SQLite store: defer, poke, reschedule, resume.

``ModelAliasSensor``, ``ApprovalAnsweredSensor`` and ``DriftSensor`` share one base (``sensors/base.py``); each
is checked for check-then-defer (no deferral when the condition already holds), the trigger and timeout it
defers with, the trigger's ``serialize()`` round trip and ``run()`` (condition false, then made true from the
test -> event), ``execute_complete`` on malformed events, and the ``poke``/``reschedule`` paths.

The reschedule path needs the running task instance's ``get_first_reschedule_date``; outside a scheduler
there is no real one, so ``RescheduleTI`` stands in for it (it answers "first try", as Airflow does).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    TaskDeferred,
)

from airflow_mlops.sensors.approval import ApprovalAnsweredSensor
from airflow_mlops.sensors.base import MlopsSensor
from airflow_mlops.sensors.drift import DriftSensor
from airflow_mlops.sensors.model_alias import ModelAliasSensor
from airflow_mlops.sensors.prediction_volume import PredictionVolumeSensor
from airflow_mlops.triggers.approval import ApprovalAnsweredTrigger
from airflow_mlops.triggers.drift import DriftVerdictTrigger
from airflow_mlops.triggers.model_alias import ModelAliasTrigger
from airflow_mlops.triggers.polling import PollingTrigger
from airflow_mlops.triggers.prediction_volume import PredictionVolumeTrigger
from airflow_mlops.vocabulary import Alias, Role, Tag
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

STORE_CONN = "mlflow_sensors"
RUN_TIMEOUT_S = 20.0


@dataclass
class Store:
    client: Any
    artifacts: Path
    uri: str


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One MLflow store for the module, reachable as the Airflow connection ``mlflow_sensors``."""
    root = tmp_path_factory.mktemp("sensors")
    uri = mlflow_store(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(f"AIRFLOW_CONN_{STORE_CONN.upper()}", mlflow_connection(uri, root / "artifacts"))
        yield Store(client(uri), root / "artifacts", uri)


class RescheduleTI:
    """Stands in for the running task instance in ``mode="reschedule"`` (see the module docstring)."""

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


@dataclass
class Case:
    """One sensor under test: how to build it, and how to make its condition true."""

    name: str
    sensor: Callable[..., MlopsSensor]
    trigger_cls: type[PollingTrigger]
    trigger_kwargs: Callable[[dict[str, Any]], dict[str, Any]]
    make_true: Callable[[], None]
    expected: Callable[[], dict[str, Any]]


def alias_case(store: Store) -> Case:
    model = f"alias-{datetime.now(UTC).strftime('%H%M%S%f')}"
    version = make_version(store.client, model, gated())
    return Case(
        "model_alias",
        lambda **kw: ModelAliasSensor(
            task_id="wait", model_name=model, alias=Alias.CHAMPION, mlflow_conn_id=STORE_CONN, **kw
        ),
        ModelAliasTrigger,
        lambda common: {**common, "mlflow_conn_id": STORE_CONN, "model": model, "alias": "champion", "version": None},
        lambda: store.client.set_registered_model_alias(model, Alias.CHAMPION, version),
        lambda: {"model": model, "alias": "champion", "version": version},
    )


def approval_case(store: Store) -> Case:
    model = f"approval-{datetime.now(UTC).strftime('%H%M%S%f')}"
    version = make_version(store.client, model, gated())

    def approve() -> None:
        store.client.set_model_version_tag(model, version, Tag.APPROVED_BY, "alice")
        store.client.set_model_version_tag(model, version, Tag.APPROVED_AT, "2026-12-01T10:00:00+00:00")

    return Case(
        "approval",
        lambda **kw: ApprovalAnsweredSensor(
            task_id="wait", model_name=model, version=version, mlflow_conn_id=STORE_CONN, **kw
        ),
        ApprovalAnsweredTrigger,
        lambda common: {**common, "mlflow_conn_id": STORE_CONN, "model": model, "version": version},
        approve,
        lambda: {
            "model": model,
            "version": version,
            "decision": "approved",
            "by": "alice",
            "at": "2026-12-01T10:00:00+00:00",
            "reason": None,
        },
    )


def drift_case(store: Store) -> Case:
    model = f"drift-{datetime.now(UTC).strftime('%H%M%S%f')}"
    record_monitoring_run(store.client, model, store.artifacts, act=True, statuses={"amount": "act"})  # before since
    time.sleep(0.01)
    since = datetime.now(UTC).isoformat()
    run_ids: list[str] = []

    def drift() -> None:
        run_ids.append(
            record_monitoring_run(store.client, model, store.artifacts, act=False, statuses={"amount": "warn"})
        )

    return Case(
        "drift",
        lambda **kw: DriftSensor(
            task_id="wait", model_name=model, level="warn", since=since, mlflow_conn_id=STORE_CONN, **kw
        ),
        DriftVerdictTrigger,
        lambda common: {**common, "mlflow_conn_id": STORE_CONN, "model": model, "level": "warn", "since": since},
        drift,
        lambda: {
            "model": model,
            "level": "warn",
            "run_id": run_ids[-1],
            "window_start": "2026-12-01T00:00:00+00:00",
            "window_end": "2026-12-01T06:00:00+00:00",
            "suppressed": False,
            "features": ["amount"],
        },
    )


def volume_case(store: Store) -> Case:
    model = f"volume-{datetime.now(UTC).strftime('%H%M%S%f')}"
    root = store.artifacts.parent / f"plog-{model}"
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    write_log(
        root,
        [
            prediction(model, "r1", "3"),
            prediction(model, "r2", "3", role=Role.CANARY),
            prediction(model, "r3", "3", role=Role.SHADOW),  # never reached a client
            prediction(model, "r4", "3", error="boom"),
            prediction(model, "r5", "2"),  # another version
        ],
        [label(model, "r1"), label(model, "r5")],
    )
    return Case(
        "prediction_volume",
        lambda **kw: PredictionVolumeSensor(
            task_id="wait",
            model_name=model,
            version="3",
            min_predictions="3",  # as a template renders it
            min_labels=2,
            since=since,
            log_root=str(root),
            **kw,
        ),
        PredictionVolumeTrigger,
        lambda common: {
            **common,
            "log_root": str(root),
            "log_conn_id": None,
            "model": model,
            "version": "3",
            "min_predictions": 3,
            "min_labels": 2,
            "since": since,
            "until": None,
        },
        lambda: write_log(root, [prediction(model, "r6", "3")], [label(model, "r2")]),
        lambda: {"model": model, "version": "3", "predictions": 3, "labelled": 2, "since": since, "until": None},
    )


CASES = {"model_alias": alias_case, "approval": approval_case, "drift": drift_case, "prediction_volume": volume_case}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, store: Store) -> Case:
    return CASES[request.param](store)


def common_kwargs(poll_interval: float = 7.0) -> dict[str, Any]:
    return {"poll_interval": poll_interval, "max_errors": 3}


# -- deferrable --------------------------------------------------------------------------------------------


def test_defers_with_its_trigger_and_timeout_while_the_condition_does_not_hold(case: Case) -> None:
    sensor = case.sensor(deferrable=True, poke_interval=7, timeout=123)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})

    assert type(deferred.value.trigger) is case.trigger_cls
    assert deferred.value.trigger.serialize() == (
        f"{case.trigger_cls.__module__}.{case.trigger_cls.__qualname__}",
        case.trigger_kwargs(common_kwargs()),
    )
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=123)


def test_returns_at_once_without_deferring_when_the_condition_already_holds(case: Case) -> None:
    case.make_true()
    sensor = case.sensor(deferrable=True)

    assert sensor.execute({}) == case.expected()
    json.dumps(sensor.execute({}))  # a JSON-safe XCom value


def test_trigger_serialize_round_trip(case: Case) -> None:
    trigger = case.trigger_cls(**case.trigger_kwargs(common_kwargs(0.5)))
    classpath, kwargs = trigger.serialize()

    rebuilt = case.trigger_cls(**kwargs)

    assert (
        classpath
        == f"airflow_mlops.triggers.{case.trigger_cls.__module__.rsplit('.', 1)[1]}.{case.trigger_cls.__name__}"
    )
    assert rebuilt.serialize() == (classpath, kwargs)
    assert all(isinstance(v, str | int | float | type(None)) for v in kwargs.values())


def test_trigger_fires_once_the_condition_is_made_true(case: Case) -> None:
    trigger = case.trigger_cls(**case.trigger_kwargs(common_kwargs(0.2)))

    async def drive() -> Any:
        events = trigger.run()
        pending = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(1.0)  # several polls with the condition false
        assert not pending.done(), pending.result() if pending.done() else None
        await asyncio.to_thread(case.make_true)
        event = await asyncio.wait_for(pending, RUN_TIMEOUT_S)
        await events.aclose()
        return event

    event = asyncio.run(drive())

    assert event.payload == {"status": "success", "result": case.expected()}
    sensor = case.sensor(deferrable=True)
    assert sensor.execute_complete({}, event.payload) == case.expected()


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, "wait: malformed trigger event None; expected a dict with a status"),
        ({"state": "done"}, "wait: malformed trigger event {'state': 'done'}"),
        ({"status": "success"}, "wait: trigger event without a result dict: {'status': 'success'}"),
        ({"status": "success", "result": "1"}, "wait: trigger event without a result dict"),
        ({"status": "error", "message": "boom"}, "wait: the trigger failed: 'boom' (event {'status': 'error'"),
    ],
    ids=["none", "no-status", "no-result", "result-not-dict", "error"],
)
def test_execute_complete_rejects_malformed_and_error_events(case: Case, event: Any, message: str) -> None:
    sensor = case.sensor(deferrable=True)

    with pytest.raises(AirflowException) as raised:
        sensor.execute_complete({}, event)

    assert str(raised.value).startswith(message)


# -- poke / reschedule -------------------------------------------------------------------------------------


def test_reschedule_mode_reschedules_then_returns_the_result(case: Case) -> None:
    sensor = case.sensor(deferrable=False, mode="reschedule", poke_interval=30)
    context: Any = {"ti": RescheduleTI()}

    with pytest.raises(AirflowRescheduleException) as rescheduled:
        sensor.execute(context)
    assert rescheduled.value.reschedule_date > datetime.now(UTC) + timedelta(seconds=25)

    case.make_true()
    assert sensor.execute(context) == case.expected()


def test_poke_mode_times_out_while_the_condition_does_not_hold(case: Case) -> None:
    sensor = case.sensor(deferrable=False, poke_interval=0.1, timeout=0.3)

    with pytest.raises(AirflowSensorTimeout, match="Sensor has timed out"):
        sensor.execute({})


def test_poke_returns_false_then_the_xcom_value(case: Case) -> None:
    sensor = case.sensor()

    assert sensor.poke({}) is False
    case.make_true()
    done = sensor.poke({})
    assert done and done.xcom_value == case.expected()  # type: ignore[union-attr]


@pytest.mark.integration  # fresh interpreters that load Airflow (~4 s each): make test, not test-fast
@pytest.mark.parametrize("configured", ["True", "False"])
def test_default_deferrable_comes_from_airflow_config(configured: str) -> None:
    """``[operators] default_deferrable`` is read when the sensor module is imported: a fresh interpreter."""
    script = (
        "from airflow_mlops.sensors.drift import DriftSensor; "
        "from airflow_mlops.sensors.prediction_volume import PredictionVolumeSensor; "
        "print(DriftSensor(task_id='a', model_name='m').deferrable, "
        "PredictionVolumeSensor(task_id='b', model_name='m', version='1', min_predictions=1).deferrable)"
    )
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": configured}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)

    assert out.stdout.split() == [configured, configured]


@pytest.mark.parametrize(
    ("sensor", "fields"),
    [
        (ModelAliasSensor, ("model_name", "alias", "version", "mlflow_conn_id")),
        (ApprovalAnsweredSensor, ("model_name", "version", "mlflow_conn_id")),
        (DriftSensor, ("model_name", "level", "since", "mlflow_conn_id")),
        (
            PredictionVolumeSensor,
            ("model_name", "version", "min_predictions", "min_labels", "since", "until", "log_root", "log_conn_id"),
        ),
    ],
    ids=["model_alias", "approval", "drift", "prediction_volume"],
)
def test_template_fields(sensor: type[MlopsSensor], fields: tuple[str, ...]) -> None:
    assert tuple(sensor.template_fields) == fields


# -- sensor-specific ---------------------------------------------------------------------------------------


def rejected_version(store: Store) -> tuple[str, str]:
    model = f"reject-{datetime.now(UTC).strftime('%H%M%S%f')}"
    version = make_version(store.client, model, gated(**{Tag.APPROVED_BY: "alice"}))
    store.client.set_model_version_tag(model, version, Tag.REJECTED_REASON, "leaks a label")
    store.client.set_model_version_tag(model, version, Tag.REJECTED_BY, "bob")
    return model, version


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "poke"])
def test_a_rejection_fails_the_approval_sensor_with_who_and_why(store: Store, deferrable: bool) -> None:
    model, version = rejected_version(store)
    sensor = ApprovalAnsweredSensor(
        task_id="wait", model_name=model, version=version, mlflow_conn_id=STORE_CONN, deferrable=deferrable
    )

    with pytest.raises(AirflowFailException, match=f"^{model} v{version} was rejected by bob: leaks a label$"):
        sensor.execute({})


def test_a_rejection_arriving_through_the_trigger_fails_too(store: Store) -> None:
    model, version = rejected_version(store)
    sensor = ApprovalAnsweredSensor(task_id="wait", model_name=model, version=version, mlflow_conn_id=STORE_CONN)
    result = {"model": model, "version": version, "decision": "rejected", "by": "bob", "at": None, "reason": "x"}

    with pytest.raises(AirflowFailException, match="was rejected by bob: x"):
        sensor.execute_complete({}, {"status": "success", "result": result})


def test_with_fail_on_reject_off_the_approval_sensor_returns_the_rejection(store: Store) -> None:
    model, version = rejected_version(store)
    sensor = ApprovalAnsweredSensor(
        task_id="wait", model_name=model, version=version, mlflow_conn_id=STORE_CONN, fail_on_reject=False
    )

    answer = sensor.execute({})

    assert (answer["decision"], answer["by"], answer["reason"]) == ("rejected", "bob", "leaks a label")


def test_alias_sensor_waits_for_the_wanted_version(store: Store) -> None:
    model = f"wanted-{datetime.now(UTC).strftime('%H%M%S%f')}"
    v1, v2 = make_version(store.client, model, gated()), make_version(store.client, model, gated())
    store.client.set_registered_model_alias(model, Alias.CHAMPION, v1)
    sensor = ModelAliasSensor(
        task_id="wait", model_name=model, alias=Alias.CHAMPION, version=int(v2), mlflow_conn_id=STORE_CONN
    )

    assert sensor.poke({}) is False
    store.client.set_registered_model_alias(model, Alias.CHAMPION, v2)
    assert sensor.poke({}).xcom_value["version"] == v2  # type: ignore[union-attr]


def test_drift_sensor_refuses_unknown_levels_and_naive_since(store: Store) -> None:
    with pytest.raises(ValueError, match=r"drift level: got 'high'; expected one of \['ok', 'warn', 'act'\]"):
        DriftSensor(task_id="wait", model_name="m", level="high")
    sensor = DriftSensor(task_id="wait", model_name="m", since="2026-12-01 10:00:00", mlflow_conn_id=STORE_CONN)
    with pytest.raises(ValueError, match="wait: since: got '2026-12-01 10:00:00' without a timezone"):
        sensor.poke({})


def test_drift_sensor_at_act_ignores_a_warn_verdict(store: Store) -> None:
    model = f"act-{datetime.now(UTC).strftime('%H%M%S%f')}"
    sensor = DriftSensor(task_id="wait", model_name=model, level="act", mlflow_conn_id=STORE_CONN)
    record_monitoring_run(store.client, model, store.artifacts, act=False, statuses={"amount": "warn"})

    assert sensor.poke({}) is False
    run_id = record_monitoring_run(store.client, model, store.artifacts, act=True, statuses={"amount": "act"})
    assert sensor.poke({}).xcom_value["run_id"] == run_id  # type: ignore[union-attr]


def test_trigger_reports_an_error_after_consecutive_failed_checks(store: Store) -> None:
    trigger = ModelAliasTrigger(
        mlflow_conn_id="no_such_connection", model="m", alias=Alias.CHAMPION, poll_interval=0.05, max_errors=2
    )

    async def first() -> Any:
        events = trigger.run()
        event = await asyncio.wait_for(events.__anext__(), RUN_TIMEOUT_S)
        await events.aclose()
        return event

    payload = asyncio.run(first()).payload

    assert payload["status"] == "error"
    assert payload["message"].startswith("2 consecutive failed checks; last: ")
    assert "no_such_connection" in payload["message"]


def test_prediction_volume_sensor_checks_its_numbers_and_needs_a_log_root(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"wait: min_predictions: got -1; expected a whole number >= 0"):
        PredictionVolumeSensor(task_id="wait", model_name="m", version="1", min_predictions=-1, log_root="/x")
    templated = PredictionVolumeSensor(
        task_id="wait", model_name="m", version="1", min_predictions="{{ params.n }}", log_root="/x"
    )
    templated.min_predictions = "many"  # what a bad template renders to
    with pytest.raises(ValueError, match=r"wait: min_predictions: got 'many'; expected a whole number >= 0"):
        templated.poke({})

    from airflow_mlops import settings

    option = settings.OPTIONS["prediction_log"]
    for name in (option.env, option.airflow_env):  # no [mlops] prediction_log configured
        monkeypatch.delenv(name, raising=False)
    assert settings.prediction_log_root() is None
    unset = PredictionVolumeSensor(task_id="wait", model_name="m", version="1", min_predictions=1)
    with pytest.raises(ValueError, match="wait: log_root is not set and neither is the \\[mlops\\] prediction_log"):
        unset.poke({})
