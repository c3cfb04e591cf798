"""The prediction log survives ``kill -9`` of the process writing it, and works on object stores.

The crash tests run a child Python process that logs predictions and prints each request id once
``append`` has returned (the moment a gateway would answer the client). The test SIGKILLs the child at a
random point, opens a new log on the same root (which recovers the dead process's write-ahead log) and
checks what was promised:

- strict mode: every acknowledged id is in the log;
- batched mode: ids are missing only from the tail appended after the last completed flush (the child
  prints a marker with the row count of each flush through ``on_flush``).

Object-store tests use moto (S3) and Azurite from ``conftest.py`` and are marked ``emulator``; they build
the storage the way the Airflow layer does (``hooks/object_storage.py``, from a root URI and a connection).
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airflow_mlops.data.io import read_bytes
from airflow_mlops.exceptions import DataError
from airflow_mlops.hooks.object_storage import prediction_log_storage
from airflow_mlops.prediction_log import (
    FeedbackRecord,
    LocalStorage,
    PredictionLog,
    PredictionRecord,
    hour_partitions,
    list_partitions,
    read_feedback,
    read_prediction_parts,
    read_predictions,
)
from emulators import BlobContainer, S3Bucket

T0 = datetime(2024, 5, 6, 7, 58, 30, tzinfo=UTC)

_CHILD_PRELUDE = """
import json, sys, threading, time
from datetime import UTC, datetime
from airflow_mlops.hooks.object_storage import prediction_log_storage
from airflow_mlops.prediction_log import PredictionLog, PredictionRecord

_out = threading.Lock()

def emit(line):
    with _out:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

def record(request_id, i):
    return PredictionRecord(request_id, datetime.now(UTC), "fraud", "1", "champion", json.dumps({"i": i}),
                            json.dumps({"prediction": i % 2}), 0.5, None)
"""

_STRICT_CHILD = (
    _CHILD_PRELUDE
    + """
root, per_thread, threads, wal_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] or None
log = PredictionLog(prediction_log_storage(root), mode="strict", flush_interval=0.02, wal_dir=wal_dir)
log.start()

def worker(t):
    for i in range(per_thread):
        request_id = f"t{t}-{i}"
        log.append([record(request_id, i)])
        emit(request_id)  # acknowledged: append returned, a gateway would answer now

emit("READY")
pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for thread in pool:
    thread.start()
for thread in pool:
    thread.join()
emit("DONE")
"""
)

_BATCHED_CHILD = (
    _CHILD_PRELUDE
    + """
root, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
log = PredictionLog(
    prediction_log_storage(root), mode="batched", flush_interval=interval, on_flush=lambda rows: emit(f"FLUSHED {rows}")
)
log.start()
for i in range(count):
    log.append([record(f"r{i}", i)])
    emit(f"ACK r{i}")
    time.sleep(0.0005)
