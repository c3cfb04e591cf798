"""Guarded deployment operations over the MLflow registry: promote, roll back, reject, canary, shadow.

The registry is the deployment state of the local gateway: aliases ``champion``, ``challenger``,
``canary``, ``shadow``, ``previous`` and the registered-model tag ``mlops.canary_percent`` (a float
as a string, ``"0"`` when no canary). Every operation here

1. takes the model's lock (:func:`~airflow_mlops.deploy.locking.model_lock`) for its whole duration,
   so concurrent or repeated operations run one after the other;
2. completes any operation on the model that an earlier process left unfinished (see below);
3. re-reads the aliases and tags from MLflow *inside* the lock and decides from what it reads:
   an operation whose outcome already holds is a no-op (``changed=False``, no audit row), and the
   gate check (``mlops.gate == "passed"``) happens here too;
4. records its intent (``mlops_pending_ops``: the target value of every alias and tag it will
   write, in order) and commits it before touching the registry;
5. applies the writes, each only if the current value differs (so applying twice is harmless);
6. in one transaction, appends one audit row per alias it moved and deletes the intent.

Crash safety ("no half-moved state"): MLflow has no multi-alias transaction, so a process can die
between two alias writes. Its intent row survives it; the next operation on the model (of any kind,
by any process) finds the intent in step 2, re-applies it (idempotent, step 5) and audits it exactly
once (step 6 deletes the intent in the same transaction as it appends the rows). Readers that poll
the registry meanwhile may see an intermediate state; writes are ordered so that each one is a
state the gateway can serve (e.g. canary traffic goes to 0 before the canary alias disappears).

Every function raises :class:`~airflow_mlops.exceptions.RegistryError` for a refused operation
(gate not passed, unknown version, ...), with the registry and the trail untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.deploy.audit import AliasEvent, AuditTrail, NewEvent
from airflow_mlops.deploy.locking import DEFAULT_LOCK_TIMEOUT, model_lock
from airflow_mlops.exceptions import RegistryError
from airflow_mlops.vocabulary import ALIASES, Alias, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "TEMPORARY_ALIASES",
    "DeploymentState",
    "Deployments",
    "PromotionResult",
    "model_lock",
    "read_state",
]

log = logging.getLogger(__name__)

TEMPORARY_ALIASES = (Alias.CHALLENGER, Alias.CANARY, Alias.SHADOW)
"""Aliases a promotion clears: they describe the rollout of a candidate, which is over."""
STOPPING_OPERATIONS = frozenset({"rollback", "reject"})
"""Operations that stop a rollout: they revert interrupted operations instead of completing them."""


def _in_flight(snapshot: _Snapshot) -> set[str]:
    """Versions on their way to champion (challenger, canary, shadow), the champion itself excluded."""
    champion = snapshot.alias(Alias.CHAMPION)
    found = {snapshot.alias(alias) for alias in TEMPORARY_ALIASES}
    return {version for version in found if version is not None and version != champion}


@dataclass(frozen=True)
class DeploymentState:
    """Who serves what, as the registry says (versions as strings, ``None`` when the alias is unset)."""

    champion: str | None = None
    challenger: str | None = None
    canary: str | None = None
    canary_percent: float = 0.0
    shadow: str | None = None
    previous: str | None = None

    def aliases(self) -> dict[str, str]:
        """The set aliases, ``{alias: version}``."""
        values = {alias: getattr(self, alias) for alias in ALIASES}
        return {alias: version for alias, version in values.items() if version is not None}


@dataclass(frozen=True)
class PromotionResult:
    """What a guarded operation did (every operation in this module returns one).

    :ivar changed: False when the registry already was in the requested state (nothing written).
    :ivar state: The deployment state after the operation.
    :ivar events: The audit rows this operation appended (one per alias moved).
    :ivar recovered: Ids of interrupted earlier operations on the model that were completed first.
    """

    model: str
    operation: str
    changed: bool
    state: DeploymentState
    events: tuple[AliasEvent, ...] = ()
    recovered: tuple[str, ...] = ()


# -- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    aliases: Mapping[str, str]
    tags: Mapping[str, str]

    def alias(self, name: str) -> str | None:
        return self.aliases.get(name)

    @property
    def percent_tag(self) -> str | None:
        return self.tags.get(Tag.CANARY_PERCENT)

    def state(self, model: str) -> DeploymentState:
        return DeploymentState(
            champion=self.alias(Alias.CHAMPION),
            challenger=self.alias(Alias.CHALLENGER),
            canary=self.alias(Alias.CANARY),
            canary_percent=_parse_percent(model, self.percent_tag),
            shadow=self.alias(Alias.SHADOW),
            previous=self.alias(Alias.PREVIOUS),
        )


def _snapshot(client: MlflowClient, model: str) -> _Snapshot:
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"registered model {model!r} not found in the MLflow registry") from exc
        raise
    aliases = {str(alias): str(version) for alias, version in (registered.aliases or {}).items()}
    return _Snapshot(aliases=aliases, tags=dict(registered.tags or {}))


def read_state(client: MlflowClient, model: str) -> DeploymentState:
    """The model's deployment state, read from the registry (one call, no lock)."""
    return _snapshot(client, model).state(model)


