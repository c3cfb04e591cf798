"""Durable prediction log: every request the gateway serves and every delayed label, stored as Parquet.

Monitoring, drift checks and retraining read what the gateway actually served, so the log is the record
of truth and has to survive the gateway dying. Rows land in hourly Parquet partitions under a local path,
``file://``, ``s3://`` or ``wasb(s)://`` / ``abfs(s)://`` root::

    <root>/<model>/predictions/date=YYYY-MM-DD/hour=HH/part-<flush time>-<uuid12>.parquet
    <root>/<model>/feedback/date=YYYY-MM-DD/hour=HH/part-<flush time>-<uuid12>.parquet

The partition is the record's own ``ts`` (UTC); each flush writes one part file per (model, kind, hour).

Durability has two modes:

``batched`` (default)
    ``append`` only adds rows to an in-memory buffer; a background thread (:meth:`PredictionLog.start`)
    writes them every ``flush_interval`` seconds, or sooner once ``max_buffer`` rows are waiting. A
    ``kill -9`` (or power loss) of the gateway loses the rows appended since the last completed flush:
    at most one ``flush_interval`` of traffic plus the time that flush takes. Nothing already flushed is
    lost. Pick ``flush_interval`` as the amount of traffic you accept to lose.
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
"""

from __future__ import annotations

import fcntl
import io
import itertools
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from airflow_mlops.data.io import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    _Location,
    _parse_uri,
    _remote,
    _s3_hook,
    _wasb_hook,
    read_bytes,
)
from airflow_mlops.exceptions import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "FEEDBACK_COLUMNS",
    "PREDICTION_COLUMNS",
    "ROLES",
    "FeedbackRecord",
    "PredictionLog",
    "PredictionRecord",
    "list_partitions",
    "read_feedback",
    "read_predictions",
]

log = logging.getLogger(__name__)

Role = Literal["champion", "canary", "shadow"]
Kind = Literal["predictions", "feedback"]
Mode = Literal["batched", "strict"]
ROLES: frozenset[str] = frozenset({"champion", "canary", "shadow"})
PREDICTION_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    "model",
    "version",
    "role",
    "inputs",
    "output",
    "latency_ms",
    "error",
)
FEEDBACK_COLUMNS: tuple[str, ...] = ("request_id", "ts", "model", "label")
ROW_ID = "row_id"
_KINDS: tuple[Kind, ...] = ("predictions", "feedback")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PART = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/part-[^/]+\.parquet")
_WAL_LOCK = re.compile(r"wal-([0-9a-f]{12})\.lock")
_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class PredictionRecord:
    """One input row of one request, as served by one model version in one role."""

    request_id: str
    ts: datetime  # timezone-aware; stored as UTC
    model: str
    version: str
    role: str  # "champion" | "canary" | "shadow"
    inputs: str  # JSON text of the input record (one record per row)
    output: str | None  # JSON text of the model output for that record (None on error)
    latency_ms: float
    error: str | None


@dataclass(frozen=True)
class FeedbackRecord:
    """A label that arrived after the prediction, joined to it later by ``request_id``."""

    request_id: str
    ts: datetime  # timezone-aware; stored as UTC
    model: str
    label: str  # JSON text


_R = TypeVar("_R", PredictionRecord, FeedbackRecord)
_T = TypeVar("_T")


