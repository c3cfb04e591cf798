"""Guarded alias moves (promote, rollback, reject, canary, shadow) and their audit trail.

Everything runs against a real MLflow registry (SQLite store in ``tmp_path``) and a real SQLite
audit database; the only patch is a failing ``set_registered_model_alias`` that simulates a crash
between two alias writes.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops import settings
from airflow_mlops.deploy.audit import AliasEvent, AuditTrail, format_history
from airflow_mlops.deploy.promotion import Deployments, DeploymentState, model_lock, read_state
from airflow_mlops.deploy.targets import DeploymentTarget, LocalGatewayTarget, get_target
from airflow_mlops.exceptions import RegistryError
from airflow_mlops.vocabulary import Tag

MODEL = "fraud"
Moves = list[tuple[str, str | None, str | None]]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created once (creating them costs ~1 s per store)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_registered_models()
    return path


@pytest.fixture
def client(tmp_path: Path, empty_store: Path) -> Any:
    import mlflow

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture
def audit(tmp_path: Path) -> AuditTrail:
    return AuditTrail(f"sqlite:///{tmp_path}/state.db")


@pytest.fixture
def versions(client: Any, tmp_path: Path) -> Callable[..., list[str]]:
    """``versions("passed", "failed", ...)`` registers one version of ``fraud`` per gate result."""
    source = tmp_path / "model"
    source.mkdir()
    (source / "MLmodel").write_text("flavors: {}\n")

    def make(*gates: str | None) -> list[str]:
        if not client.search_registered_models(f"name = '{MODEL}'"):
            client.create_registered_model(MODEL)
        made = []
        for gate in gates:
            tags = {} if gate is None else {"mlops.gate": gate}
            made.append(str(client.create_model_version(MODEL, source=str(source), run_id=None, tags=tags).version))
        return made

    return make


def moves(events: list[AliasEvent] | tuple[AliasEvent, ...]) -> Moves:
    return [(event.alias, event.from_version, event.to_version) for event in events]


def replay(events: list[AliasEvent]) -> dict[str, str]:
    """The aliases the trail implies; every move must start where the previous one left the alias."""
    aliases: dict[str, str] = {}
    for event in events:
        assert aliases.get(event.alias) == event.from_version, f"trail is not a chain at {event}"
        if event.to_version is None:
            aliases.pop(event.alias, None)
        else:
            aliases[event.alias] = event.to_version
    return aliases


def test_promote_with_no_champion(client: Any, audit: AuditTrail, versions: Any) -> None:
    (v1,) = versions("passed")

    result = Deployments(client, audit).promote(MODEL, v1, actor="fraud__deploy/run_1", reason="first model")

    assert result.changed and result.recovered == ()
    assert result.state == DeploymentState(champion=v1)
    assert read_state(client, MODEL) == result.state
    assert moves(result.events) == [("champion", None, v1)]
    assert moves(audit.history(MODEL)) == [("champion", None, v1)]
    assert client.get_registered_model(MODEL).tags[Tag.CANARY_PERCENT] == "0"
    assert client.get_model_version(MODEL, v1).tags[Tag.PROMOTED_BY] == "fraud__deploy/run_1"


def test_promote_keeps_old_champion_as_previous_and_clears_the_rollout(
    client: Any, audit: AuditTrail, versions: Any
) -> None:
    v1, v2, v3 = versions("passed", "passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).set_challenger(MODEL, v2, actor="a", reason="r")
    Deployments(client, audit).set_shadow(MODEL, v3, actor="a", reason="r")
    Deployments(client, audit).set_canary(MODEL, v2, 25, actor="a", reason="r")
    before = len(audit.history(MODEL))

    result = Deployments(client, audit).promote(MODEL, v2, actor="fraud__deploy/run_2", reason="canary completed")

    assert result.state == DeploymentState(champion=v2, previous=v1, canary_percent=0.0)
    assert client.get_registered_model(MODEL).tags[Tag.CANARY_PERCENT] == "0"
    assert moves(result.events) == [
        ("previous", None, v1),
        ("champion", v1, v2),
        ("challenger", v2, None),
        ("canary", v2, None),
        ("shadow", v3, None),
    ]
    assert audit.history(MODEL)[before:] == list(result.events)
    assert replay(audit.history(MODEL)) == result.state.aliases()


@pytest.mark.parametrize(
    ("gate", "match"),
    [("failed", "mlops.gate is 'failed'"), (None, "mlops.gate is None"), ("pending", "mlops.gate is 'pending'")],
    ids=["gate-failed", "no-gate-tag", "gate-pending"],
)
def test_promote_refuses_a_version_whose_gate_did_not_pass(
    client: Any, audit: AuditTrail, versions: Any, gate: str | None, match: str
) -> None:
    v1, v2 = versions("passed", gate)
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    state, history = read_state(client, MODEL), audit.history(MODEL)

    with pytest.raises(RegistryError, match=match):
        Deployments(client, audit).promote(MODEL, v2, actor="a", reason="r")

    assert read_state(client, MODEL) == state
    assert audit.history(MODEL) == history
    assert audit.pending(MODEL) == []


def test_promote_refuses_an_unknown_version_and_model(client: Any, audit: AuditTrail, versions: Any) -> None:
    versions("passed")
    with pytest.raises(RegistryError, match="fraud v9: no such version"):
        Deployments(client, audit).promote(MODEL, "9", actor="a", reason="r")
    with pytest.raises(RegistryError, match="registered model 'nope' not found"):
        Deployments(client, audit).promote("nope", "1", actor="a", reason="r")
    assert audit.history(MODEL) == []


def test_repeated_promote_is_a_no_op(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2 = versions("passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).promote(MODEL, v2, actor="a", reason="r")
    history = audit.history(MODEL)

    again = Deployments(client, audit).promote(MODEL, v2, actor="retry", reason="task retried")

    assert not again.changed and again.events == ()
    assert again.state == DeploymentState(champion=v2, previous=v1)
    assert audit.history(MODEL) == history
    assert client.get_model_version(MODEL, v2).tags[Tag.PROMOTED_BY] == "a"


@pytest.mark.parametrize("spelling", ["previous", "version number"])
def test_rollback_to_previous_swaps_champion_and_previous(
    client: Any, audit: AuditTrail, versions: Any, spelling: str
) -> None:
    v1, v2, v3 = versions("passed", "passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).promote(MODEL, v2, actor="a", reason="r")
    Deployments(client, audit).set_canary(MODEL, v3, 5, actor="a", reason="r")
    # A version that served as champion is not gated again (its tag may have been edited since).
    client.set_model_version_tag(MODEL, v1, "mlops.gate", "failed")

    result = Deployments(client, audit).rollback(
        MODEL, to_version="previous" if spelling == "previous" else v1, actor="alice", reason="bad v2"
    )

    assert result.state == DeploymentState(champion=v1, previous=v2)
    assert moves(result.events) == [("canary", v3, None), ("previous", v1, v2), ("champion", v2, v1)]
    assert {(e.actor, e.reason) for e in result.events} == {
        ("alice", "bad v2 [canary_percent 5 -> 0]"),
        ("alice", "bad v2"),
    }
    assert replay(audit.history(MODEL)) == result.state.aliases()


def test_rollback_to_another_version_requires_its_gate(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2, v3, v4 = versions("passed", "passed", "failed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).promote(MODEL, v2, actor="a", reason="r")

    with pytest.raises(RegistryError, match=r"fraud v3: mlops\.gate is 'failed'"):
        Deployments(client, audit).rollback(MODEL, to_version=v3, actor="a", reason="r")
    result = Deployments(client, audit).rollback(MODEL, to_version=v4, actor="a", reason="r")

    assert result.state == DeploymentState(champion=v4, previous=v2)


def test_rollback_to_previous_needs_a_previous(client: Any, audit: AuditTrail, versions: Any) -> None:
    (v1,) = versions("passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    with pytest.raises(RegistryError, match="cannot roll back to 'previous': the alias is not set"):
        Deployments(client, audit).rollback(MODEL, to_version="previous", actor="a", reason="r")


def test_champion_only_rollback(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2, v3 = versions("passed", "passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).set_challenger(MODEL, v2, actor="a", reason="r")
    Deployments(client, audit).set_canary(MODEL, v2, 25, actor="a", reason="r")
    Deployments(client, audit).set_shadow(MODEL, v3, actor="a", reason="r")

    result = Deployments(client, audit).rollback(MODEL, actor="fraud__deploy/run_4", reason="error rate 7% > 2%")
    again = Deployments(client, audit).rollback(MODEL, actor="fraud__deploy/run_4", reason="error rate 7% > 2%")

    assert result.state == DeploymentState(champion=v1)
    assert client.get_registered_model(MODEL).tags[Tag.CANARY_PERCENT] == "0"
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in result.events] == [
        ("canary", v2, None, "error rate 7% > 2% [canary_percent 25 -> 0]"),
        ("shadow", v3, None, "error rate 7% > 2%"),
        ("challenger", v2, None, "error rate 7% > 2%"),
    ]
    assert not again.changed and again.events == ()
    # the candidates in flight are rejected: a deploy run still going cannot bring them back
    for version in (v2, v3):
        tags = client.get_model_version(MODEL, version).tags
        assert (tags[Tag.REJECTED_REASON], tags[Tag.REJECTED_BY]) == (
            "rolled back: error rate 7% > 2%",
            "fraud__deploy/run_4",
        )
    with pytest.raises(RegistryError, match=rf"v{v2} was rejected .*rolled back: error rate"):
        Deployments(client, audit).set_canary(MODEL, v2, 50, actor="fraud__deploy/run_3", reason="next step")
    with pytest.raises(RegistryError, match=rf"v{v2} was rejected"):
        Deployments(client, audit).promote(MODEL, v2, actor="fraud__deploy/run_3", reason="canary completed")
    assert read_state(client, MODEL) == DeploymentState(champion=v1)


def test_reject_clears_the_versions_rollout_aliases(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2, v3 = versions("passed", "passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).set_challenger(MODEL, v2, actor="a", reason="r")
    Deployments(client, audit).set_canary(MODEL, v2, 5, actor="a", reason="r")
    Deployments(client, audit).set_shadow(MODEL, v3, actor="a", reason="r")

    result = Deployments(client, audit).reject(
        MODEL, v2, actor="bob", reason="shadow gate failed: agreement 0.81 < 0.95"
    )
    again = Deployments(client, audit).reject(
        MODEL, v2, actor="bob", reason="shadow gate failed: agreement 0.81 < 0.95"
    )

    assert result.state == DeploymentState(champion=v1, shadow=v3)
    assert moves(result.events) == [("challenger", v2, None), ("canary", v2, None)]
    tags = client.get_model_version(MODEL, v2).tags
    assert tags[Tag.REJECTED_REASON] == "shadow gate failed: agreement 0.81 < 0.95"
    assert tags[Tag.REJECTED_BY] == "bob"
    assert not again.changed
    with pytest.raises(RegistryError, match=r"fraud v2 was rejected \(mlops.rejected_reason='shadow gate failed"):
        Deployments(client, audit).promote(MODEL, v2, actor="a", reason="r")
    with pytest.raises(RegistryError, match="fraud v1 is the champion; roll back before rejecting it"):
        Deployments(client, audit).reject(MODEL, v1, actor="a", reason="r")


def test_set_canary_steps_and_stop(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2 = versions("passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    start = len(audit.history(MODEL))

    first = Deployments(client, audit).set_canary(MODEL, v2, 5, actor="dag", reason="step 1")
    second = Deployments(client, audit).set_canary(MODEL, v2, 25, actor="dag", reason="step 2")
    repeat = Deployments(client, audit).set_canary(MODEL, v2, 25, actor="dag", reason="step 2")
    stop = Deployments(client, audit).set_canary(MODEL, v2, 0, actor="dag", reason="stop")

    assert first.state == DeploymentState(champion=v1, canary=v2, canary_percent=5.0)
    assert second.state.canary_percent == 25.0
    assert client.get_registered_model(MODEL).tags[Tag.CANARY_PERCENT] == "0"
    assert not repeat.changed
    assert stop.state == DeploymentState(champion=v1)
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in audit.history(MODEL)[start:]] == [
        ("canary", None, v2, "step 1 [canary_percent 0 -> 5]"),
        ("canary", v2, v2, "step 2 [canary_percent 5 -> 25]"),
        ("canary", v2, None, "stop [canary_percent 25 -> 0]"),
    ]


@pytest.mark.parametrize(
    ("version", "percent", "error", "match"),
    [
        ("2", 101, ValueError, "percent: got 101; expected a number from 0 to 100"),
        ("2", -1, ValueError, "percent: got -1"),
        (None, 5, ValueError, "with no canary version"),
        ("1", 5, RegistryError, "fraud v1 is the champion; a canary must be another version"),
        ("3", 5, RegistryError, "fraud v3: mlops.gate is 'failed'"),
    ],
    ids=["above-100", "negative", "no-version", "champion", "gate-failed"],
)
def test_set_canary_refusals(
    client: Any, audit: AuditTrail, versions: Any, version: str | None, percent: float, error: type, match: str
) -> None:
    v1, _, _ = versions("passed", "passed", "failed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    with pytest.raises(error, match=match):
        Deployments(client, audit).set_canary(MODEL, version, percent, actor="a", reason="r")
    assert read_state(client, MODEL) == DeploymentState(champion=v1)


def test_set_shadow_start_repeat_stop(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2, v3 = versions("passed", "passed", "failed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")

    started = Deployments(client, audit).set_shadow(MODEL, v2, actor="dag", reason="shadow phase")
    repeated = Deployments(client, audit).set_shadow(MODEL, v2, actor="dag", reason="shadow phase")
    stopped = Deployments(client, audit).set_shadow(MODEL, None, actor="dag", reason="shadow phase over")
    stopped_again = Deployments(client, audit).set_shadow(MODEL, None, actor="dag", reason="shadow phase over")

    assert started.state.shadow == v2 and moves(started.events) == [("shadow", None, v2)]
    assert not repeated.changed and not stopped_again.changed
    assert stopped.state.shadow is None and moves(stopped.events) == [("shadow", v2, None)]
    with pytest.raises(RegistryError, match=r"fraud v3: mlops\.gate is 'failed'; only a version whose gate passed"):
        Deployments(client, audit).set_shadow(MODEL, v3, actor="a", reason="r")


def test_set_challenger(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2 = versions("passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")

    assert moves(Deployments(client, audit).set_challenger(MODEL, v2, actor="a", reason="r").events) == [
        ("challenger", None, v2)
    ]
    assert not Deployments(client, audit).set_challenger(MODEL, v2, actor="a", reason="r").changed
    assert not Deployments(client, audit).set_challenger(MODEL, v1, actor="a", reason="r").changed  # already champion


def test_audit_history_content(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2 = versions("passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="fraud__deploy/manual_1", reason="bootstrap")
    Deployments(client, audit).set_shadow(MODEL, v2, actor="fraud__deploy/run_2", reason="shadow phase")
    Deployments(client, audit).set_shadow(MODEL, None, actor="fraud__deploy/run_2", reason="shadow phase over")
    Deployments(client, audit).promote(MODEL, v2, actor="fraud__deploy/run_2", reason="canary completed")
    Deployments(client, audit).rollback(MODEL, to_version="previous", actor="alice@example.com", reason="complaints")

    history = audit.history(MODEL)

    assert [(e.model, e.alias, e.from_version, e.to_version, e.reason, e.actor) for e in history] == [
        (MODEL, "champion", None, "1", "bootstrap", "fraud__deploy/manual_1"),
        (MODEL, "shadow", None, "2", "shadow phase", "fraud__deploy/run_2"),
        (MODEL, "shadow", "2", None, "shadow phase over", "fraud__deploy/run_2"),
        (MODEL, "previous", None, "1", "canary completed", "fraud__deploy/run_2"),
        (MODEL, "champion", "1", "2", "canary completed", "fraud__deploy/run_2"),
        (MODEL, "previous", "1", "2", "complaints", "alice@example.com"),
        (MODEL, "champion", "2", "1", "complaints", "alice@example.com"),
    ]
    assert all(e.ts.tzinfo is UTC for e in history)
    assert [e.ts for e in history] == sorted(e.ts for e in history)
    assert len({e.op_id for e in history}) == 5  # one id per operation
    assert audit.history(MODEL, limit=2) == history[-2:]
    assert audit.history("other-model") == []
    assert replay(history) == read_state(client, MODEL).aliases()
    table = format_history(history).splitlines()
    assert table[0].split() == ["time", "(UTC)", "alias", "from", "to", "actor", "reason"]
    assert table[1].split()[2:] == ["champion", "-", "1", "fraud__deploy/manual_1", "bootstrap"]
    assert table[-1].split()[2:] == ["champion", "2", "1", "alice@example.com", "complaints"]


def test_record_and_history_on_a_fresh_database(tmp_path: Path) -> None:
    trail = AuditTrail(f"sqlite:///{tmp_path}/fresh.db")
    event = trail.record("m", "champion", None, 3, reason="manual", actor="ops")  # type: ignore[arg-type]

    assert (event.to_version, event.from_version) == ("3", None)
    assert trail.history("m") == [event]
    assert repr(trail) == f"AuditTrail('sqlite:///{tmp_path}/fresh.db')"
    with pytest.raises(ValueError, match="limit: got -1"):
        trail.history("m", limit=-1)


def test_default_state_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIRFLOW_MLOPS_STATE_DB", raising=False)
    assert settings.state_db_url() == f"sqlite:///{tmp_path}/airflow_mlops_state.db"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", "postgresql+psycopg2://u@h/db")
    assert settings.state_db_url() == "postgresql+psycopg2://u@h/db"


def _crash_on(client: Any, monkeypatch: pytest.MonkeyPatch, alias: str) -> None:
    """Make the registry write of ``alias`` fail, as if the process died right before it."""
    real = client.set_registered_model_alias

    def set_alias(name: str, which: str, version: str) -> None:
        if which == alias:
            raise ConnectionError("simulated crash")
        real(name, which, version)

    monkeypatch.setattr(client, "set_registered_model_alias", set_alias)


def test_interrupted_promotion_is_completed_by_the_next_operation(
    client: Any, audit: AuditTrail, versions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2, v3 = versions("passed", "passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).set_challenger(MODEL, v2, actor="a", reason="r")
    Deployments(client, audit).set_shadow(MODEL, v3, actor="a", reason="r")
    before = audit.history(MODEL)

    with monkeypatch.context() as patch:
        _crash_on(client, patch, "champion")
        with pytest.raises(
            RegistryError, match=r"promote by run_1 was interrupted \(ConnectionError: simulated crash\)"
        ):
            Deployments(client, audit).promote(MODEL, v2, actor="run_1", reason="canary completed")

    # Half moved: previous already points at the old champion, champion did not move yet.
    assert read_state(client, MODEL) == DeploymentState(champion=v1, previous=v1, challenger=v2, shadow=v3)
    assert audit.history(MODEL) == before
    (pending,) = audit.pending(MODEL)

    retried = Deployments(client, audit).promote(MODEL, v2, actor="run_1_retry", reason="canary completed")

    assert retried.recovered == (pending.op_id,)
    assert not retried.changed  # the recovered intent already made v2 the champion
    assert retried.state == DeploymentState(champion=v2, previous=v1)
    assert audit.pending(MODEL) == []
    completed = audit.history(MODEL)[len(before) :]
    assert moves(completed) == [
        ("previous", None, v1),
        ("champion", v1, v2),
        ("challenger", v2, None),
        ("shadow", v3, None),
    ]
    assert {(e.actor, e.reason, e.op_id) for e in completed} == {
        ("run_1", "canary completed (completed by run_1_retry after an interruption)", pending.op_id)
    }
    assert replay(audit.history(MODEL)) == retried.state.aliases()


def test_a_rollback_reverts_an_interrupted_promotion_instead_of_completing_it(
    client: Any, audit: AuditTrail, versions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = versions("passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    Deployments(client, audit).set_canary(MODEL, v2, 5, actor="a", reason="r")
    real_delete = client.delete_registered_model_alias

    def crash_on_canary(name: str, alias: str) -> None:
        if alias == "canary":
            raise ConnectionError("simulated crash")
        real_delete(name, alias)

    with monkeypatch.context() as patch:
        patch.setattr(client, "delete_registered_model_alias", crash_on_canary)
        with pytest.raises(RegistryError, match="interrupted"):
            Deployments(client, audit).promote(MODEL, v2, actor="run_1", reason="canary completed")
    # half moved: v2 is already champion, the canary alias is still there
    assert read_state(client, MODEL) == DeploymentState(champion=v2, previous=v1, canary=v2)

    # the on-call engineer rolls back: the promotion is undone, not finished first
    result = Deployments(client, audit).rollback(MODEL, actor="alice", reason="emergency")

    assert len(result.recovered) == 1 and audit.pending(MODEL) == []
    assert result.state == DeploymentState(champion=v1)
    assert client.get_model_version(MODEL, v2).tags[Tag.REJECTED_REASON] == "rolled back: emergency"
    reverted = [e for e in audit.history(MODEL) if e.reason.startswith("reverted the interrupted promote")]
    assert moves(reverted) == [("champion", v2, v1), ("previous", v1, None)]
    assert replay(audit.history(MODEL)) == result.state.aliases()


def test_an_intent_that_cannot_apply_any_more_does_not_block_a_rollback(
    client: Any, audit: AuditTrail, versions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = versions("passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    _crash_on(client, monkeypatch, "champion")
    with pytest.raises(RegistryError, match="interrupted"):
        Deployments(client, audit).promote(MODEL, v2, actor="run_1", reason="r")
    # other operations still insist on completing it (and fail while the registry refuses) ...
    with pytest.raises(RegistryError, match=r"could not complete the interrupted promote \w+ by run_1"):
        Deployments(client, audit).set_shadow(MODEL, v2, actor="b", reason="r")
    assert len(audit.pending(MODEL)) == 1
    # ... an emergency rollback does not: it puts back what the intent moved and closes it
    result = Deployments(client, audit).rollback(MODEL, actor="b", reason="r")
    assert result.state == DeploymentState(champion=v1) and audit.pending(MODEL) == []


def test_actor_and_reason_are_required(client: Any, audit: AuditTrail, versions: Any) -> None:
    (v1,) = versions("passed")
    with pytest.raises(ValueError, match="actor and reason are required"):
        Deployments(client, audit).promote(MODEL, v1, actor="", reason="r")


def test_model_lock_excludes_a_second_holder(audit: AuditTrail) -> None:
    errors: list[BaseException] = []

    def contender() -> None:
        try:
            with model_lock(audit, MODEL, timeout=0.2):
                pass
        except RegistryError as exc:
            errors.append(exc)

    with model_lock(audit, MODEL, holder="first"):
        thread = threading.Thread(target=contender)
        thread.start()
        thread.join()
    with model_lock(audit, "another-model", timeout=0.2):  # other models do not wait
        pass

    assert len(errors) == 1
    assert "another deployment operation held the lock" in str(errors[0])
    assert audit.lock_holder(MODEL)[0] == "first"


def test_local_gateway_target_follows_the_registry(client: Any, audit: AuditTrail, versions: Any) -> None:
    v1, v2 = versions("passed", "passed")
    target = get_target("local", client=client, audit=audit)
    assert isinstance(target, LocalGatewayTarget) and isinstance(target, DeploymentTarget)

    target.promote(MODEL, v1, actor="a", reason="bootstrap")
    target.start_shadow(MODEL, v2, actor="a", reason="shadow")
    assert target.state(MODEL) == DeploymentState(champion=v1, shadow=v2)
    target.stop_shadow(MODEL, actor="a", reason="shadow over")
    target.set_traffic(MODEL, v2, 50, actor="a", reason="canary 50%")
    assert target.state(MODEL) == DeploymentState(champion=v1, canary=v2, canary_percent=50.0)
    target.set_traffic(MODEL, None, 50, actor="a", reason="champion only")
    assert target.state(MODEL) == DeploymentState(champion=v1)
    target.promote(MODEL, v2, actor="a", reason="done")
    target.rollback(MODEL, "previous", actor="a", reason="undo")
    assert target.state(MODEL) == DeploymentState(champion=v1, previous=v2)
    target.reject(MODEL, v2, actor="a", reason="no")
    assert client.get_model_version(MODEL, v2).tags[Tag.REJECTED_REASON] == "no"


def test_get_target_from_uris(tmp_path: Path, client: Any, versions: Any) -> None:
    (v1,) = versions("passed")
    target = get_target("local", tracking_uri=client.tracking_uri, state_url=f"sqlite:///{tmp_path}/s.db")
    assert isinstance(target, LocalGatewayTarget)
    assert target.audit.url == f"sqlite:///{tmp_path}/s.db"
    target.promote(MODEL, v1, actor="a", reason="r")
    assert read_state(client, MODEL) == DeploymentState(champion=v1)


def test_a_sagemaker_target_needs_its_options() -> None:
    with pytest.raises(ValueError, match=r"'sagemaker': got options None; expected SageMakerOptions"):
        get_target("sagemaker")


def test_azureml_target_is_refused_with_what_to_use_instead() -> None:
    with pytest.raises(NotImplementedError, match=r"deployment target 'azureml' is not implemented yet.*'sagemaker'"):
        get_target("azureml")


def test_unknown_target_kind() -> None:
    with pytest.raises(ValueError, match=r"deployment target: got 'k8s'; expected one of \['local', 'sagemaker'"):
        get_target("k8s")  # type: ignore[arg-type]


def test_intents_can_be_listed_and_discarded_from_the_command_line(
    client: Any, audit: AuditTrail, versions: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    from airflow_mlops.cli import main

    v1, v2 = versions("passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    with monkeypatch.context() as patch:
        _crash_on(client, patch, "champion")
        with pytest.raises(RegistryError, match="interrupted"):
            Deployments(client, audit).promote(MODEL, v2, actor="run_1", reason="r")
    (pending,) = audit.pending(MODEL)
    state_db = ["--state-db", f"sqlite:///{tmp_path}/state.db"]

    assert main(["intents", "list", *state_db]) == 0
    listed = capsys.readouterr().out
    assert pending.op_id in listed and f"{MODEL}  promote  by run_1" in listed and f"champion: {v1} -> {v2}" in listed
    assert main(["intents", "discard", MODEL, "nope", *state_db]) == 1
    assert "no recorded intent 'nope'" in capsys.readouterr().err
    assert main(["intents", "discard", MODEL, pending.op_id, *state_db]) == 0
    assert audit.pending(MODEL) == []
    assert main(["intents", "list", MODEL, *state_db]) == 0
    assert "no interrupted operations recorded for 'fraud'" in capsys.readouterr().out


def test_alias_moves_made_outside_airflow_mlops_are_audited_at_the_next_operation(
    client: Any, audit: AuditTrail, versions: Any
) -> None:
    """Someone with MLflow write access moves ``champion`` by hand: the trail says so, and stays a chain."""
    v1, v2, v3 = versions("passed", "passed", "passed")
    Deployments(client, audit).promote(MODEL, v1, actor="a", reason="r")
    client.set_registered_model_alias(MODEL, "champion", v2)  # not through Deployments
    client.set_registered_model_alias(MODEL, "shadow", v3)

    Deployments(client, audit).set_challenger(MODEL, v3, actor="run_9", reason="gate passed")

    outside = [e for e in audit.history(MODEL) if e.actor == "outside airflow-mlops"]
    assert moves(outside) == [("champion", v1, v2), ("shadow", None, v3)]
    assert all("found by set_challenger by run_9" in e.reason for e in outside)
    assert replay(audit.history(MODEL)) == read_state(client, MODEL).aliases()
