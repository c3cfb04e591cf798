"""The monitoring window: parsing logged inputs, served predictions, performance on delayed labels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.monitoring.window import performance_on_labels, served_predictions, window_columns
from support import toy_config

CONFIG = toy_config()


def rows(*items: tuple[str, str, dict, dict | None, str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "request_id": rid,
                "role": role,
                "inputs": json.dumps(inputs),
                "output": None if output is None else json.dumps(output),
                "error": error,
            }
            for rid, role, inputs, output, error in items
        ]
    )


def test_window_columns_parse_served_rows_only() -> None:
    frame = rows(
        ("1", "champion", {"a": 1.5, "c": "x"}, {"prediction": 0, "score": 0.2}, None),
        ("2", "canary", {"a": None, "c": None}, {"prediction": 1, "score": 0.9}, None),
        ("3", "shadow", {"a": 9.0, "c": "z"}, {"prediction": 1, "score": 0.7}, None),
        ("4", "canary", {"a": 7.0, "c": "y"}, None, "ValueError: boom"),
        ("5", "champion", {"a": "oops", "c": 3}, {"prediction": 0, "score": 0.1}, None),
    )

    columns = window_columns(frame, CONFIG)

    np.testing.assert_array_equal(columns["a"], np.array([1.5, np.nan, np.nan]))
    assert columns["c"].tolist() == ["x", None, "3"]
    np.testing.assert_array_equal(served_predictions(frame), np.array([0.2, 0.9, 0.1]))


def test_performance_on_labels_joins_feedback_and_compares_with_the_champion() -> None:
    frame = rows(
        ("1", "champion", {}, {"prediction": 1, "score": 0.9}, None),
        ("2", "champion", {}, {"prediction": 0, "score": 0.2}, None),
        ("3", "canary", {}, {"prediction": 1, "score": 0.6}, None),
        ("4", "champion", {}, {"prediction": 0, "score": 0.4}, None),
    )
    feedback = pd.DataFrame({"request_id": ["1", "2", "3", "4", "4"], "label": ["1", "0", "0", "1", "0"]})

    perf = performance_on_labels(frame, feedback, "roc_auc", champion_eval=0.9)

    assert perf.labelled == 4 and perf.duplicate_labels == 1  # the first label for "4" wins
    assert perf.value == pytest.approx(0.75)  # positives 0.9, 0.4 vs negatives 0.2, 0.6: 3 of 4 pairs ordered
    assert perf.breached(max_drop=0.1, higher_is_better=True, min_labels=4) is True
    assert perf.breached(max_drop=0.1, higher_is_better=True, min_labels=5) is False
    assert performance_on_labels(frame, feedback.iloc[0:0], "roc_auc", 0.9).value is None


def test_new_hour_trigger_reports_each_new_partition(tmp_path: Path) -> None:
    from airflow_mlops.prediction_log import LocalStorage, PredictionLog, PredictionRecord
    from airflow_mlops.triggers.prediction_log import NewPredictionHourTrigger

    def write(hour: datetime) -> None:
        log = PredictionLog(LocalStorage(tmp_path))
        log.append([PredictionRecord(f"r{hour:%H}", hour, "toy", "1", "champion", "{}", "{}", 1.0, None)])
        log.close()

    base = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    write(base)
    trigger = NewPredictionHourTrigger(log_root=str(tmp_path), log_conn_id=None, model="toy", poll_interval=0.05)
    assert NewPredictionHourTrigger(**trigger.serialize()[1]).serialize() == trigger.serialize()

    async def first_event() -> dict:
        events = trigger.run()
        task = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.3)
        assert not task.done(), "partitions present at start are the baseline, not events"
        write(base + timedelta(hours=1))
        event = await asyncio.wait_for(task, timeout=10)
        await events.aclose()
        return dict(event.payload)

    assert asyncio.run(first_event()) == {
        "model": "toy",
        "new_hour": "2026-11-20T11",
        "completed_hour": "2026-11-20T10",
        "also_new": 0,
    }


def test_new_hour_trigger_after_a_failed_first_listing_fires_once_not_for_every_past_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 days of history and a store that is down when the watcher starts: no event per past hour."""
    from airflow_mlops.prediction_log import LocalStorage, PredictionLog, PredictionRecord
    from airflow_mlops.triggers import prediction_log as module

    base = datetime(2026, 11, 1, 0, 5, tzinfo=UTC)
    log = PredictionLog(LocalStorage(tmp_path))
    log.append(
        [
            PredictionRecord(f"r{i}", base + timedelta(hours=i), "toy", "1", "champion", "{}", "{}", 1.0, None)
            for i in range(0, 30 * 24, 6)
        ]
    )
    log.close()
    real = module._hours
    calls = {"n": 0}

    def flaky(root: str, model: str, conn_id: str | None) -> set[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("store unreachable")
        return real(root, model, conn_id)

    monkeypatch.setattr(module, "_hours", flaky)
    trigger = module.NewPredictionHourTrigger(log_root=str(tmp_path), log_conn_id=None, model="toy", poll_interval=0.05)

    async def events_within(seconds: float, then: Callable[[], None] | None = None) -> list[dict]:
        found: list[dict] = []
        stream = trigger.run()

        async def collect() -> None:
            async for event in stream:
                found.append(dict(event.payload))

        task = asyncio.ensure_future(collect())
        await asyncio.sleep(seconds)
        if then is not None:
            then()
            await asyncio.sleep(seconds)
        task.cancel()
        return found

    def two_new_hours() -> None:
        late = PredictionLog(LocalStorage(tmp_path))
        late.append(
            [
                PredictionRecord(
                    f"n{h}", base + timedelta(days=31, hours=h), "toy", "1", "champion", "{}", "{}", 1.0, None
                )
                for h in (0, 1)
            ]
        )
        late.close()

    events = asyncio.run(events_within(0.5, two_new_hours))
    assert calls["n"] >= 3
    assert events == [{"model": "toy", "new_hour": "2026-12-02T01", "completed_hour": "2026-12-02T00", "also_new": 1}]
