"""``triggers.rollout``: serialization, and ``run()`` driven by asyncio against a real local prediction log.

Durations are tiny (at most 2 s) and every wait is bounded with ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.config.schema import CanaryConfig
from airflow_mlops.prediction_log import FeedbackRecord, LocalStorage, PredictionLog, PredictionRecord
from airflow_mlops.triggers.rollout import CanaryStepTrigger, ShadowWindowTrigger

MODEL = "fraud"
CANARY_LIMITS = CanaryConfig(max_error_rate=0.1, max_latency_p95_ms=100, min_requests=2, min_labels=1).model_dump(
    mode="json"
)


@pytest.fixture
def plog(tmp_path: Path) -> Iterator[PredictionLog]:
    log = PredictionLog(LocalStorage(tmp_path / "plog"))
    yield log
    log.close()


def record(
    request_id: str,
    role: str,
    version: str,
    *,
    prediction: int = 1,
    score: float = 0.8,
    error: str | None = None,
    latency_ms: float = 5.0,
    ts: datetime | None = None,
) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        ts=ts or datetime.now(UTC),
        model=MODEL,
        version=version,
        role=role,
        inputs=json.dumps({"amount": 10.0}),
        output=None if error else json.dumps({"prediction": prediction, "score": score}),
        latency_ms=latency_ms,
        error=error,
    )


def write(log: PredictionLog, records: list[PredictionRecord], labels: list[FeedbackRecord] | None = None) -> None:
    log.append(records)
    if labels:
        log.append_feedback(labels)
    log.flush()


def shadow_pairs(ids: range, *, ts: datetime | None = None) -> list[PredictionRecord]:
    out = []
    for i in ids:
        out.append(record(f"r{i}", "champion", "1", prediction=i % 2, score=0.5 + 0.1 * (i % 2), ts=ts))
        out.append(record(f"r{i}", "shadow", "2", prediction=i % 2, score=0.5 + 0.1 * (i % 2), ts=ts))
    return out


def shadow_trigger(log: PredictionLog, start: float, **overrides: Any) -> ShadowWindowTrigger:
    kwargs: dict[str, Any] = {
        "log_root": log.root,
        "log_conn_id": None,
        "model": MODEL,
        "champion": "1",
        "shadow": "2",
        "start": start,
        "duration": 0.5,
        "min_requests": 3,
        "deadline": start + 10,
        "check_interval": 0.1,
    }
    return ShadowWindowTrigger(**{**kwargs, **overrides})


def canary_trigger(log: PredictionLog, start: float, **overrides: Any) -> CanaryStepTrigger:
    kwargs: dict[str, Any] = {
        "log_root": log.root,
        "log_conn_id": None,
        "model": MODEL,
        "champion": "1",
        "canary": "2",
        "start": start,
        "duration": 2.0,
        "check_interval": 0.2,
        "limits": CANARY_LIMITS,
        "metric": None,
    }
    return CanaryStepTrigger(**{**kwargs, **overrides})


def first_event(
    trigger: BaseTrigger, timeout: float, side: Callable[[], Awaitable[None]] | None = None
) -> tuple[dict[str, Any], float]:
    """The trigger's one event (it must stop after it) and when it came, in seconds after ``trigger.start``."""

    async def go() -> tuple[dict[str, Any], float]:
        task = asyncio.create_task(side()) if side else None
        events = trigger.run()
        try:
            event = await asyncio.wait_for(events.__anext__(), timeout)
            at = time.time() - trigger.start  # type: ignore[attr-defined]
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(events.__anext__(), 5)
        finally:
            await events.aclose()
            if task is not None:
                await asyncio.wait_for(task, 5)
        assert isinstance(event, TriggerEvent)
        return event.payload, at

    return asyncio.run(go())