def read_state_and_tags(client: MlflowClient, model: str) -> tuple[DeploymentState, dict[str, str]]:
    """The deployment state and the registered model's tags, from the same single registry call."""
    snapshot = _snapshot(client, model)
    return snapshot.state(model), dict(snapshot.tags)


def _parse_percent(model: str, raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        return float(raw)
    except ValueError:
        log.warning("%s: tag %s is %r, not a number; reading it as 0", model, Tag.CANARY_PERCENT, raw)
        return 0.0


def _format_percent(percent: float) -> str:
    return format(float(percent), "g")


def _percent_note(snapshot: _Snapshot, new_value: str) -> str:
    """``"canary_percent 5 -> 0"`` for the audit row, or ``""`` when the percentage stays."""
    old_value = snapshot.percent_tag or "0"
    return f"canary_percent {old_value} -> {new_value}" if old_value != new_value else ""


def _version_tags(client: MlflowClient, model: str, version: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_model_version(model, version).tags or {})
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"{model} v{version}: no such version in the MLflow registry") from exc
        raise


def _require_servable(client: MlflowClient, model: str, version: str, role: str) -> dict[str, str]:
    """The version's tags, after checking it may serve traffic: gate passed and not rejected."""
    tags = _version_tags(client, model, version)
    if tags.get(Tag.GATE) != "passed":
        raise RegistryError(
            f"{model} v{version}: {Tag.GATE} is {tags.get(Tag.GATE)!r}; only a version whose gate passed can become "
            f"{role}"
        )
    if Tag.REJECTED_REASON in tags:
        raise RegistryError(
            f"{model} v{version} was rejected ({Tag.REJECTED_REASON}={tags[Tag.REJECTED_REASON]!r}); it cannot become "
            f"{role}"
        )
    return tags


# -- plans: what an operation will write, recorded before it writes -------------------------------


@dataclass
class _Plan:
    """Ordered writes plus the audit rows they amount to; serialized into the intent row."""

    steps: list[dict[str, str | None]] = field(default_factory=list)
    moves: list[dict[str, str | None]] = field(default_factory=list)

    def alias(self, snapshot: _Snapshot, alias: str, version: str | None, note: str = "") -> None:
        current = snapshot.alias(alias)
        if current != version:
            self.steps.append({"kind": "alias", "key": alias, "value": version})
            self.moves.append({"alias": alias, "from": current, "to": version, "note": note})

    def model_tag(self, snapshot: _Snapshot, key: str, value: str) -> None:
        if snapshot.tags.get(key) != value:
            self.steps.append({"kind": "model_tag", "key": key, "value": value})

    def version_tag(self, tags: Mapping[str, str], version: str, key: str, value: str) -> None:
        if tags.get(key) != value:
            self.steps.append({"kind": "version_tag", "key": key, "value": value, "version": version})

    def note(self, alias: str, version: str, note: str) -> None:
        """An audit row for a traffic change that moves no alias (e.g. the canary's percentage)."""
        self.moves.append({"alias": alias, "from": version, "to": version, "note": note})

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "moves": self.moves}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> _Plan:
        return cls(steps=list(raw["steps"]), moves=list(raw["moves"]))

    def events(self, *, actor: str, reason: str) -> list[NewEvent]:
        out = []
        for move in self.moves:
            note = move.get("note") or ""
            text = f"{reason} [{note}]" if note else reason
            out.append(NewEvent(str(move["alias"]), move["from"], move["to"], text, actor))
        return out


