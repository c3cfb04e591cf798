"""Durable prediction log: every request the gateway serves and every delayed label, stored as Parquet.

Monitoring, drift checks and retraining read what the gateway actually served, so the log is the record
of truth and has to survive the gateway dying. Neither the gateway nor Airflow owns it, and it does not
import Airflow: it writes and reads through a :class:`Storage` (a local directory, or any fsspec
filesystem; ``airflow_mlops.hooks.object_storage`` builds one from a root URI and an Airflow connection).
Rows land in hourly Parquet partitions under the storage's root::

    <root>/<model>/predictions/date=YYYY-MM-DD/hour=HH/part-<flush time>-<uuid12>.parquet
    <root>/<model>/feedback/date=YYYY-MM-DD/hour=HH/part-<flush time>-<uuid12>.parquet

The partition is the record's own ``ts`` (UTC); each flush writes one part file per (model, kind, hour).

Durability has two modes:

``batched`` (default)
    ``append`` only adds rows to an in-memory buffer; a background thread (:meth:`PredictionLog.start`)
    writes them every ``flush_interval`` seconds, or sooner once ``max_buffer`` rows are waiting. A
    ``kill -9`` (or power loss) of the gateway loses the rows appended since the last completed flush:
    at most one ``flush_interval`` of traffic plus the time that flush takes. Nothing already flushed is
    lost. Pick ``flush_interval`` as the amount of traffic you accept to lose. While the store is down the
    rows wait in memory, at most ``max_pending`` of them (the oldest predictions are dropped beyond that,
    and counted); ``close`` with the store still down writes them to the local ``wal_dir``, from which the
    next ``PredictionLog`` on that folder recovers them.
``strict``
    ``append`` also writes the rows to a per-process write-ahead log (JSON lines in ``wal_dir``) and
    ``fsync``\\ s it before returning, so every response a client received is in the log even after
    ``kill -9``. Concurrent appends share one ``fsync`` (group commit). The flusher turns the WAL into
    Parquet and only then deletes it; a new log on the same ``wal_dir`` (:meth:`PredictionLog.recover`,
    run by ``__init__``) converts the WAL of any dead process. ``append`` blocks on disk here: call it from
    a worker thread (``asyncio.to_thread``), not on the event loop.

A crash after a part file is written but before its WAL segment is deleted makes recovery write those rows
again. Each row therefore carries a unique ``row_id`` column and the readers drop repeated ``row_id``\\ s;
code that reads part files directly (via :func:`list_partitions`) should do the same. ``row_id`` is used
rather than ``(request_id, role, ts, model)`` because one request may log several input rows that share
all four.

Part files appear atomically: local files are written to a temporary name, fsynced and renamed; object
stores only show an object once its upload completed. Failed flushes keep their rows buffered (and their
WAL segments on disk) and are retried on the next flush, so an object-store outage grows memory, not loss.
The WAL lives on a local disk (an ``fsync`` on an object store does not exist): it is required for
strict mode with an object-store root. Each live process holds an ``flock`` on its WAL lock file, which is
how recovery tells a dead process's WAL from a live one's (so several gateway workers may share a
``wal_dir``).

Modules: :mod:`.records` (rows, columns, schemas, validation), :mod:`.wal` (write-ahead log),
:mod:`.storage` (where part files live), :mod:`.writer` (:class:`PredictionLog`), :mod:`.reader`.
Cheap to import: pandas and pyarrow are imported inside the functions that need them.
"""

from __future__ import annotations

from airflow_mlops.prediction_log.reader import (
    count_prediction_parts,
    hour_partitions,
    list_partitions,
    read_feedback,
    read_prediction_parts,
    read_predictions,
)
from airflow_mlops.prediction_log.records import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    ROW_ID,
    FeedbackRecord,
    Kind,
    PredictionRecord,
)
from airflow_mlops.prediction_log.storage import FsspecStorage, LocalStorage, Storage
from airflow_mlops.prediction_log.writer import Mode, PredictionLog

__all__ = [
    "FEEDBACK_COLUMNS",
    "PREDICTION_COLUMNS",
    "ROW_ID",
    "FeedbackRecord",
    "FsspecStorage",
    "Kind",
    "LocalStorage",
    "Mode",
    "PredictionLog",
    "PredictionRecord",
    "Storage",
    "count_prediction_parts",
    "hour_partitions",
    "list_partitions",
    "read_feedback",
    "read_prediction_parts",
    "read_predictions",
]
