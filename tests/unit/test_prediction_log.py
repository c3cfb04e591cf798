"""The prediction log on a local root: round trips, layout, time windows, threads, flushing and recovery.

Storages (the fsspec one, a storage that fails, the Airflow adapter's local path) and the package's import
hygiene are in ``test_prediction_log_storage.py``; crash (``kill -9``) durability and object stores are in
``tests/system/test_prediction_log_durability.py``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from airflow_mlops.exceptions import DataError
from airflow_mlops.prediction_log import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    FeedbackRecord,
    FsspecStorage,
    LocalStorage,
    PredictionLog,
    PredictionRecord,
    hour_partitions,
    list_partitions,
    read_feedback,
    read_prediction_parts,
    read_predictions,
)
from airflow_mlops.prediction_log import wal as wal_module

T0 = datetime(2024, 5, 6, 7, 58, 30, 123456, tzinfo=UTC)


def _pred(
    i: int, *, ts: datetime = T0, model: str = "fraud", role: str = "champion", error: bool = False
) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"req-{i}",
        ts=ts,
        model=model,
        version="3",
        role=role,
        inputs=json.dumps({"amount": i * 1.5, "country": "NL"}),
        output=None if error else json.dumps({"prediction": i % 2, "score": 0.25}),
        latency_ms=1.0 + i / 1000,
        error="ValueError: bad input" if error else None,
    )


def _expected(records: list[PredictionRecord]) -> pd.DataFrame:
    frame = pd.DataFrame([{name: getattr(r, name) for name in PREDICTION_COLUMNS} for r in records])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    return frame.astype({"latency_ms": "float64", "output": object, "error": object})


class FailingStorage(LocalStorage):
    """A local storage whose writes fail while ``down`` is set: a store outage."""

    down = False

    def write_part(self, rel_path: str, data: bytes) -> None:
        if self.down:
            raise DataError("store is down")
        super().write_part(rel_path, data)


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


# --- round trips -----------------------------------------------------------------------------------------


def test_round_trip_returns_exactly_the_rows_with_fixed_dtypes(tmp_path: Path) -> None:
    records = [_pred(1), _pred(2, error=True), _pred(3, ts=T0 + timedelta(minutes=5), role="shadow")]
    log = PredictionLog(LocalStorage(tmp_path))
    log.append(records)
    log.flush()

    frame = read_predictions(LocalStorage(tmp_path), "fraud")

    assert_frame_equal(frame, _expected(records))
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert frame["latency_ms"].dtype == "float64"
    assert frame.loc[1, "output"] is None and frame.loc[1, "error"] == "ValueError: bad input"
    log.close()


def test_non_utc_timestamps_are_stored_as_utc_and_partitioned_by_utc_hour(tmp_path: Path) -> None:
    record = _pred(1, ts=datetime(2024, 5, 6, 1, 30, tzinfo=timezone(timedelta(hours=2))))  # 2024-05-05 23:30 UTC
    with PredictionLog(LocalStorage(tmp_path)) as log:
        log.append([record])

    (part,) = list_partitions(LocalStorage(tmp_path), "fraud")
    assert "/date=2024-05-05/hour=23/" in part
    frame = read_predictions(LocalStorage(tmp_path), "fraud")
    assert frame["ts"].tolist() == [pd.Timestamp("2024-05-05 23:30", tz="UTC")]


def test_feedback_round_trip(tmp_path: Path) -> None:
    labels = [
        FeedbackRecord("req-1", T0 + timedelta(hours=1), "fraud", json.dumps(1)),
        FeedbackRecord("req-2", T0, "fraud", json.dumps({"is_fraud": 0})),
    ]
    with PredictionLog(LocalStorage(tmp_path)) as log:
        log.append_feedback(labels)

    frame = read_feedback(LocalStorage(tmp_path), "fraud")

    assert list(frame.columns) == list(FEEDBACK_COLUMNS)
    assert frame["request_id"].tolist() == ["req-2", "req-1"]  # sorted by ts
    assert frame["label"].tolist() == ['{"is_fraud": 0}', "1"]
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert len(list_partitions(LocalStorage(tmp_path), "fraud", kind="feedback")) == 2
    assert read_predictions(LocalStorage(tmp_path), "fraud").empty


def test_reading_a_model_with_no_log_gives_an_empty_frame_with_the_schema(tmp_path: Path) -> None:
    frame = read_predictions(LocalStorage(tmp_path), "nothing-yet")
    assert frame.empty
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert frame["latency_ms"].dtype == "float64"


# --- layout and time windows ---------------------------------------------------------------------------


def test_partition_paths_by_model_kind_date_and_hour_one_part_per_flush(tmp_path: Path) -> None:
    log = PredictionLog(LocalStorage(tmp_path))
    log.append([_pred(1), _pred(2, ts=T0 + timedelta(minutes=1)), _pred(3, ts=T0 + timedelta(hours=1))])
    log.append([_pred(4, model="churn", ts=T0 + timedelta(days=1))])
    log.flush()
    log.append([_pred(5)])
    log.flush()
    log.close()

    parts = list_partitions(LocalStorage(tmp_path), "fraud")
    relative = [str(Path(p).relative_to(tmp_path)) for p in parts]
    pattern = re.compile(r"fraud/predictions/date=2024-05-06/hour=(07|08)/part-\d{8}T\d{12}Z-[0-9a-f]{12}\.parquet")
    assert all(pattern.fullmatch(r) for r in relative), relative
    assert [r.split("/")[3] for r in relative] == ["hour=07", "hour=07", "hour=08"]  # 2 flushes hit hour 07
    (churn,) = list_partitions(LocalStorage(tmp_path), "churn")
    assert "churn/predictions/date=2024-05-07/hour=07/" in churn
    assert not any(tmp_path.rglob("*.tmp"))


def test_time_window_is_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    times = [T0 + timedelta(minutes=30 * i) for i in range(6)]  # 07:58 .. 10:28, over 4 hours
    with PredictionLog(LocalStorage(tmp_path)) as log:
        log.append([_pred(i, ts=ts) for i, ts in enumerate(times)])
    root = LocalStorage(tmp_path)

    assert read_predictions(root, "fraud", start=times[1], end=times[4])["request_id"].tolist() == [
        "req-1",
        "req-2",
        "req-3",
    ]
    assert read_predictions(root, "fraud", start=times[5])["request_id"].tolist() == ["req-5"]
    assert read_predictions(root, "fraud", end=times[1])["request_id"].tolist() == ["req-0"]
    assert read_predictions(root, "fraud", start=times[5] + timedelta(seconds=1)).empty


@pytest.mark.parametrize(
    "read",
    [
        lambda store: read_predictions(store, "fraud", start=datetime(2024, 1, 1)),
        lambda store: read_feedback(store, "fraud", end=datetime(2024, 1, 1)),
        lambda store: hour_partitions(store, "fraud", start=datetime(2024, 1, 1)),
        lambda store: read_prediction_parts(store, [], end=datetime(2024, 1, 1)),
    ],
    ids=["predictions", "feedback", "hours", "parts"],
)
def test_naive_read_bounds_are_refused(tmp_path: Path, read: Callable[[LocalStorage], object]) -> None:
    with pytest.raises(ValueError, match=r"(start|end)=.* is naive; pass a timezone-aware datetime"):
        read(LocalStorage(tmp_path))


def test_bounds_in_another_time_zone_select_the_same_utc_window(tmp_path: Path) -> None:
    times = [T0 + timedelta(minutes=30 * i) for i in range(6)]  # 07:58 .. 10:28 UTC
    with PredictionLog(LocalStorage(tmp_path)) as log:
        log.append([_pred(i, ts=ts) for i, ts in enumerate(times)])
    plus_two = timezone(timedelta(hours=2))

    frame = read_predictions(LocalStorage(tmp_path), "fraud", start=times[1].astimezone(plus_two), end=times[4])

    assert frame["request_id"].tolist() == ["req-1", "req-2", "req-3"]


def _hourly_log(tmp_path: Path) -> LocalStorage:
    """Two flushes into hour 07, one into 08 and 10 (2024-05-06 UTC)."""
    store = LocalStorage(tmp_path)
    with PredictionLog(store) as log:
        log.append([_pred(1), _pred(2, ts=T0 + timedelta(hours=2))])  # 07:58, 09:58
        log.flush()
        log.append([_pred(3, ts=T0 + timedelta(seconds=10)), _pred(4, ts=T0 + timedelta(minutes=30))])  # 07, 08
    return store


def test_hour_partitions_groups_part_files_by_hour_oldest_first(tmp_path: Path) -> None:
    store = _hourly_log(tmp_path)

    groups = hour_partitions(store, "fraud")

    assert [[Path(p).parent.name for p in group] for group in groups] == [
        ["hour=07", "hour=07"],
        ["hour=08"],
        ["hour=09"],
    ]
    assert sorted(p for group in groups for p in group) == sorted(list_partitions(store, "fraud"))


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        (T0.replace(minute=0, second=0, microsecond=0), None, ["07", "08", "09"]),
        (T0 + timedelta(minutes=2), None, ["08", "09"]),  # 08:00:30: hour 07 ends before start
        (None, datetime(2024, 5, 6, 9, tzinfo=UTC), ["07", "08"]),  # hour 09 starts at end: excluded
        (None, datetime(2024, 5, 6, 9, 0, 1, tzinfo=UTC), ["07", "08", "09"]),
        (datetime(2024, 5, 6, 8, 59, tzinfo=UTC), datetime(2024, 5, 6, 9, 1, tzinfo=UTC), ["08", "09"]),
        (datetime(2024, 5, 7, tzinfo=UTC), None, []),
    ],
    ids=["start-on-hour", "start-after-hour", "end-on-hour", "end-inside-hour", "two-hours", "after-all"],
)
def test_hour_partitions_keep_the_hours_overlapping_the_window(
    tmp_path: Path, start: datetime | None, end: datetime | None, hours: list[str]
) -> None:
    groups = hour_partitions(_hourly_log(tmp_path), "fraud", start, end)
    assert [Path(group[0]).parent.name.removeprefix("hour=") for group in groups] == hours


def test_read_prediction_parts_reads_those_files_in_the_window_without_duplicates(tmp_path: Path) -> None:
    line = json.dumps(["p", "0123456789ab-0", "req-9", T0.isoformat(), "fraud", "3", "champion", "{}", None, 1.0, None])
    store = _hourly_log(tmp_path)
    for _ in range(2):  # the same row written by two recoveries
        _dead_wal(tmp_path / "_wal", [line])
        PredictionLog(store).close()
    (hour_07, _, _) = hour_partitions(store, "fraud")
    assert len(hour_07) == 4

    frame = read_prediction_parts(store, hour_07)
    windowed = read_prediction_parts(store, hour_07, start=T0 + timedelta(seconds=5))

    assert frame["request_id"].tolist() == ["req-1", "req-9", "req-3"]  # by ts; req-9 and req-1 share T0
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert windowed["request_id"].tolist() == ["req-3"]
    assert read_prediction_parts(store, []).empty


def test_read_prediction_parts_refuses_a_path_outside_the_root(tmp_path: Path) -> None:
    store = _hourly_log(tmp_path / "log")
    elsewhere = str(tmp_path / "other" / "part-x.parquet")
    with pytest.raises(ValueError, match=r"part file '.*other/part-x\.parquet' is not under the log root '.*/log'"):
        read_prediction_parts(store, [elsewhere])


def test_hours_outside_the_window_are_not_opened(tmp_path: Path) -> None:
    store = _hourly_log(tmp_path)
    bad = tmp_path / "fraud" / "predictions" / "date=2024-05-06" / "hour=05" / "part-x.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")

    in_window = read_predictions(store, "fraud", start=datetime(2024, 5, 6, 7, tzinfo=UTC))

    assert in_window["request_id"].tolist() == ["req-1", "req-3", "req-4", "req-2"]
    with pytest.raises(DataError, match=r"part file '.*hour=05/part-x\.parquet'"):
        read_predictions(store, "fraud", start=datetime(2024, 5, 6, 5, 59, tzinfo=UTC))


def test_files_that_are_not_part_files_are_ignored(tmp_path: Path) -> None:
    store = _hourly_log(tmp_path)
    kind_dir = tmp_path / "fraud" / "predictions"
    (kind_dir / "README.txt").write_text("not data")
    (kind_dir / "date=2024-05-06" / "hour=07" / "notes.parquet").write_bytes(b"not a part")
    (kind_dir / "date=2024-05-06" / "hour=07" / ".part-y.parquet.1234.tmp").write_bytes(b"half written")
    (kind_dir / "date=2024-05-06" / "hour=7" / "part-z.parquet").parent.mkdir()
    (kind_dir / "date=2024-05-06" / "hour=7" / "part-z.parquet").write_bytes(b"bad hour key")

    assert len(list_partitions(store, "fraud")) == 4
    assert len(read_predictions(store, "fraud")) == 4


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda store: read_predictions(store, "../etc"), r"model name '\.\./etc' is not a safe path segment"),
        (lambda store: list_partitions(store, "fraud", kind="labels"), r"kind must be one of"),  # type: ignore[arg-type]
    ],
    ids=["model-path", "kind"],
)
def test_reads_refuse_bad_model_names_and_kinds(
    tmp_path: Path, read: Callable[[LocalStorage], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        read(LocalStorage(tmp_path))


def test_a_corrupt_part_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "fraud" / "predictions" / "date=2024-05-06" / "hour=07" / "part-x.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"Cannot parse prediction-log part file '.*part-x\.parquet' as Parquet"):
        read_predictions(LocalStorage(tmp_path), "fraud")


# --- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_pred(1, role="primary"), r"role 'primary' is not one of \['canary', 'champion', 'shadow'\]"),
        (_pred(1, model="../etc"), r"model name '\.\./etc' is not a safe path segment"),
        (_pred(1, ts=datetime(2024, 1, 1)), r"ts .* is naive; pass a timezone-aware datetime"),
    ],
    ids=["role", "model-path", "naive-ts"],
)
def test_append_rejects_records_that_would_poison_a_flush(
    tmp_path: Path, record: PredictionRecord, message: str
) -> None:
    log = PredictionLog(LocalStorage(tmp_path))
    with pytest.raises(ValueError, match=r"Cannot log request 'req-1': " + message):
        log.append([_pred(2), record])
    log.close()
    assert read_predictions(LocalStorage(tmp_path), "fraud").empty  # the whole call was refused


def test_strict_mode_on_an_object_store_needs_a_local_wal_dir() -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    with pytest.raises(ValueError, match=r"mode='strict'.* 'memory://bucket/log' needs wal_dir"):
        PredictionLog(FsspecStorage(MemoryFileSystem(), "bucket/log"), mode="strict")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sync"}, "mode must be 'batched' or 'strict', got 'sync'"),
        ({"flush_interval": 0}, "flush_interval must be > 0 seconds, got 0"),
        ({"max_buffer": 0}, "max_buffer must be >= 1, got 0"),
    ],
    ids=["mode", "interval", "buffer"],
)
def test_bad_arguments_name_the_argument(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PredictionLog(LocalStorage(tmp_path), **kwargs)  # type: ignore[arg-type]


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    log = PredictionLog(LocalStorage(tmp_path))
    log.close()
    with pytest.raises(RuntimeError, match="is closed"):
        log.append([_pred(1)])


# --- flushing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["batched", "strict"])
def test_close_flushes_and_strict_close_removes_its_wal(tmp_path: Path, mode: str) -> None:
    log = PredictionLog(LocalStorage(tmp_path), mode=mode)  # type: ignore[arg-type]
    log.append([_pred(1), _pred(2)])
    log.append_feedback([FeedbackRecord("req-1", T0, "fraud", "1")])
    assert read_predictions(LocalStorage(tmp_path), "fraud").empty  # nothing flushed yet
    log.close()
    log.close()  # idempotent

    assert read_predictions(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1", "req-2"]
    assert read_feedback(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1"]
    if mode == "strict":
        assert list((tmp_path / "_wal").iterdir()) == []


@pytest.mark.parametrize("mode", ["batched", "strict"])
def test_background_flusher_writes_within_about_one_interval(tmp_path: Path, mode: str) -> None:
    flushed: list[int] = []
    log = PredictionLog(LocalStorage(tmp_path), mode=mode, flush_interval=0.1, on_flush=flushed.append)  # type: ignore[arg-type]
    log.start()
    try:
        log.append([_pred(1), _pred(2)])
        _wait_for(lambda: len(list_partitions(LocalStorage(tmp_path), "fraud")) == 1)
        assert read_predictions(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1", "req-2"]
        assert flushed == [2]
    finally:
        log.close()


def test_max_buffer_triggers_an_early_flush(tmp_path: Path) -> None:
    log = PredictionLog(LocalStorage(tmp_path), flush_interval=3600, max_buffer=3)
    log.start()
    try:
        log.append([_pred(1), _pred(2)])
        time.sleep(0.05)
        assert list_partitions(LocalStorage(tmp_path), "fraud") == []
        log.append([_pred(3)])
        _wait_for(lambda: len(list_partitions(LocalStorage(tmp_path), "fraud")) == 1)
    finally:
        log.close()


def test_max_buffer_without_a_flusher_flushes_in_the_caller(tmp_path: Path) -> None:
    log = PredictionLog(LocalStorage(tmp_path), max_buffer=2)
    log.append([_pred(1), _pred(2)])
    assert len(list_partitions(LocalStorage(tmp_path), "fraud")) == 1
    log.close()


@pytest.mark.parametrize("mode", ["batched", "strict"])
def test_a_failed_flush_keeps_the_rows_and_the_next_flush_writes_them(tmp_path: Path, mode: str) -> None:
    store = FailingStorage(tmp_path)
    log = PredictionLog(store, mode=mode)  # type: ignore[arg-type]
    log.append([_pred(1)])
    store.down = True
    with pytest.raises(DataError, match="store is down"):
        log.flush()
    log.append([_pred(2)])
    if mode == "strict":
        assert len(list((tmp_path / "_wal").glob("*.jsonl"))) == 2  # sealed segment kept + the current one

    store.down = False
    log.flush()
    assert read_predictions(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1", "req-2"]
    if mode == "strict":
        assert len(list((tmp_path / "_wal").glob("*.jsonl"))) == 1  # only the new, empty current segment
    log.close()


def test_on_flush_errors_do_not_break_flushing(tmp_path: Path) -> None:
    def broken(rows: int) -> None:
        raise RuntimeError("observer bug")

    with PredictionLog(LocalStorage(tmp_path), on_flush=broken) as log:
        log.append([_pred(1)])
        log.flush()
    assert len(read_predictions(LocalStorage(tmp_path), "fraud")) == 1


# --- threads --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["batched", "strict"])
def test_concurrent_appends_lose_and_duplicate_nothing(tmp_path: Path, mode: str) -> None:
    threads, per_thread = 8, 500
    log = PredictionLog(LocalStorage(tmp_path), mode=mode, flush_interval=0.01, max_buffer=700)  # type: ignore[arg-type]
    log.start()
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            log.append([_pred(t * per_thread + i, ts=T0 + timedelta(seconds=i))])

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    log.close()

    frame = read_predictions(LocalStorage(tmp_path), "fraud")
    assert len(frame) == threads * per_thread
    assert set(frame["request_id"]) == {f"req-{n}" for n in range(threads * per_thread)}
    assert len(list_partitions(LocalStorage(tmp_path), "fraud")) > 1  # flushes ran while threads appended
    assert frame["ts"].is_monotonic_increasing


# --- recovery --------------------------------------------------------------------------------------------


def _dead_wal(wal_dir: Path, lines: list[str], tail: bytes = b"") -> None:
    """The files a strict-mode process leaves when it dies: its (unlocked) lock file and a segment."""
    wal_dir.mkdir(parents=True, exist_ok=True)
    (wal_dir / "wal-0123456789ab.lock").touch()
    (wal_dir / "wal-0123456789ab-00000001.jsonl").write_bytes("".join(f"{line}\n" for line in lines).encode() + tail)


def test_recover_turns_a_dead_process_wal_into_parquet_skipping_a_torn_last_line(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            ["p", "0123456789ab-0", "req-1", T0.isoformat(), "fraud", "3", "canary", "{}", '{"p":1}', 2.5, None]
        ),
        json.dumps(["f", "0123456789ab-1", "req-1", T0.isoformat(), "fraud", "1"]),
    ]
    _dead_wal(tmp_path / "_wal", lines, tail=b'["p","0123456789ab-2","req-2","20')  # append never returned

    log = PredictionLog(LocalStorage(tmp_path), mode="strict")  # recovers in __init__

    frame = read_predictions(LocalStorage(tmp_path), "fraud")
    assert frame[["request_id", "role", "output", "latency_ms"]].values.tolist() == [
        ["req-1", "canary", '{"p":1}', 2.5]
    ]
    assert read_feedback(LocalStorage(tmp_path), "fraud")["label"].tolist() == ["1"]
    assert not (tmp_path / "_wal" / "wal-0123456789ab.lock").exists()
    assert log.recover() == 0  # nothing left
    log.close()


def test_recover_leaves_a_live_process_wal_alone(tmp_path: Path) -> None:
    live = PredictionLog(LocalStorage(tmp_path), mode="strict")
    live.append([_pred(1)])

    other = PredictionLog(LocalStorage(tmp_path), mode="strict")
    assert other.recover() == 0
    assert read_predictions(LocalStorage(tmp_path), "fraud").empty
    other.close()
    live.close()
    assert read_predictions(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1"]


def test_batched_mode_also_recovers_a_wal_left_by_strict_mode(tmp_path: Path) -> None:
    line = json.dumps(["p", "0123456789ab-0", "req-9", T0.isoformat(), "fraud", "3", "champion", "{}", None, 1.0, "E"])
    _dead_wal(tmp_path / "_wal", [line])
    PredictionLog(LocalStorage(tmp_path)).close()
    assert read_predictions(LocalStorage(tmp_path), "fraud")["error"].tolist() == ["E"]


def test_rows_written_twice_by_recovery_are_read_once(tmp_path: Path) -> None:
    line = json.dumps(["p", "0123456789ab-0", "req-1", T0.isoformat(), "fraud", "3", "champion", "{}", None, 1.0, None])
    _dead_wal(tmp_path / "_wal", [line])
    PredictionLog(LocalStorage(tmp_path)).close()
    _dead_wal(tmp_path / "_wal", [line])  # as if the process died after writing Parquet, before deleting its WAL
    PredictionLog(LocalStorage(tmp_path)).close()

    assert len(list_partitions(LocalStorage(tmp_path), "fraud")) == 2
    assert read_predictions(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1"]


def _crash(log: PredictionLog) -> None:
    """Stand-in for kill -9 inside this process: release the WAL's lock and files without flushing."""
    log._wal.close(remove=False)  # type: ignore[union-attr]


