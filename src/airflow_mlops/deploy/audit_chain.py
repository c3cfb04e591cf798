"""The audit trail as a hash chain: how an entry is hashed and how a model's chain is verified.

Each entry's hash covers its content and the hash of the model's entry before it, so editing, deleting,
inserting or reordering an entry breaks the chain at that entry. A database rewritten wholesale (every
hash recomputed) still links; that is why the chain's head is also kept outside the database, as the
registered model's tag ``mlops.audit_head`` (``<seq>:<sha256>``), written at every append, and
:func:`verify_chain` compares the two. Plain functions over plain values: no database, no MLflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_mlops.vocabulary import Tag

#: ``prev_hash`` of a model's first entry.
GENESIS = "0" * 64

#: Version of the hashed layout, inside every hash (a future layout cannot be mistaken for this one).
LAYOUT = 1


@dataclass(frozen=True)
class ChainHead:
    """The newest entry of a model's chain: its sequence number (1, 2, ...) and hash."""

    seq: int
    entry_hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash}"

    @classmethod
    def parse(cls, text: str) -> ChainHead:
        """Read ``<seq>:<sha256>`` (the registry tag's value)."""
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"expected '<seq>:<64 hex digits>', got {text!r}")
        return cls(int(seq), digest)


def canonical_detail(detail: Mapping[str, Any] | None) -> str | None:
    """The stored (and hashed) text of an entry's structured detail: sorted, compact JSON."""
    if detail is None:
        return None
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def timestamp_text(ts: datetime) -> str:
    """The hashed form of an entry's time: UTC, ISO 8601, microseconds (what both databases keep)."""
    value = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


#: What an entry's hash covers, by column name: its content, its place and the previous entry's hash.
HASHED_FIELDS = (
    "model",
    "seq",
    "kind",
    "alias",
    "from_version",
    "to_version",
    "reason",
    "actor",
    "ts",
    "op_id",
    "detail",
    "prev_hash",
)


