"""Append-only, hash-chained audit trail of deployment actions (MLflow keeps no alias history), in a SQL database.

One entry per alias move or traffic change (kind ``alias``) and per human decision on a version (kinds
``approval`` and ``rejection``): model, alias, from and to version, reason, actor (DAG run or approver),
time (UTC) and, for decisions, a JSON detail. Entries of a model form a hash chain
(:mod:`airflow_mlops.deploy.audit_chain`): each carries its sequence number, the previous entry's hash and
its own; the model's head is kept in ``mlops_audit_heads`` and, when the trail is given an MLflow client
(:meth:`AuditTrail.mirror_heads_to`), as the registered model's tag ``mlops.audit_head``. ``airflow-mlops
audit verify`` checks all three. The same database holds the intents of deployment operations in flight
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
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
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
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy import create_engine as _create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from airflow_mlops.deploy.audit_chain import (
    GENESIS,
    ChainHead,
    ChainReport,
    StoredEntry,
    canonical_detail,
    entry_hash,
    verify_chain,
)
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from sqlalchemy.engine import Connection, Engine, RowMapping

log = logging.getLogger(__name__)

#: Kinds of audit entries: an alias move or traffic change, and a human decision on a version.
ALIAS, APPROVAL, REJECTION = "alias", "approval", "rejection"
KINDS = (ALIAS, APPROVAL, REJECTION)

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
    # the hash chain (NULL only on rows written outside airflow-mlops: `audit verify` names them)
    Column("seq", Integer, nullable=True),
    Column("kind", String(16), nullable=True),
    Column("detail", Text, nullable=True),
    Column("prev_hash", String(64), nullable=True),
    Column("entry_hash", String(64), nullable=True),
    Index("ix_mlops_alias_events_model_id", "model", "id"),
    Index("ux_mlops_alias_events_model_seq", "model", "seq", unique=True),
)

#: Columns added to ``mlops_alias_events`` by the hash chain (created on a trail that predates it).
_CHAIN_COLUMNS = ("seq", "kind", "detail", "prev_hash", "entry_hash")

audit_heads = Table(
    "mlops_audit_heads",
    metadata,
    Column("model", String(256), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("entry_hash", String(64), nullable=False),
    # the head a trail from before the chain was sealed at (its registry tag could not exist yet)
    Column("sealed_seq", Integer, nullable=True),
)

#: Facts about the trail itself; ``legacy_max_id``: the newest row written before the chain (sealed lazily).
audit_meta = Table(
    "mlops_audit_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)
LEGACY_MAX_ID = "legacy_max_id"

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
    kind: str = ALIAS
    detail: dict[str, Any] | None = None
    seq: int | None = None
    entry_hash: str | None = None


@dataclass(frozen=True)
class NewEvent:
    """An entry to append (the database assigns ``id``; ``ts`` is the commit time)."""

    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str
    kind: str = ALIAS
    detail: Mapping[str, Any] | None = None


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


def _stored(row: RowMapping | Mapping[str, Any]) -> StoredEntry:
    return StoredEntry(
        id=int(row["id"]),
        model=row["model"],
        seq=row["seq"],
        kind=row["kind"],
        alias=row["alias"],
        from_version=row["from_version"],
        to_version=row["to_version"],
        reason=row["reason"],
        actor=row["actor"],
        ts=_as_utc(row["ts"]),
        op_id=row["op_id"],
        detail=row["detail"],
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


def _event(row: RowMapping | Mapping[str, Any]) -> AliasEvent:
    s = _stored(row)
    detail = json.loads(s.detail) if s.detail else None
    return AliasEvent(
        s.id, s.model, s.alias, s.from_version, s.to_version, s.reason, s.actor, s.ts, s.op_id, s.kind or ALIAS, detail,
        s.seq, s.entry_hash,
    )  # fmt: skip


#: Alias moves and traffic changes (rows from before the chain have no kind).
_IS_ALIAS_MOVE = or_(alias_events.c.kind == ALIAS, alias_events.c.kind.is_(None))


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
        self._head_mirror: Callable[[str], None] | None = None
        self._legacy_max_id = 0

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
        for attempt in range(5):
            try:
                metadata.create_all(engine)
                break
            except DBAPIError:
                # another process created a table between our existence check and CREATE TABLE: check again
                if attempt == 4:
                    raise
        self._legacy_max_id = _add_chain_columns(engine)
        if self._legacy_max_id:
            for model in _unsealed_models(engine, self._legacy_max_id):
                self._seal_legacy(engine, model)
        return engine

    def mirror_heads_to(self, client: MlflowClient) -> None:
        """Write each model's chain head as its registered-model tag ``mlops.audit_head`` after every append.

        Written after the append commits (no registry call holds the database), then checked: when another
        append moved the head meanwhile, the newer head is written, so the tag ends at the newest head. A
        failed write is logged, not raised (the action it records has happened); ``audit verify`` reports
        the entries the registry does not confirm, and the next append writes the tag again.
        """

        def mirror(model: str) -> None:
            written = None
            try:
                for _ in range(5):
                    head = self.head(model)
                    if head is None or head == written:
                        return
                    client.set_registered_model_tag(model, Tag.AUDIT_HEAD, str(head))
                    written = head
            except Exception as exc:
                log.warning("%s: could not mirror its audit head to the registry: %s", model, exc)

        self._head_mirror = mirror

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
        kind: str = ALIAS,
        detail: Mapping[str, Any] | None = None,
    ) -> AliasEvent:
        """Append one entry and return it as stored."""
        event = NewEvent(alias, _version(from_version), _version(to_version), reason, actor, kind, detail)
        return self._append(model, [event], ts=ts, op_id=op_id)[0]

    def record_decision(
        self,
        model: str,
        version: str | int,
        *,
        approved: bool,
        stage: str,
        approver: str,
        responded_at: str,
        comment: str,
        dag_run: str,
    ) -> AliasEvent:
        """Append a human decision on ``version`` at ``stage`` (the alias it was to reach), once.

        The approver is the actor; the reason is their comment (or the bare decision); the detail keeps when
        they answered and in which DAG run. The same decision recorded again (a retried task) returns the
        entry already in the chain.
        """
        decision = "approved" if approved else "rejected"
        kind, detail = (
            APPROVAL if approved else REJECTION,
            {
                "decision": decision,
                "responded_at": responded_at,
                "comment": comment,
                "dag_run": dag_run,
            },
        )
        same = select(alias_events).where(
            alias_events.c.model == model,
            alias_events.c.kind == kind,
            alias_events.c.alias == stage,
            alias_events.c.to_version == str(version),
            alias_events.c.detail == canonical_detail(detail),
        )
        recorded: list[AliasEvent] = []

        def not_yet(conn: Connection) -> bool:  # checked under the head lock: two recordings append once
            recorded.extend(_event(row) for row in conn.execute(same).mappings())
            return not recorded

        event = NewEvent(stage, None, str(version), comment or decision, approver, kind, detail)
        appended = self._append(model, [event], before=not_yet)
        return appended[0] if appended else recorded[0]

    def history(self, model: str, limit: int | None = None) -> list[AliasEvent]:
        """The model's alias moves and traffic changes, oldest first; with ``limit``, only the newest ``limit``."""
        return self._read(model, limit, alias_moves_only=True)

    def entries(self, model: str, limit: int | None = None) -> list[AliasEvent]:
        """Every entry of the model's chain (alias moves, approvals, rejections), oldest first."""
        return self._read(model, limit, alias_moves_only=False)

    def _read(self, model: str, limit: int | None, *, alias_moves_only: bool) -> list[AliasEvent]:
        query = select(alias_events).where(alias_events.c.model == model)
        if alias_moves_only:
            query = query.where(_IS_ALIAS_MOVE)
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
            .where(alias_events.c.model == model, _IS_ALIAS_MOVE)
            .group_by(alias_events.c.alias)
            .subquery()
        )
        query = select(alias_events.c.alias, alias_events.c.to_version).join(newest, alias_events.c.id == newest.c.id)
        with self.engine.connect() as conn:
            return {row.alias: row.to_version for row in conn.execute(query)}

    # -- the chain ----------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Every model with entries or a head row, sorted."""
        with self.engine.connect() as conn:
            names = {row[0] for row in conn.execute(select(alias_events.c.model).distinct())}
            names |= {row[0] for row in conn.execute(select(audit_heads.c.model))}
        return sorted(names)

    def stored_entries(self, model: str) -> list[StoredEntry]:
        """The model's rows exactly as stored, by row id (for verification)."""
        return self.stored_chain(model)[0]

    def stored_chain(self, model: str) -> tuple[list[StoredEntry], ChainHead | None, int | None]:
        """The model's rows by row id, its head row and the seq it was sealed at after an upgrade (``None``:
        never), read in one snapshot (PostgreSQL: repeatable read) so an append in between cannot mismatch them.
        """
        query = select(alias_events).where(alias_events.c.model == model).order_by(alias_events.c.id)
        head_query = select(audit_heads.c.seq, audit_heads.c.entry_hash, audit_heads.c.sealed_seq).where(
            audit_heads.c.model == model
        )
        options = {"isolation_level": "REPEATABLE READ"} if self.dialect == "postgresql" else {}
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            entries = [_stored(row) for row in conn.execute(query).mappings()]
            row = conn.execute(head_query).first()
        if row is None:
            return entries, None, None
        head = ChainHead(int(row[0]), str(row[1])) if row[0] else None
        return entries, head, (int(row[2]) if row[2] is not None else None)

    def head(self, model: str) -> ChainHead | None:
        """The model's head row (``None``: no entry was ever appended)."""
        query = select(audit_heads.c.seq, audit_heads.c.entry_hash).where(audit_heads.c.model == model)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row[0] == 0:
            return None
        return ChainHead(int(row[0]), str(row[1]))

    def _ensure_head_row(self, model: str, engine: Engine | None = None) -> None:
        engine = engine or self.engine
        with engine.connect() as conn:
            if conn.execute(select(audit_heads.c.model).where(audit_heads.c.model == model)).first() is not None:
                return
        try:
            with engine.begin() as conn:
                conn.execute(insert(audit_heads).values(model=model, seq=0, entry_hash=GENESIS))
        except IntegrityError:
            pass  # another process inserted it first

    @staticmethod
    def _lock_head(conn: Connection, model: str) -> ChainHead:
        """Take the model's head row for this transaction and read it.

        The no-op UPDATE comes first: it takes PostgreSQL's row lock and SQLite's write lock before the read,
        so two appends never read the same head (a read first would let SQLite deadlock the second writer).
        """
        conn.execute(update(audit_heads).where(audit_heads.c.model == model).values(seq=audit_heads.c.seq))
        row = conn.execute(
            select(audit_heads.c.seq, audit_heads.c.entry_hash).where(audit_heads.c.model == model)
        ).first()
        if row is None:  # pragma: no cover - _ensure_head_row made it before the transaction
            raise RuntimeError(f"{model}: the audit head row vanished")
        return ChainHead(int(row[0]), str(row[1]))

    def _append(
        self,
        model: str,
        events: Sequence[NewEvent],
        *,
        ts: datetime | None = None,
        op_id: str | None = None,
        before: Callable[[Connection], bool] | None = None,
    ) -> list[AliasEvent]:
        """Append ``events`` to the model's chain in one transaction (after ``before(conn)``, which may veto)."""
        for event in events:
            if event.kind not in KINDS:
                raise ValueError(f"audit entry kind: got {event.kind!r}; expected one of {', '.join(KINDS)}")
        engine = self.engine
        self._ensure_head_row(model)
        with engine.begin() as conn:
            head = self._lock_head(conn, model)
            if self._legacy_max_id:  # rows an older version wrote: chained first, in row order
                head = self._seal_rows(conn, model, head, self._legacy_max_id)
            if before is not None and not before(conn):
                return []
            when = _as_utc(ts) if ts is not None else utcnow()
            appended = []
            for event in events:
                stored = self._insert(conn, model, event, when, op_id, head)
                head = ChainHead(int(stored.seq or 0), str(stored.entry_hash))
                appended.append(stored)
            if appended:
                conn.execute(
                    update(audit_heads)
                    .where(audit_heads.c.model == model)
                    .values(seq=head.seq, entry_hash=head.entry_hash)
                )
        if appended and self._head_mirror is not None:
            self._head_mirror(model)
        return appended

    @staticmethod
    def _insert(
        conn: Connection, model: str, event: NewEvent, when: datetime, op_id: str | None, head: ChainHead
    ) -> AliasEvent:
        values: dict[str, Any] = {
            "model": model,
            "alias": event.alias,
            "from_version": event.from_version,
            "to_version": event.to_version,
            "reason": event.reason,
            "actor": event.actor,
            "ts": when,
            "op_id": op_id,
            "seq": head.seq + 1,
            "kind": event.kind,
            "detail": canonical_detail(event.detail),
            "prev_hash": head.entry_hash,
        }
        values["entry_hash"] = entry_hash(values)
        key = conn.execute(insert(alias_events).values(**values)).inserted_primary_key
        if key is None:  # pragma: no cover - every supported dialect reports the new id
            raise RuntimeError("the database did not report the id of the new audit row")
        return _event({**values, "id": int(key[0])})

    def _seal_legacy(self, engine: Engine, model: str) -> None:
        """Chain the model's rows written before the trail had a chain (right after the upgrade). No registry tag
        is written: nothing confirmed these rows before; ``audit verify`` says so until the model's next append."""
        self._ensure_head_row(model, engine)
        with engine.begin() as conn:
            self._seal_rows(conn, model, self._lock_head(conn, model), self._legacy_max_id)

    @staticmethod
    def _seal_rows(conn: Connection, model: str, head: ChainHead, up_to_id: int) -> ChainHead:
        """Under the head lock: give the model's unsealed rows up to row ``up_to_id`` (the newest row an older
        version wrote before the upgrade) their place in the chain. Rows after it are never sealed: an unsealed
        row there was written outside airflow-mlops, and ``audit verify`` names it."""
        rows = list(
            conn.execute(
                select(alias_events)
                .where(
                    alias_events.c.model == model,
                    alias_events.c.entry_hash.is_(None),
                    alias_events.c.id <= up_to_id,
                )
                .order_by(alias_events.c.id)
            ).mappings()
        )
        for row in rows:
            seq = head.seq + 1
            digest = entry_hash({**row, "seq": seq, "kind": ALIAS, "prev_hash": head.entry_hash})
            conn.execute(
                update(alias_events)
                .where(alias_events.c.id == row["id"])
                .values(seq=seq, kind=ALIAS, prev_hash=head.entry_hash, entry_hash=digest)
            )
            head = ChainHead(seq, digest)
        if rows:
            conn.execute(
                update(audit_heads)
                .where(audit_heads.c.model == model)
                .values(seq=head.seq, entry_hash=head.entry_hash, sealed_seq=head.seq)
            )
            log.warning("%s: sealed %d audit entries written before the trail was a hash chain", model, len(rows))
        return head

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

        def drop_intent(conn: Connection) -> bool:
            return bool(conn.execute(delete(pending_ops).where(pending_ops.c.op_id == op_id)).rowcount == 1)

        return self._append(model, events, op_id=op_id, before=drop_intent)

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