# --- serialization -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [shadow_trigger, canary_trigger])
def test_serialize_round_trip(plog: PredictionLog, make: Callable[..., BaseTrigger]) -> None:
    trigger = make(plog, 1_700_000_000.25, log_conn_id="aws_logs")

    classpath, kwargs = trigger.serialize()

    module, _, name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert cls is type(trigger)
    assert module == "airflow_mlops.triggers.rollout"
    assert json.loads(json.dumps(kwargs)) == kwargs  # storable as the trigger's kwargs
    rebuilt = cls(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert {k: getattr(rebuilt, k) for k in kwargs} == {k: getattr(trigger, k) for k in kwargs}
    assert kwargs["log_conn_id"] == "aws_logs" and kwargs["start"] == 1_700_000_000.25


def test_shadow_serialize_names_every_init_argument(plog: PredictionLog) -> None:
    _, kwargs = shadow_trigger(plog, 100.0).serialize()

    assert kwargs == {
        "log_root": plog.root,
        "log_conn_id": None,
        "model": MODEL,
        "champion": "1",
        "shadow": "2",
        "start": 100.0,
        "duration": 0.5,
        "min_requests": 3,
        "deadline": 110.0,
        "check_interval": 0.1,
        "cloudwatch": None,
    }


def test_canary_serialize_names_every_init_argument(plog: PredictionLog) -> None:
    _, kwargs = canary_trigger(plog, 100.0, metric="roc_auc").serialize()

    assert kwargs == {
        "log_root": plog.root,
        "log_conn_id": None,
        "model": MODEL,
        "champion": "1",
        "canary": "2",
        "start": 100.0,
        "duration": 2.0,
        "check_interval": 0.2,
        "limits": CANARY_LIMITS,
        "metric": "roc_auc",
        "classes": None,
        "cloudwatch": None,
    }
    assert CanaryConfig.model_validate(kwargs["limits"]).max_error_rate == 0.1


# --- shadow window -------------------------------------------------------------------------------------------


def test_shadow_fires_success_after_the_duration_once_min_requests_are_in(plog: PredictionLog) -> None:
    start = time.time()
    old = datetime.fromtimestamp(start, tz=UTC) - timedelta(minutes=5)
    write(plog, shadow_pairs(range(100, 110), ts=old))  # before the window: not counted
    write(plog, [*shadow_pairs(range(3)), record("e", "shadow", "2", error="ValueError: boom")])

    payload, at = first_event(shadow_trigger(plog, start, duration=0.6, min_requests=4), timeout=5)

    assert at >= 0.6
    assert at < 0.6 + 3.5  # fires at the end of the duration, not at a timeout (loose: CI machines are busy)
    assert payload == {
        "status": "success",
        "timed_out": False,
        "stats": {
            "pairs": 3,
            "agreement": 1.0,
            "mean_abs_delta": 0.0,
            "shadow_requests": 4,
            "shadow_error_rate": 0.25,
            "shadow_latency_p95_ms": 5.0,
        },
    }


def test_shadow_keeps_waiting_for_min_requests_until_the_deadline(plog: PredictionLog) -> None:
    start = time.time()
    write(plog, shadow_pairs(range(3)))

    payload, at = first_event(
        shadow_trigger(plog, start, duration=0.3, min_requests=10, deadline=start + 1.2), timeout=5
    )

    assert at >= 1.2
    assert at < 1.2 + 3.5  # fires at the end of the duration, not at a timeout (loose: CI machines are busy)
    assert payload["status"] == "success"
    assert payload["timed_out"] is True
    assert payload["stats"]["shadow_requests"] == 3
    assert payload["stats"]["pairs"] == 3


def test_shadow_fires_as_soon_as_late_requests_reach_min_requests(plog: PredictionLog) -> None:
    start = time.time()
    write(plog, shadow_pairs(range(2)))
    written_at: list[float] = []

    async def more_traffic() -> None:
        await asyncio.sleep(0.8)
        await asyncio.to_thread(write, plog, shadow_pairs(range(2, 5)))
        written_at.append(time.time() - start)

    payload, at = first_event(
        shadow_trigger(plog, start, duration=0.2, min_requests=5, deadline=start + 30), timeout=10, side=more_traffic
    )

    assert payload["status"] == "success" and payload["timed_out"] is False
    assert payload["stats"]["shadow_requests"] == 5 and payload["stats"]["pairs"] == 5
    assert written_at and at >= written_at[0] - 0.5  # not before the last rows were flushed (within one read)
    assert at < 5


def test_shadow_unreadable_log_is_an_error_event(plog: PredictionLog) -> None:
    start = time.time()
    write(plog, shadow_pairs(range(3)))
    corrupt_part(plog)

    payload, at = first_event(shadow_trigger(plog, start, duration=0.0), timeout=5)

    assert payload["status"] == "error"
    assert payload["message"].startswith("DataError: Cannot parse prediction-log part file ")
    assert set(payload) == {"status", "message"}
    assert at < 2


def corrupt_part(log: PredictionLog) -> Path:
    now = datetime.now(UTC)
    part = Path(log.root) / MODEL / "predictions" / f"date={now:%Y-%m-%d}" / f"hour={now:%H}" / "part-corrupt.parquet"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"this is not parquet")
    return part


# --- canary step ---------------------------------------------------------------------------------------------


def canary_traffic(ids: range, *, errors: bool = False) -> list[PredictionRecord]:
    out = []
    for i in ids:
        if errors:
            out.append(record(f"c{i}", "canary", "2", error="ValueError: unknown category 'crypto'"))
        else:
            out.append(record(f"c{i}", "canary", "2", prediction=i % 2, score=0.2 + 0.6 * (i % 2)))
        out.append(record(f"h{i}", "champion", "1", prediction=i % 2, score=0.3 + 0.4 * (i % 2)))
    return out


