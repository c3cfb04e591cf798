"""Append-only audit trail of alias moves (MLflow keeps no alias history), stored in a SQL database.

One row per alias move: model, alias, from and to version, reason, actor (DAG run or approver) and
time (UTC). The same database holds the intents of deployment operations in flight
(``mlops_pending_ops``) and one row per model for the promotion lock (``mlops_model_locks``); see
:mod:`airflow_mlops.deploy.promotion` and :mod:`airflow_mlops.deploy.locking`.

Works through SQLAlchemy Core on SQLite (``sqlite:///path``) and PostgreSQL
(``postgresql+psycopg2://...``). Tables are created on first use. An ``AuditTrail`` owns a
connection pool: create one per process (do not share it across ``fork``).

.. code-block:: python

    audit = AuditTrail(settings.state_db_url())
    audit.record("fraud", "champion", "3", "4", reason="canary healthy at 100%", actor="fraud__deploy/run_7")
    print(format_history(audit.history("fraud")))
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import create_engine as _create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, RowMapping

metadata = MetaData()

alias_events = Table(
    "mlops_alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(256), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", String(32), nullable=True),
    Column("to_version", String(32), nullable=True),
    Column("reason", Text, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    # Groups the rows one operation appended (a promotion moves several aliases at once).
    Column("op_id", String(36), nullable=True),
    Index("ix_mlops_alias_events_model_id", "model", "id"),
)

model_locks = Table(
    "mlops_model_locks",
    metadata,
    Column("model", String(256), primary_key=True),
    Column("holder", String(512), nullable=True),
    Column("acquired_at", DateTime(timezone=True), nullable=True),
)

pending_ops = Table(
    "mlops_pending_ops",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("op_id", String(36), nullable=False, unique=True),
    Column("model", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("plan", Text, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_mlops_pending_ops_model", "model"),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # SQLite stores the UTC wall clock without an offset; PostgreSQL returns the session's offset.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class AliasEvent:
    """One alias move: ``alias`` went from ``from_version`` to ``to_version`` (``None``: unset)."""

    id: int
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str
    ts: datetime
    op_id: str | None = None


@dataclass(frozen=True)
class NewEvent:
    """An alias move to append (the database assigns ``id``; ``ts`` is the commit time)."""

    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str


@dataclass(frozen=True)
class PendingOp:
    """The recorded intent of a deployment operation that has not finished (or crashed)."""

    op_id: str
    model: str
    kind: str
    plan: dict[str, Any]
    actor: str
    reason: str
    created_at: datetime


def _event(row: RowMapping) -> AliasEvent:
    return AliasEvent(
        id=int(row["id"]),
        model=row["model"],
        alias=row["alias"],
        from_version=row["from_version"],
        to_version=row["to_version"],
        reason=row["reason"],
        actor=row["actor"],
        ts=_as_utc(row["ts"]),
        op_id=row["op_id"],
    )


class AuditTrail:
    """The alias history of every model, plus the bookkeeping of guarded deployment operations.

    :param url: SQLAlchemy URL of the state database, e.g. ``sqlite:////var/lib/mlops/state.db`` or
        ``postgresql+psycopg2://user@host:5432/mlops``. See :func:`airflow_mlops.settings.state_db_url`.
    :param engine_kwargs: Extra keyword arguments for :func:`sqlalchemy.create_engine`.
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self._engine_kwargs = engine_kwargs
        self._engine: Engine | None = None
        self._init_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AuditTrail({self.safe_url!r})"

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden (for messages)."""
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        """The engine, created (and the tables with it) on first use."""
        if self._engine is None:
            with self._init_lock:
                if self._engine is None:
                    self._engine = self._create_engine()
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ..."""
        return str(self.engine.dialect.name)

    def _create_engine(self) -> Engine:
        kwargs = dict(self._engine_kwargs)
        if self.url.startswith("sqlite"):
            # Short writes from other processes wait for the database's write lock instead of failing.
            kwargs.setdefault("connect_args", {"timeout": 60})
        else:
            kwargs.setdefault("pool_pre_ping", True)
        engine = _create_engine(self.url, **kwargs)
        try:
            metadata.create_all(engine)
        except DBAPIError:
            # Another process created the tables between our existence check and CREATE TABLE.
            metadata.create_all(engine)
        return engine

    def dispose(self) -> None:
        """Close the pool's connections (the trail can be used again afterwards)."""
        if self._engine is not None:
            self._engine.dispose()

    # -- the trail --------------------------------------------------------------------------------

    def record(
        self,
        model: str,
        alias: str,
        from_version: str | None,
        to_version: str | None,
        *,
        reason: str,
        actor: str,
        ts: datetime | None = None,
        op_id: str | None = None,
    ) -> AliasEvent:
        """Append one alias move and return it as stored."""
        with self.engine.begin() as conn:
            return self._insert(
                conn, model, NewEvent(alias, _version(from_version), _version(to_version), reason, actor), ts, op_id
            )

    def history(self, model: str, limit: int | None = None) -> list[AliasEvent]:
        """The model's alias moves, oldest first; with ``limit``, only the newest ``limit`` of them."""
        query = select(alias_events).where(alias_events.c.model == model)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit: got {limit}; expected a number >= 0 (or None for all)")
            query = query.order_by(alias_events.c.id.desc()).limit(limit)
        else:
            query = query.order_by(alias_events.c.id)
        with self.engine.connect() as conn:
            events = [_event(row) for row in conn.execute(query).mappings()]
        return sorted(events, key=lambda event: event.id)

    def last_known(self, model: str) -> dict[str, str | None]:
        """Where the trail last left each alias it mentions (``None``: removed)."""
        newest = (
            select(alias_events.c.alias, func.max(alias_events.c.id).label("id"))
            .where(alias_events.c.model == model)
            .group_by(alias_events.c.alias)
            .subquery()
        )
        query = select(alias_events.c.alias, alias_events.c.to_version).join(newest, alias_events.c.id == newest.c.id)
        with self.engine.connect() as conn:
            return {row.alias: row.to_version for row in conn.execute(query)}

    @staticmethod
    def _insert(conn: Connection, model: str, event: NewEvent, ts: datetime | None, op_id: str | None) -> AliasEvent:
        when = _as_utc(ts) if ts is not None else utcnow()
        values = {
            "model": model,
            "alias": event.alias,
            "from_version": event.from_version,
            "to_version": event.to_version,
            "reason": event.reason,
            "actor": event.actor,
            "ts": when,
            "op_id": op_id,
        }
        key = conn.execute(insert(alias_events).values(**values)).inserted_primary_key
        if key is None:  # pragma: no cover - every supported dialect reports the new id
            raise RuntimeError("the database did not report the id of the new audit row")
        return AliasEvent(
            id=int(key[0]),
            model=model,
            alias=event.alias,
            from_version=event.from_version,
            to_version=event.to_version,
            reason=event.reason,
            actor=event.actor,
            ts=when,
            op_id=op_id,
        )

    # -- intents of operations in flight ----------------------------------------------------------

    def add_pending(self, model: str, kind: str, plan: dict[str, Any], *, actor: str, reason: str) -> str:
        """Record (and commit) the intent of an operation before it touches the registry. Returns its id."""
        op_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                insert(pending_ops).values(
                    op_id=op_id,
                    model=model,
                    kind=kind,
                    plan=json.dumps(plan, sort_keys=True),
                    actor=actor,
                    reason=reason,
                    created_at=utcnow(),
                )
            )
        return op_id

    def pending(self, model: str) -> list[PendingOp]:
        """Operations on ``model`` whose intent was recorded but that never completed, oldest first."""
        return self._pending(select(pending_ops).where(pending_ops.c.model == model).order_by(pending_ops.c.id))

    def all_pending(self) -> list[PendingOp]:
        """Every model's interrupted operations, oldest first."""
        return self._pending(select(pending_ops).order_by(pending_ops.c.id))

    def _pending(self, query: Any) -> list[PendingOp]:
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        return [
            PendingOp(
                op_id=row["op_id"],
                model=row["model"],
                kind=row["kind"],
                plan=json.loads(row["plan"]),
                actor=row["actor"],
                reason=row["reason"],
                created_at=_as_utc(row["created_at"]),
            )
            for row in rows
        ]

    def complete_pending(self, op_id: str, model: str, events: Sequence[NewEvent]) -> list[AliasEvent]:
        """In one transaction: drop the intent ``op_id`` and append its alias moves.

        Returns the appended events; returns ``[]`` (and appends nothing) when the intent is already
        gone, so an operation can never be audited twice.
        """
        with self.engine.begin() as conn:
            deleted = conn.execute(delete(pending_ops).where(pending_ops.c.op_id == op_id)).rowcount
            if deleted != 1:
                return []
            now = utcnow()
            return [self._insert(conn, model, event, now, op_id) for event in events]

    # -- lock rows ---------------------------------------------------------------------------------

    def ensure_lock_row(self, model: str) -> None:
        """Create the model's lock row unless it exists (committed, so ``SELECT ... FOR UPDATE`` finds it)."""
        with self.engine.connect() as conn:
            if conn.execute(select(model_locks.c.model).where(model_locks.c.model == model)).first() is not None:
                return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(model_locks).values(model=model, holder=None, acquired_at=None))
        except IntegrityError:
            pass  # another process inserted it first

    def note_lock_holder(self, model: str, holder: str, conn: Connection | None = None) -> None:
        """Write who holds (or last held) the model's lock, for diagnostics."""
        statement = update(model_locks).where(model_locks.c.model == model).values(holder=holder, acquired_at=utcnow())
        if conn is not None:
            conn.execute(statement)
            return
        self.ensure_lock_row(model)
        with self.engine.begin() as own:
            own.execute(statement)

    def lock_holder(self, model: str) -> tuple[str | None, datetime | None]:
        """The committed (last) holder of the model's lock and when it took it."""
        query = select(model_locks.c.holder, model_locks.c.acquired_at).where(model_locks.c.model == model)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None, None
        return row[0], _as_utc(row[1]) if row[1] is not None else None


def _version(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def format_history(events: Sequence[AliasEvent]) -> str:
    """The trail as a plain-text table (what ``airflow-mlops history <model>`` prints)."""
    header = ("time (UTC)", "alias", "from", "to", "actor", "reason")
    rows = [
        (
            event.ts.strftime("%Y-%m-%d %H:%M:%S"),
            event.alias,
            event.from_version or "-",
            event.to_version or "-",
            event.actor,
            event.reason,
        )
        for event in events
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