class PredictionLog:
    """Append-only, thread-safe prediction and feedback log; see the module docstring for durability.

    :param root: local path, ``file://`` URI or object-store URI under which partitions are written.
    :param mode: ``"batched"`` (buffer in memory) or ``"strict"`` (fsync a write-ahead log per append).
    :param flush_interval: seconds between background flushes (both modes); the batched-mode loss bound.
    :param max_buffer: buffered rows that trigger an early flush.
    :param wal_dir: local directory of the write-ahead log; default ``<root>/_wal`` for local roots,
        required for strict mode with an object-store root.
    :param conn_id: Airflow connection for object-store roots (default ``aws_default`` / ``wasb_default``).
    :param on_flush: called with the number of rows after every flush that wrote rows (observability).
    """

    def __init__(
        self,
        root: str,
        *,
        mode: Mode = "batched",
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        wal_dir: str | None = None,
        conn_id: str | None = None,
        on_flush: Callable[[int], None] | None = None,
    ) -> None:
        if mode not in ("batched", "strict"):
            raise ValueError(f"PredictionLog mode must be 'batched' or 'strict', got {mode!r}")
        if not flush_interval > 0:
            raise ValueError(f"PredictionLog flush_interval must be > 0 seconds, got {flush_interval!r}")
        if max_buffer < 1:
            raise ValueError(f"PredictionLog max_buffer must be >= 1, got {max_buffer!r}")
        self._store = _Store(root, conn_id)
        self._mode: Mode = mode
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._on_flush = on_flush
        self._wal_dir = self._resolve_wal_dir(wal_dir)
        self._token = uuid.uuid4().hex[:12]
        self._row_ids = itertools.count()
        self._lock = threading.Lock()  # buffers + WAL writes + rotation: the rows buffered == the rows in the WAL
        self._flush_lock = threading.Lock()  # one flush at a time, so a failed flush re-queues in order
        self._predictions: list[tuple[str, PredictionRecord]] = []
        self._feedback: list[tuple[str, FeedbackRecord]] = []
        self._pending_segments: list[Path] = []  # sealed WAL segments whose rows are not in Parquet yet
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovery_pending = True
        self._recover_quietly()
        self._wal = _WriteAheadLog(self._wal_dir, self._token) if mode == "strict" and self._wal_dir else None

    @property
    def root(self) -> str:
        return self._store.root

    @property
    def mode(self) -> Mode:
        return self._mode

    def _resolve_wal_dir(self, wal_dir: str | None) -> Path | None:
        if wal_dir is not None:
            return Path(wal_dir)
        if self._store.local_root is not None:
            return self._store.local_root / "_wal"
        if self._mode == "strict":
            raise ValueError(
                f"PredictionLog(mode='strict') with the object-store root {self._store.root!r} needs wal_dir: "
                "a local directory for the write-ahead log (an object store cannot fsync)"
            )
        return None

    # --- writing --------------------------------------------------------------------------------------

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Log predictions; in strict mode they are on disk (fsynced) when this returns."""
        self._add([(self._next_row_id(), _check_prediction(r)) for r in records], [])

    def append_feedback(self, records: Sequence[FeedbackRecord]) -> None:
        """Log delayed labels, with the same durability as :meth:`append`."""
        self._add([], [(self._next_row_id(), _check_feedback(r)) for r in records])

    def _next_row_id(self) -> str:
        return f"{self._token}-{next(self._row_ids)}"

    def _add(self, predictions: list[tuple[str, PredictionRecord]], feedback: list[tuple[str, FeedbackRecord]]) -> None:
        if not predictions and not feedback:
            return
        wal = self._wal
        payload = _encode_wal(predictions, feedback) if wal is not None else b""
        ticket = 0
        with self._lock:
            if self._closed:
                raise RuntimeError(f"PredictionLog for {self._store.root!r} is closed")
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
                raise
            if self._wal is not None:
                self._wal.discard(self._pending_segments)
            self._pending_segments = []
        rows = len(predictions) + len(feedback)
        if rows and self._on_flush is not None:
            try:
                self._on_flush(rows)
            except Exception:
                log.exception("PredictionLog on_flush callback failed")

    def _take(self) -> tuple[list[tuple[str, PredictionRecord]], list[tuple[str, FeedbackRecord]]]:
        """Swap the buffers out and seal the WAL segment holding exactly those rows, atomically."""
        with self._lock:
            predictions, feedback = self._predictions, self._feedback
            self._predictions, self._feedback = [], []
            if self._wal is not None:
                sealed = self._wal.seal()
                if sealed is not None:
                    self._pending_segments.append(sealed)
        return predictions, feedback

    def _write_parts(
        self, predictions: Sequence[tuple[str, PredictionRecord]], feedback: Sequence[tuple[str, FeedbackRecord]]
    ) -> int:
        """Write one part file per (model, kind, hour); return how many were written."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self._write_kind("predictions", predictions, stamp) + self._write_kind("feedback", feedback, stamp)

    def _write_kind(self, kind: Kind, rows: Sequence[tuple[str, _R]], stamp: str) -> int:
        groups = _group_by_partition(rows)
        for (model, hour), group in groups.items():
            rel = f"{model}/{kind}/date={hour:%Y-%m-%d}/hour={hour:%H}/part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
            self._store.write(rel, _to_parquet(kind, group))
        return len(groups)

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background flusher (every ``flush_interval`` s, or when ``max_buffer`` rows wait)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"PredictionLog for {self._store.root!r} is closed")
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
        finally:
            if self._wal is not None:
                self._wal.close(remove=not self._pending_segments and not self._predictions and not self._feedback)

    def __enter__(self) -> PredictionLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- recovery -------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Turn the WAL of every dead process in ``wal_dir`` into Parquet; return the rows recovered."""
        if self._wal_dir is None or not self._wal_dir.is_dir():
            self._recovery_pending = False
            return 0
        total = 0
        for lock_path in sorted(self._wal_dir.glob("wal-*.lock")):
            match = _WAL_LOCK.fullmatch(lock_path.name)
            if match is None or match.group(1) == self._token:
                continue
            total += self._recover_one(lock_path, match.group(1))
        self._recovery_pending = False
        return total

    def _recover_quietly(self) -> None:
        """Recover, but let the gateway start (and retry from the flusher) while the store is unreachable."""
        try:
            self.recover()
        except Exception:
            log.exception("Recovering the write-ahead log in %s failed; the flusher will retry", self._wal_dir)

    def _recover_one(self, lock_path: Path, token: str) -> int:
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            return 0  # another process recovered it meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its owner is alive
            if os.fstat(fd).st_nlink == 0:
                return 0  # recovered and removed by another process while we waited
            segments = sorted(lock_path.parent.glob(f"wal-{token}-*.jsonl"))
            predictions, feedback = _read_wal(segments)
            self._write_parts(predictions, feedback)
            for path in [*segments, lock_path]:
                path.unlink(missing_ok=True)
            _fsync_dir(lock_path.parent)
        finally:
            os.close(fd)
        rows = len(predictions) + len(feedback)
        if rows:
            log.warning("Recovered %d rows from the write-ahead log of a dead process (%s)", rows, lock_path)
        return rows


# --- write-ahead log ----------------------------------------------------------------------------------------


class _WriteAheadLog:
    """Segmented JSON-lines WAL of one process, with group commit.

    Lock order: the owner's lock, then ``_sync``, then ``_io``. ``_io`` guards the current segment's fd and
    the write counter; ``_sync`` makes one thread fsync for every writer waiting, and keeps ``seal`` from
    closing an fd that is being fsynced.
    """

    def __init__(self, directory: Path, token: str) -> None:
        self._dir = directory
        self._token = token
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_path = directory / f"wal-{token}.lock"
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._io = threading.Lock()
        self._sync = threading.Lock()
        self._seq = 0
        self._written = 0
        self._synced = 0
        self._dirty = False
        self._size = 0
        self._path, self._fd = self._new_segment()

    def _new_segment(self) -> tuple[Path, int]:
        self._seq += 1
        self._size = 0
        path = self._dir / f"wal-{self._token}-{self._seq:08d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_dir(self._dir)  # the new name must survive a crash too
        return path, fd

    def write(self, payload: bytes) -> int:
        """Append ``payload`` (not yet durable); return the ticket to pass to :meth:`sync`."""
        with self._io:
            try:
                _write_all(self._fd, payload)
            except BaseException:
                # A partial line (disk full) would glue itself to the next one and corrupt that row too.
                os.ftruncate(self._fd, self._size)
                raise
            self._size += len(payload)
            self._written += 1
            self._dirty = True
            return self._written

    def sync(self, ticket: int) -> None:
        """Return once write ``ticket`` is on disk; one fsync covers every write made before it started."""
        with self._sync:
            if self._synced >= ticket:
                return
            with self._io:
                fd, upto = self._fd, self._written
            os.fsync(fd)
            self._synced = upto

    def seal(self) -> Path | None:
        """Close the current segment (if it holds anything) and start a new one; return the sealed path."""
        with self._sync, self._io:
            if not self._dirty:
                return None
            os.fsync(self._fd)
            os.close(self._fd)
            sealed = self._path
            self._path, self._fd = self._new_segment()
            self._synced = self._written
            self._dirty = False
            return sealed

    def discard(self, segments: Iterable[Path]) -> None:
        """Delete segments whose rows are now in Parquet."""
        removed = False
        for path in segments:
            path.unlink(missing_ok=True)
            removed = True
        if removed:
            _fsync_dir(self._dir)

    def close(self, *, remove: bool) -> None:
        """Release the WAL; with ``remove`` delete its files (all rows are in Parquet), else leave them to recover."""
        with self._sync, self._io:
            os.close(self._fd)
            if remove:
                self._path.unlink(missing_ok=True)
                self._lock_path.unlink(missing_ok=True)
                _fsync_dir(self._dir)
            os.close(self._lock_fd)


def _encode_wal(
    predictions: Sequence[tuple[str, PredictionRecord]], feedback: Sequence[tuple[str, FeedbackRecord]]
) -> bytes:
    dumps = _JSON.encode
    lines = [
        dumps(["p", row_id, r.request_id, r.ts.isoformat(), r.model, r.version, r.role, r.inputs, r.output,
               r.latency_ms, r.error])
        for row_id, r in predictions
    ]  # fmt: skip
    lines.extend(dumps(["f", row_id, r.request_id, r.ts.isoformat(), r.model, r.label]) for row_id, r in feedback)
    lines.append("")
    return "\n".join(lines).encode()


def _read_wal(
    segments: Sequence[Path],
) -> tuple[list[tuple[str, PredictionRecord]], list[tuple[str, FeedbackRecord]]]:
    """Decode WAL segments; a torn last line (the append never returned) or a corrupt line is skipped."""
    predictions: list[tuple[str, PredictionRecord]] = []
    feedback: list[tuple[str, FeedbackRecord]] = []
    for path in segments:
        for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not line:
                continue
            try:
                _decode_wal_line(json.loads(line), predictions, feedback)
            except (ValueError, TypeError, IndexError) as exc:
                log.warning("Skipping unreadable line %d of write-ahead log %s: %s", number, path, exc)
    return predictions, feedback


def _decode_wal_line(
    item: list[Any], predictions: list[tuple[str, PredictionRecord]], feedback: list[tuple[str, FeedbackRecord]]
) -> None:
    if item[0] == "p":
        _, row_id, request_id, ts, model, version, role, inputs, output, latency_ms, error = item
        record = PredictionRecord(
            request_id, datetime.fromisoformat(ts), model, version, role, inputs, output, float(latency_ms), error
        )
        predictions.append((row_id, record))
    elif item[0] == "f":
        _, row_id, request_id, ts, model, label = item
        feedback.append((row_id, FeedbackRecord(request_id, datetime.fromisoformat(ts), model, label)))
    else:
        raise ValueError(f"unknown record kind {item[0]!r}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- validation and Parquet -----------------------------------------------------------------------------


def _check_model(model: str, what: str) -> None:
    if not _MODEL_NAME.fullmatch(model):
        raise ValueError(
            f"{what}: model name {model!r} is not a safe path segment "
            "(letters, digits, '.', '_', '-'; starting with a letter or digit)"
        )


def _check_ts(ts: datetime, request_id: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"Cannot log request {request_id!r}: ts {ts!r} is naive; pass a timezone-aware datetime")


def _check_prediction(record: PredictionRecord) -> PredictionRecord:
    """Reject what would poison a whole flush later (bad path segment, naive time) while the caller can see it."""
    _check_model(record.model, f"Cannot log request {record.request_id!r}")
    _check_ts(record.ts, record.request_id)
    if record.role not in ROLES:
        raise ValueError(
            f"Cannot log request {record.request_id!r}: role {record.role!r} is not one of {sorted(ROLES)}"
        )
    return record


def _check_feedback(record: FeedbackRecord) -> FeedbackRecord:
    _check_model(record.model, f"Cannot log request {record.request_id!r}")
    _check_ts(record.ts, record.request_id)
    return record


def _group_by_partition(rows: Sequence[tuple[str, _R]]) -> dict[tuple[str, datetime], list[tuple[str, _R]]]:
    groups: dict[tuple[str, datetime], list[tuple[str, _R]]] = {}
    for row in rows:
        record = row[1]
        hour = record.ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        groups.setdefault((record.model, hour), []).append(row)
    return groups


def _schema(kind: Kind) -> pa.Schema:
    import pyarrow as pa

    string, ts = pa.string(), pa.timestamp("us", tz="UTC")
    if kind == "predictions":
        return pa.schema(
            [
                pa.field("request_id", string, nullable=False),
                pa.field("ts", ts, nullable=False),
                pa.field("model", string, nullable=False),
                pa.field("version", string, nullable=False),
                pa.field("role", string, nullable=False),
                pa.field("inputs", string, nullable=False),
                pa.field("output", string),
                pa.field("latency_ms", pa.float64(), nullable=False),
                pa.field("error", string),
                pa.field(ROW_ID, string, nullable=False),
            ]
        )
    return pa.schema(
        [
            pa.field("request_id", string, nullable=False),
            pa.field("ts", ts, nullable=False),
            pa.field("model", string, nullable=False),
            pa.field("label", string, nullable=False),
            pa.field(ROW_ID, string, nullable=False),
        ]
    )


def _to_parquet(kind: Kind, rows: Sequence[tuple[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(kind)
    columns = PREDICTION_COLUMNS if kind == "predictions" else FEEDBACK_COLUMNS
    data: dict[str, list[Any]] = {name: [getattr(record, name) for _, record in rows] for name in columns}
    data[ROW_ID] = [row_id for row_id, _ in rows]
    table = pa.Table.from_pydict(data, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


# --- storage ----------------------------------------------------------------------------------------------


class _Store:
    """Where part files live: a local directory (atomic, fsynced writes) or an object-store prefix.

    For object stores one Airflow hook, and so one SDK client, serves every call of the store:
    ``data.io.read_bytes``/``write_bytes`` build a hook and a boto/Azure client per call (~0.1-0.4 s each),
    which would dominate a flush every second and a read of hundreds of part files. Errors still go
    through ``data.io``'s messages (URI, connection, what went wrong).
    """

    def __init__(self, root: str, conn_id: str | None) -> None:
        self.root = root.rstrip("/") or root
        self.conn_id = conn_id
        # Parse a child URI: it always has a key, even for a bare ``s3://bucket`` root.
        self.loc: _Location = _parse_uri(f"{self.root}/_")
        self.local_root: Path | None = Path(self.loc.path).parent if self.loc.kind == "local" else None
        self._key_root = self.loc.path[: -len("_")]  # "" or "prefix/"
        default = DEFAULT_AWS_CONN_ID if self.loc.kind == "s3" else DEFAULT_WASB_CONN_ID
        self._conn = conn_id or default
        self._hook: Any = None
        self._hook_lock = threading.Lock()

    def write(self, rel: str, data: bytes) -> None:
        if self.local_root is not None:
            _write_local_atomic(self.local_root / rel, data)
        elif self.loc.kind == "s3":
            self._call("write", rel, lambda hook, key: hook.load_bytes(data, key, self.loc.container, replace=True))
        else:
            self._call("write", rel, lambda hook, key: hook.upload(self.loc.container, key, data=data, overwrite=True))

    def read(self, path: str) -> bytes:
        """Read a path or URI returned by :meth:`list`."""
        if self.local_root is not None:
            return read_bytes(path, self.conn_id)
        rel = path[len(self.root) + 1 :]
        if self.loc.kind == "s3":
            body: bytes = self._call(
                "read",
                rel,
                lambda hook, key: hook.get_conn().get_object(Bucket=self.loc.container, Key=key)["Body"].read(),
            )
        else:
            body = self._call("read", rel, lambda hook, key: hook.download(self.loc.container, key).readall())
        return body

    def list(self, rel_prefix: str) -> list[str]:
        """Paths (local) or URIs (object store) of every part file under ``rel_prefix``."""
        if self.local_root is not None:
            base = self.local_root / rel_prefix
            return [str(path) for path in base.rglob("part-*.parquet")] if base.is_dir() else []
        if self.loc.kind == "s3":
            keys: list[str] = self._call("list", rel_prefix, lambda hook, key: hook.list_keys(self.loc.container, key))
        else:  # recursive: get_blobs_list stops at the first "/" below the prefix
            keys = self._call(
                "list", rel_prefix, lambda hook, key: hook.get_blobs_list_recursive(self.loc.container, prefix=key)
            )
        prefix = f"{self._key_root}{rel_prefix}"
        return [f"{self.root}/{key[len(self._key_root) :]}" for key in keys if key.startswith(prefix)]

    def _call(self, op: str, rel: str, action: Callable[[Any, str], _T]) -> _T:
        key = f"{self._key_root}{rel}"
        loc = _Location(f"{self.root}/{rel}", self.loc.kind, key, self.loc.container, self.loc.account)
        return _remote(op, loc, self._conn, lambda conn: action(self._get_hook(conn), key))

    def _get_hook(self, conn: str) -> Any:
        with self._hook_lock:
            if self._hook is None:
                self._hook = (
                    _s3_hook(conn, self.conn_id) if self.loc.kind == "s3" else _wasb_hook(self.loc, conn, "use")
                )
            return self._hook


def _write_local_atomic(path: Path, data: bytes) -> None:
    """Readers never see a half-written part file, and a flushed one survives power loss."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise DataError(f"Cannot write prediction-log part file {str(path)!r}: {exc}") from exc