def _apply(client: MlflowClient, model: str, plan: _Plan) -> None:
    """Write the plan's steps in order, each only where the registry differs (safe to repeat)."""
    snapshot = _snapshot(client, model)
    aliases, tags = dict(snapshot.aliases), dict(snapshot.tags)
    for step in plan.steps:
        key, value = str(step["key"]), step["value"]
        if step["kind"] == "alias":
            if aliases.get(key) == value:
                continue
            if value is None:
                client.delete_registered_model_alias(model, key)
                aliases.pop(key, None)
            else:
                client.set_registered_model_alias(model, key, value)
                aliases[key] = value
        elif step["kind"] == "model_tag":
            if tags.get(key) != value:
                client.set_registered_model_tag(model, key, str(value))
                tags[key] = str(value)
        elif step["kind"] == "version_tag":
            client.set_model_version_tag(model, str(step["version"]), key, str(value))
        else:
            raise RegistryError(f"{model}: unknown step in a recorded deployment plan: {step!r}")


def _complete_pending(client: MlflowClient, audit: AuditTrail, model: str, actor: str) -> tuple[str, ...]:
    done = []
    for op in audit.pending(model):
        log.warning(
            "%s: completing the interrupted %s %s by %s (recorded %s)",
            model,
            op.kind,
            op.op_id,
            op.actor,
            op.created_at,
        )
        plan = _Plan.from_json(op.plan)
        try:
            _apply(client, model, plan)
        except Exception as exc:
            raise RegistryError(
                f"{model}: could not complete the interrupted {op.kind} {op.op_id} by {op.actor} "
                f"({type(exc).__name__}: {exc}); it stays recorded and the next operation tries again"
            ) from exc
        reason = f"{op.reason} (completed by {actor} after an interruption)"
        audit.complete_pending(op.op_id, model, plan.events(actor=op.actor, reason=reason))
        done.append(op.op_id)
    return tuple(done)


def _revert_pending(client: MlflowClient, audit: AuditTrail, model: str, actor: str) -> tuple[str, ...]:
    """Undo what interrupted operations wrote (newest first) instead of completing them: a rollback or
    reject must never first finish the promotion it is meant to stop.

    Each alias an intent moved and that still points where the intent put it goes back where it was;
    an alias someone moved since is left alone, and a write that fails (e.g. the old version was deleted)
    is logged and skipped, so a stale intent can never block an emergency rollback. The intent is then
    closed with one audit row per alias put back.
    """
    done = []
    for op in reversed(audit.pending(model)):
        plan = _Plan.from_json(op.plan)
        aliases: dict[str, str | None] = dict(_snapshot(client, model).aliases)
        applied = [
            m for m in plan.moves if m.get("from") != m.get("to") and aliases.get(str(m["alias"])) == m.get("to")
        ]
        # the trail stays a chain: first what the interrupted operation did move, then what undid it
        note = f"{op.reason} (interrupted; reverted by {actor})"
        events = [NewEvent(str(m["alias"]), m.get("from"), m.get("to"), note, op.actor) for m in applied]
        for move in reversed(applied):
            alias, before, after = str(move["alias"]), move.get("from"), move.get("to")
            try:
                if before is None:
                    client.delete_registered_model_alias(model, alias)
                else:
                    client.set_registered_model_alias(model, alias, str(before))
            except Exception as exc:
                log.error("%s: could not put %s back to %s while reverting %s: %s", model, alias, before, op.op_id, exc)
                continue
            aliases[alias] = None if before is None else str(before)
            events.append(NewEvent(alias, after, before, f"reverted the interrupted {op.kind} {op.op_id}", actor))
        log.warning(
            "%s: reverted the interrupted %s %s by %s (%d alias moves undone)",
            model,
            op.kind,
            op.op_id,
            op.actor,
            len(events) - len(applied),
        )
        audit.complete_pending(op.op_id, model, events)
        done.append(op.op_id)
    return tuple(done)