def test_canary_breach_fires_at_the_first_check_after_errors_appear(plog: PredictionLog) -> None:
    start = time.time()
    write(plog, canary_traffic(range(2)))
    written_at: list[float] = []

    async def errors() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(write, plog, canary_traffic(range(2, 4), errors=True))
        written_at.append(time.time() - start)

    payload, at = first_event(canary_trigger(plog, start, duration=2.0, check_interval=0.2), timeout=5, side=errors)

    assert payload["status"] == "breach"
    assert payload["reasons"] == ["canary error rate 0.5000 > 0.1 (2 errors)"]
    assert payload["stats"]["requests"] == 4 and payload["stats"]["errors"] == 2
    assert written_at and at >= written_at[0] - 0.3
    assert at < 2.0, "a breach ends the step before its end"
    assert at - written_at[0] < 0.2 + 0.8, "within about one check interval of the errors"


def test_canary_breach_already_present_fires_at_the_first_check(plog: PredictionLog) -> None:
    start = time.time()
    write(plog, canary_traffic(range(3), errors=True))

    payload, at = first_event(canary_trigger(plog, start, duration=2.0, check_interval=0.3), timeout=5)

    assert payload["status"] == "breach"
    assert payload["reasons"] == ["canary error rate 1.0000 > 0.1 (3 errors)"]
    assert 0.3 <= at < 1.5


def test_canary_errors_below_min_requests_wait_for_the_end_of_the_step(plog: PredictionLog) -> None:
    """One early error is no rollback: before the end only ``min_requests`` canary answers are judged."""
    start = time.time()
    write(plog, canary_traffic(range(1), errors=True))
    limits = {**CANARY_LIMITS, "min_requests": 5}

    payload, at = first_event(canary_trigger(plog, start, duration=1.0, check_interval=0.2, limits=limits), timeout=5)

    assert payload["status"] == "breach", "the end-of-step check judges whatever traffic there was"
    assert payload["reasons"] == ["canary error rate 1.0000 > 0.1 (1 errors)"]
    assert at >= 1.0


def test_canary_healthy_step_succeeds_at_its_end(plog: PredictionLog) -> None:
    start = time.time()
    write(plog, canary_traffic(range(6)))

    payload, at = first_event(canary_trigger(plog, start, duration=0.8, check_interval=0.3), timeout=5)

    assert payload["status"] == "success"
    assert set(payload) == {"status", "stats"}
    assert payload["stats"] == {
        "requests": 6,
        "errors": 0,
        "error_rate": 0.0,
        "latency_p95_ms": 5.0,
        "labelled": 0,
        "champion_labelled": 0,
        "metric": None,
        "canary_metric": None,
        "champion_metric": None,
        "invalid_labels": 0,
        "duplicate_labels": 0,
        "metric_error": None,
    }
    assert 0.8 <= at < 0.8 + 3.5  # fires at the end of the duration, not at a timeout (loose: CI machines are busy)


def test_canary_healthy_step_with_labels_reports_both_metrics(plog: PredictionLog) -> None:
    start = time.time()
    now = datetime.now(UTC)
    labels = [FeedbackRecord(f"{side}{i}", now, MODEL, json.dumps(i % 2)) for i in range(6) for side in "ch"]
    write(plog, canary_traffic(range(6)), labels)

    payload, at = first_event(canary_trigger(plog, start, duration=0.5, metric="roc_auc"), timeout=5)

    assert payload["status"] == "success"
    stats = payload["stats"]
    assert (stats["metric"], stats["labelled"], stats["champion_labelled"]) == ("roc_auc", 6, 6)
    assert (stats["canary_metric"], stats["champion_metric"]) == (1.0, 1.0)
    assert at >= 0.5


def test_canary_metric_regression_is_a_breach(plog: PredictionLog) -> None:
    start = time.time()
    now = datetime.now(UTC)
    # the canary ranks every positive below every negative (AUC 0); the champion ranks them right (AUC 1)
    records = []
    for i in range(4):
        records.append(record(f"c{i}", "canary", "2", prediction=1 - i % 2, score=0.9 - 0.8 * (i % 2)))
        records.append(record(f"h{i}", "champion", "1", prediction=i % 2, score=0.1 + 0.8 * (i % 2)))
    labels = [FeedbackRecord(f"{side}{i}", now, MODEL, json.dumps(i % 2)) for i in range(4) for side in "ch"]
    write(plog, records, labels)

    payload, _ = first_event(canary_trigger(plog, start, metric="roc_auc"), timeout=5)

    assert payload["status"] == "breach"
    assert payload["reasons"] == ["canary roc_auc 0.0000 trails champion 1.0000 by more than 0.02"]


def test_canary_unreadable_log_is_an_error_event(plog: PredictionLog) -> None:
    start = time.time()
    write(plog, canary_traffic(range(2)))
    corrupt_part(plog)

    payload, at = first_event(canary_trigger(plog, start, duration=1.0, check_interval=0.2), timeout=5)

    assert payload["status"] == "error"
    assert payload["message"].startswith("DataError: Cannot parse prediction-log part file ")
    assert at < 1.0


def test_canary_with_no_traffic_succeeds_at_the_end(plog: PredictionLog) -> None:
    start = time.time()

    payload, at = first_event(canary_trigger(plog, start, duration=0.4, check_interval=0.1), timeout=5)

    assert payload["status"] == "success"
    assert payload["stats"]["requests"] == 0
    assert at >= 0.4