# --- reading ----------------------------------------------------------------------------------------------


def list_partitions(root: str, model: str, kind: Kind = "predictions", conn_id: str | None = None) -> list[str]:
    """Every part file of ``model``'s ``kind`` (local paths or URIs), oldest partition first."""
    return [path for path, _ in _list_parts(_Store(root, conn_id), model, kind)]


def _list_parts(store: _Store, model: str, kind: Kind) -> list[tuple[str, datetime]]:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {list(_KINDS)}, got {kind!r}")
    _check_model(model, "Cannot read the prediction log")
    parts: list[tuple[str, datetime]] = []
    for path in store.list(f"{model}/{kind}/"):
        match = _PART.search(path.replace(os.sep, "/"))
        if match is not None:
            hour = datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}:00:00+00:00")
            parts.append((path, hour))
    parts.sort(key=lambda item: (item[1], item[0]))
    return parts


def read_predictions(
    root: str, model: str, start: datetime | None = None, end: datetime | None = None, *, conn_id: str | None = None
) -> pd.DataFrame:
    """Logged predictions with ``start <= ts < end`` (UTC-aware bounds), sorted by ``ts``, duplicates removed."""
    return _read("predictions", root, model, start, end, conn_id)


def read_feedback(
    root: str, model: str, start: datetime | None = None, end: datetime | None = None, *, conn_id: str | None = None
) -> pd.DataFrame:
    """Logged labels with ``start <= ts < end`` (UTC-aware bounds), sorted by ``ts``, duplicates removed."""
    return _read("feedback", root, model, start, end, conn_id)