#: The actor of audit rows for alias moves found in the registry but made without airflow-mlops.
OUTSIDE_ACTOR = "outside airflow-mlops"


def _reconcile(audit: AuditTrail, model: str, snapshot: _Snapshot, found_by: str) -> list[AliasEvent]:
    """Audit alias moves someone made in MLflow directly: where the registry (``snapshot``) differs from where
    the trail left an alias, append the move (actor :data:`OUTSIDE_ACTOR`), so the trail stays a chain."""
    known = audit.last_known(model)
    found = []
    for alias in ALIASES:
        current, recorded = snapshot.alias(alias), known.get(alias)
        if current != recorded:
            log.warning(
                "%s@%s moved outside airflow-mlops: %s -> %s (found by %s)", model, alias, recorded, current, found_by
            )
            found.append(
                audit.record(
                    model,
                    alias,
                    recorded,
                    current,
                    reason=f"alias moved in the registry without airflow-mlops (found by {found_by})",
                    actor=OUTSIDE_ACTOR,
                )
            )
    return found


_Planner = Callable[[_Snapshot], _Plan]


def _guarded(
    client: MlflowClient,
    audit: AuditTrail,
    model: str,
    operation: str,
    planner: _Planner,
    *,
    actor: str,
    reason: str,
    lock_timeout: float,
    revert_pending: bool = False,
) -> PromotionResult:
    """Steps 1-6 of the module docstring around one operation's ``planner``.

    :param revert_pending: Undo interrupted operations instead of completing them (rollback, reject).
    """
    if not actor or not reason:
        raise ValueError(f"{operation}: actor and reason are required for the audit trail; got {actor=!r}, {reason=!r}")
    with model_lock(audit, model, holder=f"{operation} by {actor}", timeout=lock_timeout):
        settle = _revert_pending if revert_pending else _complete_pending
        recovered = settle(client, audit, model, actor)
        snapshot = _snapshot(client, model)
        _reconcile(audit, model, snapshot, f"{operation} by {actor}")
        plan = planner(snapshot)
        if not plan.steps and not plan.moves:
            log.info("%s: %s by %s changes nothing", model, operation, actor)
            return PromotionResult(model, operation, False, snapshot.state(model), (), recovered)
        op_id = audit.add_pending(model, operation, plan.to_json(), actor=actor, reason=reason)
        try:
            _apply(client, model, plan)
        except Exception as exc:
            raise RegistryError(
                f"{model}: {operation} by {actor} was interrupted ({type(exc).__name__}: {exc}); its intent {op_id} is "
                "recorded, and the next deployment operation on this model completes it"
            ) from exc
        events = audit.complete_pending(op_id, model, plan.events(actor=actor, reason=reason))
        state = read_state(client, model)
    for event in events:
        log.info("%s@%s: %s -> %s (%s)", model, event.alias, event.from_version, event.to_version, actor)
    return PromotionResult(model, operation, True, state, tuple(events), recovered)


# -- operations -----------------------------------------------------------------------------------


