"""Where the prediction log's part files live: the fsspec storage, the local-root adapter, import hygiene.

The package takes a storage and never imports Airflow; ``hooks/object_storage.py`` builds a storage from a
root URI and a connection. Object stores behind real Airflow connections (moto, Azurite) are tested in
``tests/system/test_prediction_log_durability.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from airflow_mlops.exceptions import DataError
from airflow_mlops.hooks.object_storage import prediction_log_storage
from airflow_mlops.prediction_log import (
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

T0 = datetime(2024, 5, 6, 7, 58, 30, tzinfo=UTC)


def _records() -> list[PredictionRecord]:
    return [
        PredictionRecord("a", T0, "fraud", "3", "champion", '{"x":1}', '{"p":1}', 1.5, None),
        PredictionRecord("b", T0 + timedelta(hours=1), "fraud", "4", "canary", '{"x":2}', None, 2.5, "boom"),
    ]


@pytest.fixture
def memory() -> FsspecStorage:
    """A fresh root on fsspec's in-memory filesystem (one process-wide store: a unique prefix per test)."""
    return FsspecStorage(MemoryFileSystem(), f"bucket/{uuid.uuid4().hex[:8]}/log")


# --- the fsspec storage --------------------------------------------------------------------------------------


def test_fsspec_storage_round_trip(memory: FsspecStorage) -> None:
    with PredictionLog(memory) as log:
        log.append(_records())
        log.append_feedback([FeedbackRecord("a", T0 + timedelta(minutes=5), "fraud", "1")])

    frame = read_predictions(memory, "fraud")
    assert frame[["request_id", "version", "role", "output", "latency_ms", "error"]].values.tolist() == [
        ["a", "3", "champion", '{"p":1}', 1.5, None],
        ["b", "4", "canary", None, 2.5, "boom"],
    ]
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert read_predictions(memory, "fraud", start=T0 + timedelta(minutes=1))["request_id"].tolist() == ["b"]
    assert read_feedback(memory, "fraud")["label"].tolist() == ["1"]
    parts = list_partitions(memory, "fraud")
    assert [p.split("/part-")[0] for p in parts] == [
        f"{memory.uri}/fraud/predictions/date=2024-05-06/hour=07",
        f"{memory.uri}/fraud/predictions/date=2024-05-06/hour=08",
    ]
    assert memory.uri.startswith("memory://bucket/")
    (hour_08,) = hour_partitions(memory, "fraud", start=T0 + timedelta(minutes=2))
    assert read_prediction_parts(memory, hour_08)["request_id"].tolist() == ["b"]


def test_fsspec_storage_in_strict_mode_keeps_the_wal_on_a_local_disk(memory: FsspecStorage, tmp_path: Path) -> None:
    with PredictionLog(memory, mode="strict", wal_dir=str(tmp_path / "wal")) as log:
        log.append(_records())
        assert len(list((tmp_path / "wal").glob("*.jsonl"))) == 1
    assert read_predictions(memory, "fraud")["request_id"].tolist() == ["a", "b"]
    assert list((tmp_path / "wal").iterdir()) == []


def test_a_new_part_is_seen_by_a_later_read_on_the_same_filesystem(memory: FsspecStorage) -> None:
    assert read_predictions(memory, "fraud").empty
    with PredictionLog(FsspecStorage(memory.fs, memory.root)) as log:
        log.append(_records()[:1])
    assert read_predictions(memory, "fraud")["request_id"].tolist() == ["a"]


class _ReadOnlyMemory(MemoryFileSystem):  # type: ignore[misc]
    cachable = False

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(f"{path} is read-only")


def test_a_failed_upload_is_a_data_error_naming_the_part_and_the_connection() -> None:
    store = FsspecStorage(_ReadOnlyMemory(), "bucket/ro", connection="wasb_prod")
    log = PredictionLog(store)
    log.append(_records()[:1])
    with pytest.raises(
        DataError,
        match=r"Cannot write prediction-log part file 'memory://bucket/ro/fraud/predictions/date=2024-05-06/"
        r"hour=07/part-[^']+\.parquet' \(connection 'wasb_prod'\): PermissionError: .* is read-only",
    ):
        log.flush()
    assert not log.storage.fs.exists("bucket/ro/fraud")  # type: ignore[attr-defined]


def test_a_corrupt_part_on_an_fsspec_store_is_named_by_its_uri(memory: FsspecStorage) -> None:
    memory.fs.pipe_file(f"{memory.root}/fraud/predictions/date=2024-05-06/hour=07/part-x.parquet", b"not parquet")
    with pytest.raises(DataError, match=r"Cannot parse prediction-log part file 'memory://bucket/.*/part-x\.parquet'"):
        read_predictions(memory, "fraud")


# --- the adapter, for local roots (no Airflow on that path) --------------------------------------------------


def test_local_path_and_file_uri_roots_are_local_storage(tmp_path: Path) -> None:
    by_path = prediction_log_storage(str(tmp_path / "log"), "ignored_conn")
    by_uri = prediction_log_storage(f"file://{tmp_path}/log/")
    assert isinstance(by_path, LocalStorage) and isinstance(by_uri, LocalStorage)
    assert by_path.uri == by_uri.uri == str(tmp_path / "log")


def test_file_uri_root_round_trip(tmp_path: Path) -> None:
    store = prediction_log_storage(f"file://{tmp_path}/log")
    with PredictionLog(store) as log:
        log.append(_records()[:1])
    assert read_predictions(store, "fraud")["request_id"].tolist() == ["a"]
    assert (tmp_path / "log" / "fraud" / "predictions").is_dir()
    assert (tmp_path / "log" / "_wal").is_dir() is False  # batched mode writes no WAL


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("gs://bucket/log", r"Unsupported data URI scheme 'gs' in 'gs://bucket/log/_'"),
        ("file://relative/log", r"file URIs must name an absolute local path"),
        ("wasbs://container/log", r"Azure URIs must look like wasbs://container@account"),
    ],
    ids=["scheme", "relative-file-uri", "azure-without-account"],
)
def test_bad_roots_are_data_errors(root: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        prediction_log_storage(root)


# --- import hygiene -------------------------------------------------------------------------------------------


def test_the_package_does_not_import_airflow_and_imports_pandas_and_pyarrow_lazily(tmp_path: Path) -> None:
    """In a fresh interpreter: importing costs no Airflow/pandas/pyarrow; a full round trip costs no Airflow."""
    script = textwrap.dedent(
        """
        import json, sys
        from datetime import UTC, datetime
        import airflow_mlops.prediction_log as plog
        from airflow_mlops.prediction_log import reader, records, storage, wal, writer

        def loaded(*names):
            return sorted(m for m in sys.modules if m.split(".")[0] in names)

        on_import = loaded("airflow", "pandas", "pyarrow", "fsspec")
        store = plog.LocalStorage(sys.argv[1])
        with plog.PredictionLog(store, mode="strict") as log:
            log.append([plog.PredictionRecord("r", datetime.now(UTC), "m", "1", "champion", "{}", None, 1.0, None)])
        rows = len(plog.read_predictions(store, "m"))
        hours = plog.hour_partitions(store, "m")
        rows += len(plog.read_prediction_parts(store, hours[0]))
        print(json.dumps({"on_import": on_import, "after_use": loaded("airflow"), "rows": rows}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"on_import": [], "after_use": [], "rows": 2}
