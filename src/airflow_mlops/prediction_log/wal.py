"""The write-ahead log of strict mode: JSON-lines segments on a local disk, fsynced, one set per process.

Protocol, for one process (its ``token`` names every file it owns):

1. **own**: create ``wal-<token>.lock`` and hold an exclusive ``flock`` on it for the life of the process.
   The kernel drops the lock when the process dies, however it dies; that is how recovery tells a dead
   process's WAL from a live one's, so several processes may share a directory.
2. **append**: write the rows as JSON lines to the current segment ``wal-<token>-<seq>.jsonl``
   (:meth:`WriteAheadLog.write`), then :meth:`WriteAheadLog.sync`. Concurrent writers share one ``fsync``
   (group commit): whoever gets the sync lock fsyncs everything written so far.
3. **seal**: when the writer takes its buffer to flush, the segment holding exactly those rows is closed
   and a new one started (:meth:`WriteAheadLog.seal`); once the rows are in Parquet the sealed segments are
   deleted (:meth:`WriteAheadLog.discard`).
4. **recover**: another process takes the ``flock`` of a lock file nobody holds (:func:`recover_dead`),
   decodes that token's segments, hands the rows to the writer, and only then deletes the files.

An ``fsync`` on an object store does not exist, so the directory is always local.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_mlops.prediction_log.records import FeedbackRecord, PredictionRecord

__all__ = [
    "FeedbackRows",
    "PredictionRows",
    "WriteAheadLog",
    "decode_segments",
    "encode",
    "fsync_dir",
    "recover_dead",
    "write_all",
]

log = logging.getLogger(__name__)

PredictionRows = list[tuple[str, PredictionRecord]]
"""``(row_id, record)`` pairs."""
FeedbackRows = list[tuple[str, FeedbackRecord]]

_LOCK_NAME = re.compile(r"wal-([0-9a-f]{12})\.lock")
_JSON = json.JSONEncoder(separators=(",", ":"))


class WriteAheadLog:
    """Segmented JSON-lines WAL of one process, with group commit (steps 1-3 of the module docstring).

    Lock order: the writer's lock, then ``_sync``, then ``_io``. ``_io`` guards the current segment's fd and
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
        fsync_dir(self._dir)  # the new name must survive a crash too
        return path, fd

    def write(self, payload: bytes) -> int:
        """Append ``payload`` (not yet durable); return the ticket to pass to :meth:`sync`."""
        with self._io:
            try:
                write_all(self._fd, payload)
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
            fsync_dir(self._dir)

    def close(self, *, remove: bool) -> None:
        """Release the WAL; with ``remove`` delete its files (all rows are in Parquet), else leave them to recover."""
        with self._sync, self._io:
            os.close(self._fd)
            if remove:
                self._path.unlink(missing_ok=True)
                self._lock_path.unlink(missing_ok=True)
                fsync_dir(self._dir)
            os.close(self._lock_fd)


# --- encoding -----------------------------------------------------------------------------------------------


def encode(
    predictions: Sequence[tuple[str, PredictionRecord]], feedback: Sequence[tuple[str, FeedbackRecord]]
) -> bytes:
    """The JSON lines of one append: ``["p", row_id, ...fields]`` or ``["f", row_id, ...fields]``."""
    dumps = _JSON.encode
    lines = [
        dumps(["p", row_id, r.request_id, r.ts.isoformat(), r.model, r.version, r.role, r.inputs, r.output,
               r.latency_ms, r.error])
        for row_id, r in predictions
    ]  # fmt: skip
    lines.extend(dumps(["f", row_id, r.request_id, r.ts.isoformat(), r.model, r.label]) for row_id, r in feedback)
    lines.append("")
    return "\n".join(lines).encode()


def decode_segments(segments: Sequence[Path]) -> tuple[PredictionRows, FeedbackRows]:
    """Decode WAL segments; a torn last line (the append never returned) or a corrupt line is skipped."""
    predictions: PredictionRows = []
    feedback: FeedbackRows = []
    for path in segments:
        for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not line:
                continue
            try:
                _decode_line(json.loads(line), predictions, feedback)
            except (ValueError, TypeError, IndexError) as exc:
                log.warning("Skipping unreadable line %d of write-ahead log %s: %s", number, path, exc)
    return predictions, feedback


def _decode_line(item: list[Any], predictions: PredictionRows, feedback: FeedbackRows) -> None:
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


# --- recovery -----------------------------------------------------------------------------------------------


def recover_dead(directory: Path, own_token: str, write: Callable[[PredictionRows, FeedbackRows], object]) -> int:
    """Hand the rows of every dead process's WAL in ``directory`` to ``write``, then delete that WAL.

    Return the rows recovered. A WAL whose ``flock`` is held belongs to a live process and is left alone;
    when ``write`` raises, the files stay for the next attempt.
    """
    if not directory.is_dir():
        return 0
    total = 0
    for lock_path in sorted(directory.glob("wal-*.lock")):
        match = _LOCK_NAME.fullmatch(lock_path.name)
        if match is not None and match.group(1) != own_token:
            total += _recover_one(lock_path, match.group(1), write)
    return total


def _recover_one(lock_path: Path, token: str, write: Callable[[PredictionRows, FeedbackRows], object]) -> int:
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
        predictions, feedback = decode_segments(segments)
        write(predictions, feedback)
        for path in [*segments, lock_path]:
            path.unlink(missing_ok=True)
        fsync_dir(lock_path.parent)
    finally:
        os.close(fd)
    rows = len(predictions) + len(feedback)
    if rows:
        log.warning("Recovered %d rows from the write-ahead log of a dead process (%s)", rows, lock_path)
    return rows


# --- durable file primitives --------------------------------------------------------------------------------


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Make a directory's new or removed names durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