class Deployments:
    """The guarded deployment operations on one registry, audited in one state database.

    Every method follows the protocol of the module docstring and returns a :class:`PromotionResult`;
    ``actor`` (a DAG run id, an approver) and ``reason`` go to the audit trail.

    :param client: MLflow client of the registry that holds the aliases.
    :param audit: Audit trail; its database also holds the per-model locks and pending intents.
    :param lock_timeout: Seconds to wait for a concurrent operation on the same model.
    """

    def __init__(self, client: MlflowClient, audit: AuditTrail, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.client = client
        self.audit = audit
        self.lock_timeout = lock_timeout
        audit.mirror_heads_to(client)  # every entry this registry's moves append is confirmed by it

    def __repr__(self) -> str:
        return f"Deployments(tracking_uri={self.client.tracking_uri!r}, audit={self.audit!r})"

    def state(self, model: str) -> DeploymentState:
        """Who serves what, read from the registry now."""
        return read_state(self.client, model)

    def _guarded(self, model: str, operation: str, planner: _Planner, *, actor: str, reason: str) -> PromotionResult:
        return _guarded(
            self.client,
            self.audit,
            model,
            operation,
            planner,
            actor=actor,
            reason=reason,
            lock_timeout=self.lock_timeout,
            revert_pending=operation in STOPPING_OPERATIONS,
        )

    def promote(
        self,
        model: str,
        version: str | int,
        *,
        actor: str,
        reason: str,
    ) -> PromotionResult:
        """Make ``version`` the champion; the old champion becomes ``previous``; the rollout aliases go.

        Clears ``challenger``, ``canary`` and ``shadow`` (wherever they point) and sets
        ``mlops.canary_percent`` to ``"0"``. Refuses a version whose gate did not pass or that was
        rejected. A no-op when ``version`` already is the champion.

        :param actor: Who promotes (DAG run id, or the approver).
        :param reason: Why; both go to the audit trail.
        """
        version = str(version)

        def plan(snapshot: _Snapshot) -> _Plan:
            tags = _require_servable(self.client, model, version, Alias.CHAMPION)
            out = _Plan()
            if snapshot.alias(Alias.CHAMPION) == version:
                return out
            out.model_tag(snapshot, Tag.CANARY_PERCENT, "0")  # first: no traffic to a canary that is about to go
            old = snapshot.alias(Alias.CHAMPION)
            if old is not None:
                out.alias(snapshot, Alias.PREVIOUS, old)
            out.alias(snapshot, Alias.CHAMPION, version)
            for alias in TEMPORARY_ALIASES:
                out.alias(snapshot, alias, None, _percent_note(snapshot, "0") if alias == Alias.CANARY else "")
            out.version_tag(tags, version, Tag.PROMOTED_BY, actor)
            return out

        return self._guarded(model, "promote", plan, actor=actor, reason=reason)

    def rollback(
        self,
        model: str,
        *,
        to_version: str | int | None = None,
        actor: str,
        reason: str,
    ) -> PromotionResult:
        """Back to champion-only traffic; with ``to_version``, also make that version the champion.

        ``to_version=None``: remove ``canary`` and ``shadow``, ``mlops.canary_percent`` ``"0"``.
        ``to_version="previous"`` (or the version ``previous`` points at): that version becomes the
        champion and the old champion becomes ``previous``; its gate is not checked again (it served as
        champion before). Any other version must have passed its gate.
        """
        target_spec = None if to_version is None else str(to_version)

        def plan(snapshot: _Snapshot) -> _Plan:
            out = _Plan()
            target = snapshot.alias(Alias.PREVIOUS) if target_spec == Alias.PREVIOUS else target_spec
            if target_spec == Alias.PREVIOUS and target is None:
                raise RegistryError(f"{model}: cannot roll back to 'previous': the alias is not set")
            if target is not None and target != snapshot.alias(Alias.CHAMPION):
                if target == snapshot.alias(Alias.PREVIOUS):
                    _version_tags(self.client, model, target)  # must still exist
                else:
                    _require_servable(self.client, model, target, Alias.CHAMPION)
            out.model_tag(snapshot, Tag.CANARY_PERCENT, "0")
            # the candidates in flight are rejected, so no deploy run still going can bring them back
            for version in _in_flight(snapshot) - {target}:
                tags = _version_tags(self.client, model, version)
                out.version_tag(tags, version, Tag.REJECTED_REASON, f"rolled back: {reason}")
                out.version_tag(tags, version, Tag.REJECTED_BY, actor)
            out.alias(snapshot, Alias.CANARY, None, _percent_note(snapshot, "0"))
            out.alias(snapshot, Alias.SHADOW, None)
            out.alias(snapshot, Alias.CHALLENGER, None)
            if target is not None and target != snapshot.alias(Alias.CHAMPION):
                old = snapshot.alias(Alias.CHAMPION)
                if old is not None:
                    out.alias(snapshot, Alias.PREVIOUS, old)
                out.alias(snapshot, Alias.CHAMPION, target)
            return out

        return self._guarded(model, "rollback", plan, actor=actor, reason=reason)

    def reject(
        self,
        model: str,
        version: str | int,
        *,
        actor: str,
        reason: str,
    ) -> PromotionResult:
        """Take ``version`` out of the rollout: drop the ``challenger``/``canary``/``shadow`` aliases on it.

        Tags the version ``mlops.rejected_reason`` (and ``mlops.rejected_by``); a rejected version cannot
        be promoted, canaried or shadowed. Refuses to reject the champion: roll back first.
        """
        version = str(version)

        def plan(snapshot: _Snapshot) -> _Plan:
            tags = _version_tags(self.client, model, version)
            if snapshot.alias(Alias.CHAMPION) == version:
                raise RegistryError(f"{model} v{version} is the champion; roll back before rejecting it")
            out = _Plan()
            if snapshot.alias(Alias.CANARY) == version:
                out.model_tag(snapshot, Tag.CANARY_PERCENT, "0")
            for alias in TEMPORARY_ALIASES:
                if snapshot.alias(alias) == version:
                    out.alias(snapshot, alias, None, _percent_note(snapshot, "0") if alias == Alias.CANARY else "")
            out.version_tag(tags, version, Tag.REJECTED_REASON, reason)
            out.version_tag(tags, version, Tag.REJECTED_BY, actor)
            return out

        return self._guarded(model, "reject", plan, actor=actor, reason=reason)

    def set_canary(
        self,
        model: str,
        version: str | int | None,
        percent: float,
        *,
        actor: str,
        reason: str,
    ) -> PromotionResult:
        """Send ``percent`` % of live traffic to ``version`` (alias ``canary`` + tag ``mlops.canary_percent``).

        ``percent == 0`` or ``version=None`` ends the canary (alias removed, tag ``"0"``): the alias is
        set exactly when the percentage is above 0. A change of percentage alone is audited too, as a
        ``canary`` row from and to the same version.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"percent: got {percent}; expected a number from 0 to 100")
        if version is None and percent != 0:
            raise ValueError(f"percent: got {percent} with no canary version; use 0 (or give a version)")
        target = None if version is None or percent == 0 else str(version)
        value = _format_percent(percent if target is not None else 0)

        def plan(snapshot: _Snapshot) -> _Plan:
            out = _Plan()
            current = snapshot.alias(Alias.CANARY)
            note = _percent_note(snapshot, value)
            if target is None:
                out.model_tag(snapshot, Tag.CANARY_PERCENT, value)  # traffic off before the alias goes
                out.alias(snapshot, Alias.CANARY, None, note)
                return out
            _require_servable(self.client, model, target, Alias.CANARY)
            if snapshot.alias(Alias.CHAMPION) == target:
                raise RegistryError(f"{model} v{target} is the champion; a canary must be another version")
            out.alias(snapshot, Alias.CANARY, target, note)
            out.model_tag(snapshot, Tag.CANARY_PERCENT, value)
            if current == target and note:
                out.note(Alias.CANARY, target, note)
            return out

        return self._guarded(model, "set_canary", plan, actor=actor, reason=reason)

    def set_shadow(
        self,
        model: str,
        version: str | int | None,
        *,
        actor: str,
        reason: str,
    ) -> PromotionResult:
        """Mirror traffic to ``version`` (alias ``shadow``); ``None`` stops shadowing."""
        target = None if version is None else str(version)

        def plan(snapshot: _Snapshot) -> _Plan:
            out = _Plan()
            if target is not None and snapshot.alias(Alias.SHADOW) != target:
                _require_servable(self.client, model, target, Alias.SHADOW)
                if snapshot.alias(Alias.CHAMPION) == target:
                    raise RegistryError(f"{model} v{target} is the champion; a shadow must be another version")
            out.alias(snapshot, Alias.SHADOW, target)
            return out

        return self._guarded(model, "set_shadow", plan, actor=actor, reason=reason)

    def set_challenger(
        self,
        model: str,
        version: str | int,
        *,
        actor: str,
        reason: str,
    ) -> PromotionResult:
        """Point ``challenger`` at a gated version (a no-op when it is already challenger or champion)."""
        version = str(version)

        def plan(snapshot: _Snapshot) -> _Plan:
            out = _Plan()
            if snapshot.alias(Alias.CHALLENGER) == version or snapshot.alias(Alias.CHAMPION) == version:
                return out
            _require_servable(self.client, model, version, Alias.CHALLENGER)
            out.alias(snapshot, Alias.CHALLENGER, version)
            return out

        return self._guarded(model, "set_challenger", plan, actor=actor, reason=reason)