emit("DONE")
"""
)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _kill_and_drain(proc: subprocess.Popen[str]) -> tuple[list[str], str]:
    """SIGKILL the child (by its PID) and return the stdout lines it wrote before dying, and its stderr."""
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.stdout is not None and proc.stderr is not None
    # Read through the same file objects as _read_line: communicate() would skip what they already buffered.
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"child exited by itself ({proc.returncode}); stderr:\n{err}"
    return out.splitlines(), err


def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"child ended early (rc={proc.returncode}); stderr:\n{err}")
    return line.rstrip("\n")


def _logged_ids(root: str) -> list[str]:
    PredictionLog(LocalStorage(root)).close()  # a new process-level log: recovers the dead one's WAL
    ids: list[str] = read_predictions(LocalStorage(root), "fraud")["request_id"].tolist()
    return ids


# --- strict mode: every acknowledged response is logged -------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_strict_mode_keeps_every_acknowledged_row_after_kill_9(tmp_path: Path, seed: int) -> None:
    threads, per_thread = 4, 5000
    kill_after = random.Random(seed).randint(20, 3000)  # acknowledged rows seen before the kill
    root = str(tmp_path / "log")
    proc = _spawn(_STRICT_CHILD, root, str(per_thread), str(threads), "")
    assert _read_line(proc) == "READY"
    acked = [_read_line(proc) for _ in range(kill_after)]
    lines, _ = _kill_and_drain(proc)
    acked += lines  # written to the pipe before the kill: acknowledged too
    assert "DONE" not in acked, "the child finished before the kill; raise per_thread"

    logged = _logged_ids(root)

    assert set(acked) <= set(logged), f"lost acknowledged rows: {sorted(set(acked) - set(logged))[:10]}"
    assert len(logged) == len(set(logged))  # no duplicates reach the reader
    attempted = {f"t{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert set(logged) <= attempted
    assert len(logged) - len(acked) <= threads  # at most the appends in flight when the child died
    assert list((tmp_path / "log" / "_wal").glob("*.jsonl")) == []  # recovered WAL is gone


@pytest.mark.timeout(120)
def test_a_crash_between_writing_parquet_and_deleting_the_wal_duplicates_rows_that_reads_drop(
    tmp_path: Path,
) -> None:
    script = (
        _CHILD_PRELUDE
        + """
