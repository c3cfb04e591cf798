"""A per-model lock across processes and machines, held for the whole of one deployment operation.

PostgreSQL (and other server databases): ``SELECT ... FOR UPDATE`` on the model's row of
``mlops_model_locks``, inside a transaction on a dedicated connection that stays open until the
operation ends. A second process blocks on the row; ``lock_timeout`` bounds the wait. If the holder
dies, its connection closes, the server rolls the transaction back and the lock is free.

SQLite: an exclusive ``flock`` (through ``filelock``, never its soft-lock fallback) on
``<database>.locks/<model>-<hash>.lock`` next to the database file. The kernel releases it when the
holding process exits, however it exits. (Holding SQLite's own write
lock instead, ``BEGIN IMMEDIATE``, would serialize writers too, but the operation could then not
commit its intent row, which must be durable *before* the registry moves, and it would block every
other model's writes for the duration.) SQLite only serves one machine, and so does this lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from airflow_mlops.deploy.audit import model_locks
from airflow_mlops.exceptions import RegistryError

if TYPE_CHECKING:
    from airflow_mlops.deploy.audit import AuditTrail

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 120.0
"""Seconds to wait for another operation on the same model before giving up."""

_POLL_SECONDS = 0.02
_memory_locks: dict[tuple[str, str], threading.Lock] = {}
_memory_locks_guard = threading.Lock()


def default_holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@contextmanager
def model_lock(
    audit: AuditTrail, model: str, *, holder: str | None = None, timeout: float = DEFAULT_LOCK_TIMEOUT
) -> Iterator[None]:
    """Hold the per-model lock for the body of the ``with`` block.

    :param audit: The trail whose database holds the lock.
    :param model: Registered model name; operations on other models do not wait.
    :param holder: Who takes the lock (written to ``mlops_model_locks`` for diagnostics).
    :param timeout: Seconds to wait for the lock; then :class:`~airflow_mlops.exceptions.RegistryError`.
    """
    if timeout <= 0:
        raise ValueError(f"timeout: got {timeout}; expected a number of seconds > 0")
    who = holder or default_holder()
    if audit.dialect == "sqlite":
        database = audit.engine.url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            lock = _memory_lock(audit.url, model, timeout)
        else:
            lock = _file_lock(Path(database), model, timeout)
        with lock:
            audit.note_lock_holder(model, who)
            yield
        return
    with _row_lock(audit, model, who, timeout):
        yield


@contextmanager
def _row_lock(audit: AuditTrail, model: str, holder: str, timeout: float) -> Iterator[None]:
    audit.ensure_lock_row(model)
    started = time.monotonic()
    with audit.engine.connect() as conn, conn.begin():
        if audit.dialect == "postgresql":
            conn.execute(select(func.set_config("lock_timeout", f"{max(1, int(timeout * 1000))}ms", True)))
        try:
            conn.execute(select(model_locks.c.model).where(model_locks.c.model == model).with_for_update())
        except OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) == "55P03":  # lock_not_available
                raise _timeout_error(audit, model, timeout) from exc
            raise
        waited = time.monotonic() - started
        if waited > 1:
            log.info("%s: waited %.1fs for the deployment lock", model, waited)
        audit.note_lock_holder(model, holder, conn)
        yield
    # Leaving the block commits, which releases the row lock (an exception rolls back and releases it).


@contextmanager
def _file_lock(database: Path, model: str, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    folder = database.with_name(database.name + ".locks")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _lock_file_name(model)
    # Never a "soft" lock (a marker file that survives a killed holder): flock or an error.
    lock = FileLock(path, timeout=timeout, poll_interval=_POLL_SECONDS, thread_local=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise RegistryError(
            f"{model}: another deployment operation held the lock {path} for more than {timeout:g}s; "
            "wait for it to finish, or raise the timeout"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _memory_lock(url: str, model: str, timeout: float) -> Iterator[None]:
    with _memory_locks_guard:
        lock = _memory_locks.setdefault((url, model), threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise RegistryError(f"{model}: another deployment operation held the in-memory lock for more than {timeout:g}s")
    try:
        yield
    finally:
        lock.release()


def _lock_file_name(model: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", model)[:80]
    digest = hashlib.sha256(model.encode()).hexdigest()[:12]
    return f"{slug}-{digest}.lock"


def _timeout_error(audit: AuditTrail, model: str, timeout: float) -> RegistryError:
    return RegistryError(
        f"{model}: another deployment operation held the lock row in mlops_model_locks ({audit.safe_url}) for more "
        f"than {timeout:g}s; wait for it to finish, or raise the timeout"
    )