def entry_hash(fields: Mapping[str, Any]) -> str:
    """sha256 (hex) over :data:`HASHED_FIELDS` of an entry (a row, or the values about to be inserted)."""
    body = {"layout": LAYOUT, **{name: fields[name] for name in HASHED_FIELDS}}
    body["ts"] = timestamp_text(fields["ts"])
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredEntry:
    """One row of the chain as the database returned it (``seq``/hashes are ``None`` on an unsealed row)."""

    id: int
    model: str
    seq: int | None
    kind: str | None
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str
    ts: datetime
    op_id: str | None
    detail: str | None
    prev_hash: str | None
    entry_hash: str | None

    def recomputed(self) -> str | None:
        if self.seq is None or self.kind is None or self.prev_hash is None:
            return None
        return entry_hash({name: getattr(self, name) for name in HASHED_FIELDS})

    def describe(self) -> str:
        when = timestamp_text(self.ts)[:19].replace("T", " ")
        what = f"{self.kind or 'alias'} {self.alias} {self.from_version or '-'} -> {self.to_version or '-'}"
        return f"entry #{self.seq if self.seq is not None else '?'} (row id {self.id}, {when}, {what}, by {self.actor})"


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found for one model. ``ok`` only when ``problems`` is empty."""

    model: str
    entries: int
    head: ChainHead | None
    registry_checked: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            where = "matches the registry" if self.registry_checked else "registry not checked"
            head = f"head {self.head.seq}:{self.head.entry_hash[:12]}" if self.head else "no entries"
            notes = "".join(f"; {note}" for note in self.notes)
            return f"{self.model}: audit chain intact, {self.entries} entries, {head} ({where}){notes}"
        return f"{self.model}: audit chain BROKEN: " + "; ".join(self.problems)


def _walk(entries: Sequence[StoredEntry]) -> tuple[str | None, ChainHead | None]:
    """The first broken link in ``entries`` (ordered by row id), and the head the intact part ends at."""
    prev, expected_seq, head = GENESIS, 1, None
    present = {entry.seq for entry in entries}
    for entry in entries:
        if entry.entry_hash is None or entry.seq is None or entry.prev_hash is None:
            return f"{entry.describe()} is not sealed (no hash): it was written outside airflow-mlops", head
        if entry.seq > expected_seq:
            if expected_seq in present:
                return f"{entry.describe()} comes before entry #{expected_seq} (reordered)", head
            missing = f"#{expected_seq}" if entry.seq == expected_seq + 1 else f"#{expected_seq}-#{entry.seq - 1}"
            return f"entries {missing} are missing before {entry.describe()} (deleted)", head
        if entry.seq < expected_seq:
            return f"{entry.describe()} is out of place after #{expected_seq - 1} (inserted or reordered)", head
        if entry.prev_hash != prev:
            return f"{entry.describe()} does not link to entry #{expected_seq - 1} (inserted or reordered)", head
        if entry.recomputed() != entry.entry_hash:
            return f"{entry.describe()} does not match its hash (edited)", head
        prev, expected_seq, head = entry.entry_hash, expected_seq + 1, ChainHead(entry.seq, entry.entry_hash)
    return None, head


def verify_chain(
    model: str,
    entries: Sequence[StoredEntry],
    *,
    stored_head: ChainHead | None,
    registry_head: str | None,
    registry_checked: bool = True,
    sealed_seq: int | None = None,
) -> ChainReport:
    """Check one model's chain: every link, the database's head row, and the head mirrored in the registry.

    :param entries: The model's rows ordered by row id (the order they were appended in).
    :param stored_head: The database's head row for the model (``None``: none).
    :param registry_head: The registered model's ``mlops.audit_head`` tag value (``None``: no tag).
    :param registry_checked: ``False`` when the registry was not read (``registry_head`` is then ignored).
    :param sealed_seq: The entry a trail from before the chain was sealed at on upgrade (``None``: none). Until
        the model's next append the registry holds no head for such a chain; that is noted, not a problem.
    """
    problems: list[str] = []
    notes: list[str] = []
    broken, head = _walk(entries)
    if broken:
        problems.append(broken)
    if not broken and stored_head != head:
        problems.append(
            f"the database's head row says {_head_text(stored_head)} but the entries end at {_head_text(head)} "
            "(entries deleted or appended without airflow-mlops)"
        )
    if registry_checked and not broken:
        if registry_head is None and head is not None and head.seq == sealed_seq:
            notes.append(
                f"entries #1-#{head.seq} were written before the chain and sealed on upgrade: nothing confirms them "
                "outside the database until the model's next move writes its registry head"
            )
        else:
            problems.extend(_registry_problems(entries, head, registry_head))
    return ChainReport(model, len(entries), head, registry_checked, problems, notes)


def _registry_problems(entries: Sequence[StoredEntry], head: ChainHead | None, registry_head: str | None) -> list[str]:
    if registry_head is None:
        if head is None:
            return []
        return [
            f"the registry holds no audit head (tag {Tag.AUDIT_HEAD}) for a chain of {head.seq} entries: nothing "
            "outside the database confirms them (the tag is written at every append)"
        ]
    try:
        mirrored = ChainHead.parse(registry_head)
    except ValueError as exc:
        return [f"the registry's audit head tag is unreadable: {exc}"]
    by_seq = {entry.seq: entry for entry in entries}
    confirmed = by_seq.get(mirrored.seq)
    if confirmed is None:
        return [
            f"the registry's audit head is entry #{mirrored.seq}, but the database ends at {_head_text(head)} "
            f"(entries #{(head.seq if head else 0) + 1}-#{mirrored.seq} were deleted)"
        ]
    if confirmed.entry_hash != mirrored.entry_hash:
        return [
            f"{confirmed.describe()} has a different hash than the registry's audit head "
            f"({mirrored.entry_hash[:12]}): the chain was rewritten up to it"
        ]
    if head is not None and head.seq > mirrored.seq:
        first, more = by_seq[mirrored.seq + 1], head.seq - mirrored.seq - 1
        tail = f" and the {more} after it are" if more else " is"
        return [
            f"{first.describe()}{tail} not confirmed by the registry "
            f"(its audit head is #{mirrored.seq}): appended without airflow-mlops, or a registry tag write failed"
        ]
    return []


def _head_text(head: ChainHead | None) -> str:
    return f"entry #{head.seq}" if head else "no entries"