import os, signal
from airflow_mlops.prediction_log import wal
wal.WriteAheadLog.discard = lambda self, segments: os.kill(os.getpid(), signal.SIGKILL)
log = PredictionLog(prediction_log_storage(sys.argv[1]), mode="strict")
log.append([record(f"r{i}", i) for i in range(3)])
log.flush()  # writes the part file, then "crashes" before deleting the WAL segment
"""
    )
    root = str(tmp_path / "log")
    proc = _spawn(script, root)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert len(list_partitions(LocalStorage(root), "fraud")) == 1

    assert sorted(_logged_ids(root)) == ["r0", "r1", "r2"]

    parts = list_partitions(LocalStorage(root), "fraud")
    assert len(parts) == 2  # recovery wrote the rows again ...
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 6  # ... and the reader dropped the repeats


# --- batched mode: loss is bounded by the last flush ---------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 2])
def test_batched_mode_loses_only_rows_appended_after_the_last_completed_flush(tmp_path: Path, seed: int) -> None:
    interval = 0.2
    root = str(tmp_path / "log")
    flushes_before_kill = random.Random(seed).randint(2, 5)
    proc = _spawn(_BATCHED_CHILD, root, "200000", str(interval))
    lines: list[str] = []
    while sum(line.startswith("FLUSHED") for line in lines) < flushes_before_kill:
        lines.append(_read_line(proc))
    lines += [_read_line(proc) for _ in range(random.Random(seed).randint(0, 300))]  # somewhere mid-interval
    tail, _ = _kill_and_drain(proc)
    lines += tail
    assert "DONE" not in lines

    acked = [line.split()[1] for line in lines if line.startswith("ACK ")]
    durable = sum(int(line.split()[1]) for line in lines if line.startswith("FLUSHED "))
    logged = set(_logged_ids(root))

    # One appender: each flush takes a prefix of the appended rows, so the flushed rows are acked[:durable].
    assert set(acked[:durable]) <= logged
    missing = set(acked) - logged
    assert missing <= set(acked[durable:])
    assert logged <= set(acked) | {f"r{len(acked)}"}  # plus at most the append in flight at the kill


# --- object stores ------------------------------------------------------------------------------------------


def _records() -> list[PredictionRecord]:
    return [
        PredictionRecord("a", T0, "fraud", "3", "champion", '{"x":1}', '{"p":1}', 1.5, None),
        PredictionRecord("b", T0 + timedelta(hours=1), "fraud", "4", "canary", '{"x":2}', None, 2.5, "boom"),
    ]


def _object_store_round_trip(root: str, conn_id: str, wal_dir: Path) -> list[str]:
    store = prediction_log_storage(root, conn_id)
    with PredictionLog(store) as log:
        log.append(_records())
        log.append_feedback([FeedbackRecord("a", T0 + timedelta(minutes=5), "fraud", "1")])

    frame = read_predictions(store, "fraud")
    assert frame[["request_id", "version", "role", "output", "latency_ms", "error"]].values.tolist() == [
        ["a", "3", "champion", '{"p":1}', 1.5, None],
        ["b", "4", "canary", None, 2.5, "boom"],
    ]
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert read_predictions(store, "fraud", start=T0 + timedelta(minutes=1))["request_id"].tolist() == ["b"]
    assert read_feedback(store, "fraud")["label"].tolist() == ["1"]

    # strict mode on an object store: the WAL is local, the Parquet goes to the store
    with PredictionLog(prediction_log_storage(root, conn_id), mode="strict", wal_dir=str(wal_dir)) as log:
        log.append([PredictionRecord("c", T0, "fraud", "3", "shadow", "{}", "{}", 0.1, None)])
    assert sorted(read_predictions(store, "fraud")["request_id"]) == ["a", "b", "c"]
    assert list(wal_dir.iterdir()) == []

    parts = list_partitions(store, "fraud")
    assert len(parts) == 3
    table = pq.read_table(io.BytesIO(read_bytes(parts[0], conn_id)))
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    hours = hour_partitions(store, "fraud", start=T0 + timedelta(minutes=2))
    assert [len(group) for group in hours] == [1]  # hour 08 only
    assert read_prediction_parts(store, hours[0])["request_id"].tolist() == ["b"]
    return parts


@pytest.mark.emulator
def test_s3_round_trip(moto_s3: S3Bucket, tmp_path: Path) -> None:
    import boto3

    root = f"s3://{moto_s3.bucket}/predlog"
    parts = _object_store_round_trip(root, moto_s3.conn_id, tmp_path / "wal")

    assert all(p.startswith(f"{root}/fraud/predictions/date=2024-05-06/hour=") for p in parts)
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=moto_s3.bucket)["Contents"]]
    assert sorted(k.split("/part-")[0] for k in keys) == [
        "predlog/fraud/feedback/date=2024-05-06/hour=08",
        "predlog/fraud/predictions/date=2024-05-06/hour=07",
        "predlog/fraud/predictions/date=2024-05-06/hour=07",
        "predlog/fraud/predictions/date=2024-05-06/hour=08",
    ]


@pytest.mark.emulator
def test_s3_bucket_root_without_a_prefix(moto_s3: S3Bucket) -> None:
    root = f"s3://{moto_s3.bucket}"
    store = prediction_log_storage(root, moto_s3.conn_id)
    with PredictionLog(store) as log:
        log.append(_records()[:1])
    (part,) = list_partitions(store, "fraud")
    assert part.startswith(f"{root}/fraud/predictions/date=2024-05-06/hour=07/part-")
    assert read_predictions(store, "fraud")["request_id"].tolist() == ["a"]


@pytest.mark.emulator
def test_s3_write_errors_name_the_uri_and_the_connection(moto_s3: S3Bucket) -> None:
    store = prediction_log_storage("s3://no-such-bucket/predlog", moto_s3.conn_id)
    log = PredictionLog(store)
    log.append(_records()[:1])
    with pytest.raises(
        DataError,
        match=r"Cannot write 's3://no-such-bucket/predlog/fraud/predictions/date=2024-05-06/hour=07/part-[^']+' "
        r"\(connection 'aws_moto'\): bucket 'no-such-bucket' does not exist",
    ):
        log.flush()


@pytest.mark.emulator
def test_an_undefined_connection_is_a_data_error_naming_it(airflow_home: str) -> None:
    with pytest.raises(
        DataError, match=r"Cannot use 's3://bucket/log' \(connection 'no_such_conn'\): .*'no_such_conn' is not defined"
    ):
        prediction_log_storage("s3://bucket/log", "no_such_conn")


@pytest.mark.emulator
@pytest.mark.timeout(180)
def test_strict_mode_on_s3_keeps_every_acknowledged_row_after_kill_9(moto_s3: S3Bucket, tmp_path: Path) -> None:
    root = f"s3://{moto_s3.bucket}/predlog"
    proc = _spawn(_STRICT_CHILD, root, "2000", "2", str(tmp_path / "wal"))
    assert _read_line(proc) == "READY"
    acked = [_read_line(proc) for _ in range(random.Random(7).randint(50, 500))]
    lines, _ = _kill_and_drain(proc)
    acked += lines
    assert "DONE" not in acked

    store = prediction_log_storage(root, moto_s3.conn_id)
    PredictionLog(store, mode="strict", wal_dir=str(tmp_path / "wal")).close()
    logged = read_predictions(store, "fraud")["request_id"].tolist()

    assert set(acked) <= set(logged)
    assert len(logged) == len(set(logged))


@pytest.mark.emulator
def test_azure_blob_round_trip(azurite_container: BlobContainer, tmp_path: Path) -> None:
    root = f"wasbs://{azurite_container.container}@devstoreaccount1.blob.core.windows.net/predlog"
    parts = _object_store_round_trip(root, azurite_container.conn_id, tmp_path / "wal")
    assert all(p.startswith(f"{root}/fraud/predictions/date=2024-05-06/hour=") for p in parts)


@pytest.mark.emulator
def test_azure_connection_to_another_account_is_refused(azurite_container: BlobContainer) -> None:
    root = f"abfss://{azurite_container.container}@otheraccount.dfs.core.windows.net/predlog"
    with pytest.raises(
        DataError,
        match=r"Cannot use '.*otheraccount.*/predlog' \(connection 'wasb_azurite'\): the URI names storage account "
        r"'otheraccount' but the connection points at account 'devstoreaccount1'",
    ):
        prediction_log_storage(root, azurite_container.conn_id)


@pytest.mark.emulator
def test_azure_write_errors_name_the_uri_and_the_connection(azurite_container: BlobContainer) -> None:
    root = "wasbs://no-such-container@devstoreaccount1.blob.core.windows.net/predlog"
    log = PredictionLog(prediction_log_storage(root, azurite_container.conn_id))
    log.append(_records()[:1])
    with pytest.raises(
        DataError,
        match=r"Cannot write prediction-log part file 'wasbs://no-such-container@devstoreaccount1\.blob\.core\."
        r"windows\.net/predlog/fraud/predictions/date=2024-05-06/hour=07/part-[^']+' \(connection 'wasb_azurite'\)",
    ):
        log.flush()


@pytest.mark.emulator
def test_reading_from_a_bucket_that_does_not_exist_is_an_error_not_an_empty_log(moto_s3: S3Bucket) -> None:
    store = prediction_log_storage("s3://no-such-bucket/predlog", moto_s3.conn_id)
    with pytest.raises(
        DataError,
        match=r"Cannot read 's3://no-such-bucket/predlog' \(connection 'aws_moto'\): bucket 'no-such-bucket' does not",
    ):
        read_predictions(store, "fraud")
    assert read_predictions(prediction_log_storage(f"s3://{moto_s3.bucket}/empty", moto_s3.conn_id), "fraud").empty


@pytest.mark.emulator
def test_reading_from_a_container_that_does_not_exist_is_an_error_not_an_empty_log(
    azurite_container: BlobContainer,
) -> None:
    root = "wasbs://no-such-container@devstoreaccount1.blob.core.windows.net/predlog"
    with pytest.raises(
        DataError,
        match=r"Cannot read 'wasbs://no-such-container@.*/predlog' \(connection 'wasb_azurite'\): container "
        r"'no-such-container' does not exist",
    ):
        hour_partitions(prediction_log_storage(root, azurite_container.conn_id), "fraud")
    empty = f"wasbs://{azurite_container.container}@devstoreaccount1.blob.core.windows.net/empty"
    assert hour_partitions(prediction_log_storage(empty, azurite_container.conn_id), "fraud") == []
