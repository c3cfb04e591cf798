"""Writing the prediction log: :class:`PredictionLog` buffers rows and flushes them as Parquet part files.

Each flush writes one part file per (model, kind, UTC hour of the record's ``ts``) through a
:class:`~airflow_mlops.prediction_log.storage.Storage`::

    <root>/<model>/<kind>/date=YYYY-MM-DD/hour=HH/part-<flush time>-<uuid12>.parquet

Durability (see the package docstring for the promise each mode makes):

1. **append**: validate the records, give each a ``row_id`` (``<token>-<counter>``), and under one lock put
   them in the buffer and, in strict mode, in the write-ahead log; then (strict) wait for its fsync.
2. **flush** (background thread every ``flush_interval`` s, early at ``max_buffer`` rows, or on ``close``):
   take the buffer and seal the WAL segment holding exactly those rows, write the part files, and only then
   delete the sealed segments. A failed write puts the rows back at the front of the buffer and keeps the
   segments; the next flush retries.
3. **recover** (in ``__init__``, retried by the flusher while it fails): write the WAL of every dead process
   in ``wal_dir`` as part files.
"""

from __future__ import annotations

import io
import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from airflow_mlops.prediction_log.records import (
    ROW_ID,
    FeedbackRecord,
    Kind,
    PredictionRecord,
    check_feedback,
    check_prediction,
    columns,
    hour_of,
    schema,
)
from airflow_mlops.prediction_log.storage import LocalStorage
from airflow_mlops.prediction_log.wal import FeedbackRows, PredictionRows, WriteAheadLog, encode, recover_dead

if TYPE_CHECKING:
    from airflow_mlops.prediction_log.storage import Storage

__all__ = ["Mode", "PredictionLog"]

log = logging.getLogger(__name__)

Mode = Literal["batched", "strict"]
_R = TypeVar("_R", PredictionRecord, FeedbackRecord)