def verify(audit: AuditTrail, model: str, client: MlflowClient | None, *, settle: float = 1.0) -> ChainReport:
    """Check ``model``'s chain in ``audit``; with ``client``, also against the head mirrored in its registry.

    A chain that looks broken is read once more after ``settle`` seconds: an append that committed between
    the two reads (its registry tag follows its commit) is not tampering.

    :raises mlflow.exceptions.MlflowException: the registry could not be read (other than: no such model).
    """
    report = _verify_once(audit, model, client)
    if not report.ok and settle > 0:
        time.sleep(settle)
        report = _verify_once(audit, model, client)
    return report


def _verify_once(audit: AuditTrail, model: str, client: MlflowClient | None) -> ChainReport:
    entries, head, sealed_seq = audit.stored_chain(model)
    registry_head = None
    missing_model = False
    if client is not None:
        from mlflow.exceptions import MlflowException  # only with a registry: mlflow takes seconds to import

        try:
            registry_head = (client.get_registered_model(model).tags or {}).get(Tag.AUDIT_HEAD)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            missing_model = True
    report = verify_chain(
        model,
        entries,
        stored_head=head,
        registry_head=registry_head,
        registry_checked=client is not None,
        sealed_seq=sealed_seq,
    )
    if missing_model and report.entries:
        report.problems.append(f"the registry has no model {model!r} to confirm its {report.entries} entries")
    return report