def _read(
    kind: Kind, root: str, model: str, start: datetime | None, end: datetime | None, conn_id: str | None
) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, bound in (("start", start), ("end", end)):
        if bound is not None and bound.utcoffset() is None:
            raise ValueError(f"{name}={bound!r} is naive; pass a timezone-aware datetime (UTC)")
    store = _Store(root, conn_id)
    schema = _schema(kind)
    tables = []
    for path, hour in _list_parts(store, model, kind):
        if (start is not None and hour + timedelta(hours=1) <= start) or (end is not None and hour >= end):
            continue  # the whole hour is outside the window
        try:
            tables.append(pq.read_table(io.BytesIO(store.read(path)), schema=schema))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"Cannot parse prediction-log part file {path!r} as Parquet: {exc}") from exc
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    frame = table.to_pandas()
    if start is not None:
        frame = frame[frame["ts"] >= start]
    if end is not None:
        frame = frame[frame["ts"] < end]
    frame = frame.drop_duplicates(subset=[ROW_ID]).sort_values("ts", kind="stable")
    columns = list(PREDICTION_COLUMNS if kind == "predictions" else FEEDBACK_COLUMNS)
    return frame[columns].reset_index(drop=True)


def hour_partitions(
    root: str,
    model: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    conn_id: str | None = None,
) -> list[list[str]]:
    """The part files of each hour partition overlapping ``[start, end)``, oldest hour first.

    An hour's files belong together (rows written twice by a recovery share an hour), so a reader that
    handles whole hours deduplicates exactly; monitoring maps one task over each hour.
    """
    groups: dict[datetime, list[str]] = {}
    for path, hour in _list_parts(_Store(root, conn_id), model, "predictions"):
        if (start is not None and hour + timedelta(hours=1) <= start) or (end is not None and hour >= end):
            continue
        groups.setdefault(hour, []).append(path)
    return [groups[hour] for hour in sorted(groups)]


def read_prediction_parts(
    root: str,
    paths: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    conn_id: str | None = None,
) -> pd.DataFrame:
    """The rows of the given prediction part files with ``start <= ts < end``, duplicates removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = _Store(root, conn_id)
    schema = _schema("predictions")
    tables = []
    for path in paths:
        try:
            tables.append(pq.read_table(io.BytesIO(store.read(path)), schema=schema))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"Cannot parse prediction-log part file {path!r} as Parquet: {exc}") from exc
    frame = (pa.concat_tables(tables) if tables else schema.empty_table()).to_pandas()
    if start is not None:
        frame = frame[frame["ts"] >= start]
    if end is not None:
        frame = frame[frame["ts"] < end]
    frame = frame.drop_duplicates(subset=[ROW_ID]).sort_values("ts", kind="stable")
    return frame[list(PREDICTION_COLUMNS)].reset_index(drop=True)