class PredictionLog:
    """Append-only, thread-safe prediction and feedback log; see the package docstring for durability.

    :param storage: where part files are written (:class:`LocalStorage`, :class:`FsspecStorage`, or one
        built by ``airflow_mlops.hooks.object_storage.prediction_log_storage``).
    :param mode: ``"batched"`` (buffer in memory) or ``"strict"`` (fsync a write-ahead log per append).
    :param flush_interval: seconds between background flushes (both modes); the batched-mode loss bound.
    :param max_buffer: buffered rows that trigger an early flush.
    :param wal_dir: local directory of the write-ahead log; default ``<root>/_wal`` for a
        :class:`LocalStorage`, required for strict mode with any other storage.
    :param on_flush: called with the number of rows after every flush that wrote rows (observability).
    :param max_pending: batched mode: rows kept in memory while the store is down; beyond that the oldest
        predictions (then the oldest labels) are dropped and counted (:attr:`dropped_rows`), so an outage
        cannot exhaust the gateway's memory. Strict mode keeps every row in its write-ahead log instead.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        mode: Mode = "batched",
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        wal_dir: str | None = None,
        on_flush: Callable[[int], None] | None = None,
        max_pending: int = 100_000,
    ) -> None:
        if mode not in ("batched", "strict"):
            raise ValueError(f"PredictionLog mode must be 'batched' or 'strict', got {mode!r}")
        if not flush_interval > 0:
            raise ValueError(f"PredictionLog flush_interval must be > 0 seconds, got {flush_interval!r}")
        if max_buffer < 1:
            raise ValueError(f"PredictionLog max_buffer must be >= 1, got {max_buffer!r}")
        if max_pending < max_buffer:
            raise ValueError(f"PredictionLog max_pending must be >= max_buffer ({max_buffer}), got {max_pending!r}")
        self._max_pending = max_pending
        self.dropped_rows = 0
        """Batched mode: rows dropped because the store stayed down with ``max_pending`` rows waiting."""
        self.spilled_rows = 0
        """Batched mode: rows written to the local ``wal_dir`` at close because the store was down."""
        self._storage = storage
        self._mode: Mode = mode
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._on_flush = on_flush
        self._wal_dir = self._resolve_wal_dir(wal_dir)
        self._token = uuid.uuid4().hex[:12]
        self._row_ids = itertools.count()
        self._lock = threading.Lock()  # buffers + WAL writes + rotation: the rows buffered == the rows in the WAL
        self._flush_lock = threading.Lock()  # one flush at a time, so a failed flush re-queues in order
        self._predictions: PredictionRows = []
        self._feedback: FeedbackRows = []
        self._pending_segments: list[Path] = []  # sealed WAL segments whose rows are not in Parquet yet
        self._writing = 0  # rows taken by the flush in progress (still pending until written)
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovery_pending = True
        self._recover_quietly()
        self._wal = WriteAheadLog(self._wal_dir, self._token) if mode == "strict" and self._wal_dir else None

    @property
    def root(self) -> str:
        """The storage's root (local path or URI)."""
        return self._storage.uri

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def pending_rows(self) -> int:
        """Rows appended and not yet in the store: buffered, or taken by a flush that is writing them."""
        with self._lock:
            return len(self._predictions) + len(self._feedback) + self._writing

    def _resolve_wal_dir(self, wal_dir: str | None) -> Path | None:
        if wal_dir is not None:
            return Path(wal_dir)
        if isinstance(self._storage, LocalStorage):
            return self._storage.path / "_wal"
        if self._mode == "strict":
            raise ValueError(
                f"PredictionLog(mode='strict') with the object-store root {self.root!r} needs wal_dir: "
                "a local directory for the write-ahead log (an object store cannot fsync)"
            )
        return None

    # --- writing --------------------------------------------------------------------------------------

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Log predictions; in strict mode they are on disk (fsynced) when this returns."""
        self._add([(self._next_row_id(), check_prediction(r)) for r in records], [])

    def append_feedback(self, records: Sequence[FeedbackRecord]) -> None:
        """Log delayed labels, with the same durability as :meth:`append`."""
        self._add([], [(self._next_row_id(), check_feedback(r)) for r in records])

    def _next_row_id(self) -> str:
        return f"{self._token}-{next(self._row_ids)}"

    def _add(self, predictions: PredictionRows, feedback: FeedbackRows) -> None:
        if not predictions and not feedback:
            return
        wal = self._wal
        payload = encode(predictions, feedback) if wal is not None else b""
        ticket = 0
        with self._lock:
            if self._closed:
                raise RuntimeError(f"PredictionLog for {self.root!r} is closed")
            if wal is not None:
                ticket = wal.write(payload)
            self._predictions.extend(predictions)
            self._feedback.extend(feedback)
            full = len(self._predictions) + len(self._feedback) >= self._max_buffer
        if wal is not None:
            wal.sync(ticket)
        if full:
            if self._thread is not None:
                self._wake.set()
            else:
                self.flush()

    def flush(self) -> None:
        """Write every buffered row as Parquet part files now; on failure the rows stay buffered."""
        with self._flush_lock:
            predictions, feedback = self._take()
            if not predictions and not feedback and not self._pending_segments:
                return
            try:
                self._write_parts(predictions, feedback)
            except BaseException:
                with self._lock:
                    self._predictions[:0] = predictions
                    self._feedback[:0] = feedback
                    self._writing = 0
                    if self._wal is None:
                        self._bound_pending()
                raise
            with self._lock:
                self._writing = 0
            if self._wal is not None:
                self._wal.discard(self._pending_segments)
            self._pending_segments = []
        rows = len(predictions) + len(feedback)
        if rows and self._on_flush is not None:
            try:
                self._on_flush(rows)
            except Exception:
                log.exception("PredictionLog on_flush callback failed")

    def _bound_pending(self) -> None:
        """Keep at most ``max_pending`` rows waiting (caller holds the lock): oldest predictions go first."""
        excess = len(self._predictions) + len(self._feedback) - self._max_pending
        if excess <= 0:
            return
        from_predictions = min(excess, len(self._predictions))
        del self._predictions[:from_predictions]
        del self._feedback[: excess - from_predictions]
        self.dropped_rows += excess
        log.error(
            "Prediction log store %s is still failing with %d rows waiting: dropped the %d oldest (%d in total)",
            self.root,
            self._max_pending,
            excess,
            self.dropped_rows,
        )

    def _take(self) -> tuple[PredictionRows, FeedbackRows]:
        """Swap the buffers out and seal the WAL segment holding exactly those rows, atomically."""
        with self._lock:
            predictions, feedback = self._predictions, self._feedback
            self._predictions, self._feedback = [], []
            self._writing = len(predictions) + len(feedback)
            if self._wal is not None:
                sealed = self._wal.seal()
                if sealed is not None:
                    self._pending_segments.append(sealed)
        return predictions, feedback

    def _write_parts(self, predictions: PredictionRows, feedback: FeedbackRows) -> int:
        """Write one part file per (model, kind, hour); return how many were written."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self._write_kind("predictions", predictions, stamp) + self._write_kind("feedback", feedback, stamp)

    def _write_kind(self, kind: Kind, rows: Sequence[tuple[str, _R]], stamp: str) -> int:
        groups = _group_by_partition(rows)
        for (model, hour), group in groups.items():
            rel = f"{model}/{kind}/date={hour:%Y-%m-%d}/hour={hour:%H}/part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
            self._storage.write_part(rel, _to_parquet(kind, group))
        return len(groups)

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background flusher (every ``flush_interval`` s, or when ``max_buffer`` rows wait)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"PredictionLog for {self.root!r} is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"prediction-log-{self._token}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            if self._recovery_pending:
                self._recover_quietly()
            try:
                self.flush()
            except Exception:
                log.exception("PredictionLog flush to %s failed; rows stay buffered and are retried", self.root)
                self._stop.wait(self._flush_interval)  # a full buffer must not hammer a store that is down

    def close(self) -> None:
        """Stop the flusher and flush; the WAL (strict) is removed only once everything is in Parquet."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        except Exception:
            if self._wal is not None or not self._spill():
                raise
        finally:
            if self._wal is not None:
                self._wal.close(remove=not self._pending_segments and not self._predictions and not self._feedback)

    def _spill(self) -> bool:
        """Batched mode, closing while the store is down: write the waiting rows to the local ``wal_dir`` as
        a dead process's write-ahead log, which the next :class:`PredictionLog` on it recovers into Parquet.
        Returns whether the rows are safe (``False``: no ``wal_dir``, or it failed too; they are lost)."""
        with self._lock:
            predictions, feedback = self._predictions, self._feedback
            self._predictions, self._feedback = [], []
        rows = len(predictions) + len(feedback)
        if self._wal_dir is None:
            log.error("Prediction log store %s is down at close and there is no wal_dir: %d rows lost", self.root, rows)
            return False
        try:
            spill = WriteAheadLog(self._wal_dir, uuid.uuid4().hex[:12])
            spill.sync(spill.write(encode(predictions, feedback)))
            spill.seal()
            spill.close(remove=False)
        except Exception:
            log.exception("Spilling %d prediction-log rows to %s failed; they are lost", rows, self._wal_dir)
            return False
        self.spilled_rows += rows
        log.warning(
            "Prediction log store %s is down at close: %d rows kept in %s for the next start",
            self.root,
            rows,
            self._wal_dir,
        )
        return True

    def __enter__(self) -> PredictionLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- recovery -------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Turn the WAL of every dead process in ``wal_dir`` into Parquet; return the rows recovered."""
        total = 0 if self._wal_dir is None else recover_dead(self._wal_dir, self._token, self._write_parts)
        self._recovery_pending = False
        return total

    def _recover_quietly(self) -> None:
        """Recover, but let the gateway start (and retry from the flusher) while the store is unreachable."""
        try:
            self.recover()
        except Exception:
            log.exception("Recovering the write-ahead log in %s failed; the flusher will retry", self._wal_dir)


def _group_by_partition(rows: Sequence[tuple[str, _R]]) -> dict[tuple[str, datetime], list[tuple[str, _R]]]:
    groups: dict[tuple[str, datetime], list[tuple[str, _R]]] = {}
    for row in rows:
        record = row[1]
        groups.setdefault((record.model, hour_of(record.ts)), []).append(row)
    return groups


def _to_parquet(kind: Kind, rows: Sequence[tuple[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data: dict[str, list[Any]] = {name: [getattr(record, name) for _, record in rows] for name in columns(kind)}
    data[ROW_ID] = [row_id for row_id, _ in rows]
    table = pa.Table.from_pydict(data, schema=schema(kind))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