def test_non_ascii_json_survives_the_wal_and_parquet(tmp_path: Path) -> None:
    inputs = json.dumps({"city": "Zürich", "note": "日本"}, ensure_ascii=False)
    log = PredictionLog(LocalStorage(tmp_path), mode="strict")
    log.append([PredictionRecord("u", T0, "fraud", "1", "champion", inputs, None, 1.0, "ошибка")])
    _crash(log)

    assert PredictionLog(LocalStorage(tmp_path)).recover() == 0  # __init__ already recovered it
    frame = read_predictions(LocalStorage(tmp_path), "fraud")
    assert frame.loc[0, "inputs"] == inputs and frame.loc[0, "error"] == "ошибка"


def test_a_failed_wal_write_leaves_no_partial_line_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = PredictionLog(LocalStorage(tmp_path), mode="strict")
    log.append([_pred(1)])
    real_write_all = wal_module.write_all

    def disk_full(fd: int, data: bytes) -> None:
        real_write_all(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wal_module, "write_all", disk_full)
    with pytest.raises(OSError, match="No space left"):
        log.append([_pred(2)])
    monkeypatch.setattr(wal_module, "write_all", real_write_all)
    log.append([_pred(3)])
    _crash(log)

    PredictionLog(LocalStorage(tmp_path)).close()
    assert read_predictions(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1", "req-3"]


def test_recovery_that_fails_at_start_is_retried_by_the_flusher(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crashed = PredictionLog(LocalStorage(tmp_path), mode="strict")
    crashed.append([_pred(1)])
    _crash(crashed)
    store = FailingStorage(tmp_path)
    store.down = True
    log = PredictionLog(store, mode="strict", flush_interval=0.05)  # starts despite the outage
    assert "Recovering the write-ahead log" in caplog.text
    assert list_partitions(LocalStorage(tmp_path), "fraud") == []
    store.down = False
    log.start()
    try:
        _wait_for(lambda: len(list_partitions(LocalStorage(tmp_path), "fraud")) == 1)
    finally:
        log.close()
    assert read_predictions(LocalStorage(tmp_path), "fraud")["request_id"].tolist() == ["req-1"]


# --- a store that stays down (batched mode) -------------------------------------------------------------------


def test_batched_rows_waiting_for_a_store_that_stays_down_are_bounded_and_counted(tmp_path: Path) -> None:
    """Memory stays bounded during an outage: the oldest predictions go first, labels last, all counted."""
    store = FailingStorage(tmp_path / "store")
    store.down = True
    log = PredictionLog(store, max_buffer=10, max_pending=100, wal_dir=str(tmp_path / "wal"))
    labels = [FeedbackRecord(f"req-{i}", T0, "fraud", "1") for i in range(5)]
    log.append_feedback(labels)
    for start in range(0, 250, 10):
        with pytest.raises(DataError, match="store is down"):
            log.append([_pred(i) for i in range(start, start + 10)])  # a full buffer flushes at once, and fails

    assert log.dropped_rows == 255 - 100
    store.down = False
    log.close()
    kept = read_predictions(store, "fraud")["request_id"].tolist()
    assert kept == [f"req-{i}" for i in range(155, 250)]  # the newest 95 predictions ...
    assert len(read_feedback(store, "fraud")) == 5  # ... and every label


def test_batched_rows_left_at_close_while_the_store_is_down_are_kept_locally_and_recovered(tmp_path: Path) -> None:
    store = FailingStorage(tmp_path / "store")
    store.down = True
    log = PredictionLog(store, wal_dir=str(tmp_path / "wal"))
    log.append([_pred(i) for i in range(7)])
    log.append_feedback([FeedbackRecord("req-1", T0, "fraud", "0")])

    log.close()  # the store is down: nothing raised, nothing lost

    assert log.spilled_rows == 8 and log.dropped_rows == 0
    assert read_predictions(LocalStorage(tmp_path / "store"), "fraud").empty
    store.down = False
    with PredictionLog(store, wal_dir=str(tmp_path / "wal")):  # the next start recovers them
        pass
    assert read_predictions(store, "fraud")["request_id"].tolist() == [f"req-{i}" for i in range(7)]
    assert read_feedback(store, "fraud")["request_id"].tolist() == ["req-1"]


def test_batched_rows_at_close_without_a_wal_dir_fail_loudly(tmp_path: Path) -> None:
    from airflow_mlops.prediction_log import FsspecStorage

    class DownStore(FsspecStorage):
        def write_part(self, rel_path: str, data: bytes) -> None:
            raise DataError("store is down")

    import fsspec

    log = PredictionLog(DownStore(fsspec.filesystem("memory"), f"down-{tmp_path.name}"))
    log.append([_pred(1)])
    with pytest.raises(DataError, match="store is down"):
        log.close()
    assert log.spilled_rows == 0


def test_max_pending_below_max_buffer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"max_pending must be >= max_buffer \(10\), got 5"):
        PredictionLog(LocalStorage(tmp_path), max_buffer=10, max_pending=5)


def test_a_reader_may_load_only_some_columns(tmp_path: Path) -> None:
    """The Models page's charts read a week of traffic without its inputs and outputs."""
    with PredictionLog(LocalStorage(tmp_path)) as log:
        log.append([_pred(2, ts=T0 + timedelta(minutes=1)), _pred(1)])

    frame = read_predictions(LocalStorage(tmp_path), "fraud", columns=["version", "latency_ms"])

    assert list(frame.columns) == ["ts", "version", "latency_ms"]  # ts always: the window and the order
    assert frame["latency_ms"].tolist() == [1.001, 1.002]
    with pytest.raises(ValueError, match=r"unknown predictions columns \['secret'\]"):
        read_predictions(LocalStorage(tmp_path), "fraud", columns=["secret"])