def registry_models_with_heads(client: MlflowClient) -> list[str]:
    """Registered models carrying an audit head tag (a model whose whole trail vanished still has one)."""
    names, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        names += [m.name for m in page if Tag.AUDIT_HEAD in (m.tags or {})]
        token = page.token
        if not token:
            return names


def _add_chain_columns(engine: Engine) -> int:
    """Give a trail created before the hash chain its columns and index; return the newest row id written
    before them (0: none), recorded once in ``mlops_audit_meta`` before any column is added, so every process
    (also one that finds the columns already there) seals exactly the rows an older version wrote."""
    existing = {column["name"] for column in inspect(engine).get_columns(alias_events.name)}
    missing = [alias_events.c[name] for name in _CHAIN_COLUMNS if name not in existing]
    if missing:
        with engine.connect() as conn:
            newest = conn.execute(select(func.max(alias_events.c.id))).scalar() or 0
        try:
            with engine.begin() as conn:
                conn.execute(insert(audit_meta).values(key=LEGACY_MAX_ID, value=str(newest)))
        except IntegrityError:
            pass  # another process recorded it first (the same rows: older versions write no chain columns)
    for column in missing:
        ddl = f"ALTER TABLE {alias_events.name} ADD COLUMN {column.name} {column.type.compile(engine.dialect)}"
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(ddl)
        except DBAPIError:
            # another process added it first
            if column.name not in {c["name"] for c in inspect(engine).get_columns(alias_events.name)}:
                raise
    for index in alias_events.indexes:
        try:
            index.create(engine, checkfirst=True)
        except DBAPIError:
            pass  # another process created it first
    with engine.connect() as conn:
        recorded = conn.execute(select(audit_meta.c.value).where(audit_meta.c.key == LEGACY_MAX_ID)).scalar()
    return int(recorded or 0)


def _unsealed_models(engine: Engine, up_to_id: int) -> list[str]:
    query = (
        select(alias_events.c.model)
        .where(alias_events.c.entry_hash.is_(None), alias_events.c.id <= up_to_id)
        .distinct()
    )
    with engine.connect() as conn:
        return sorted(row[0] for row in conn.execute(query))


def _one_line(text: str) -> str:
    """A cell of the printed trail: control characters and line breaks (e.g. in a comment) become spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def format_history(events: Sequence[AliasEvent]) -> str:
    """The trail as a plain-text table (what ``airflow-mlops history <model>`` prints)."""
    header = ("time (UTC)", "alias", "from", "to", "actor", "reason")
    rows = [
        (
            event.ts.strftime("%Y-%m-%d %H:%M:%S"),
            event.alias if event.kind == ALIAS else f"{event.kind}:{event.alias}",
            event.from_version or "-",
            event.to_version or "-",
            _one_line(event.actor),
            _one_line(event.reason),
        )
        for event in events
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
