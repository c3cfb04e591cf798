"""Fault matrix, rollout side (issue 11): each fault hits the real code path, then three invariants are checked.

1. **Champion still serving**: the ``champion`` alias still points at the champion from before the fault, and
   the real gateway (``airflow-mlops serve``, polling the registry) still answers ``/predict`` with it.
2. **No double promotion**: registry versions, audit rows (alias moves) and pending intents are counted.
3. **Nothing acknowledged lost**: a task hit by the fault fails (never a silent success), an erroring gate is a
   failed gate (fail closed), and the audit trail records what happened; after recovery (service back, task
   retried) the retry completes exactly once.

Real services: an MLflow SQLite store, served by a real ``mlflow server`` subprocess that is SIGKILLed to make
MLflow "down" and restarted on the same port; a SQLite state DB (PostgreSQL at 127.0.0.1:5432 for the state DB
outage); a real gateway process; the real prediction log and the real triggers. Where a fault must land at one
exact call (MLflow dying between two alias writes), the test wraps that one ``MlflowClient`` method so it first
kills the real server and then makes the real call, which then fails for real.

The gateway-side faults (gateway ``kill -9`` under load, prediction-log store full) are in
``test_fault_matrix_gateway.py``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_mlops.deploy.audit import AliasEvent, AuditTrail
from airflow_mlops.deploy.targets import LocalGatewayTarget
from airflow_mlops.exceptions import DataError, GateFailedError, RegistryError
from airflow_mlops.operators.gates import GateModelOperator
from airflow_mlops.operators.registry import SetChallengerOperator
from airflow_mlops.operators.rollout import CanaryStepOperator, PromoteOperator
from airflow_mlops.operators.training import (
    FingerprintDataOperator,
    RegisterModelOperator,
    TrainModelOperator,
    ValidateDataOperator,
)
from airflow_mlops.triggers.rollout import CanaryStepTrigger
from airflow_mlops.vocabulary import Alias, Tag
from mlflow_server import MlflowServer
from support import GatewayProcess, conftest_module, context, train_version

pytestmark = pytest.mark.integration

MODEL = "fraud"
REPO = Path(__file__).resolve().parents[2]
#: One canary step: judged on at least 3 canary answers, any error rate above 5 % is a breach. The window is long:
#: a breach ends the step early anyway, and a slow setup (a killed server, a loaded machine) must not outlast it,
#: or the step ends with no traffic, which passes.
CANARY = {"steps": [25, 100], "step_duration": 30, "check_interval": 0.5, "max_error_rate": 0.05, "min_requests": 3}
GATEWAY_POLL = 0.5


# --- the module's registry: champion v1, candidate v2, a broken candidate v3 --------------------------------


@dataclass
class Env:
    root: Path
    config: Path
    data: Path
    cases: Path
    log_root: Path
    sqlite_uri: str
    state_url: str
    server: MlflowServer
    gateway: GatewayProcess
    client: Any  # MlflowClient on the SQLite store (reads work while the server is down)
    target: LocalGatewayTarget
    v1: str
    v2: str
    v3: str  # passed its offline gate, but raises on a merchant category it never saw

    @property
    def audit(self) -> AuditTrail:
        return self.target.audit

    def conn(self, mp: pytest.MonkeyPatch, *, served: bool) -> None:
        """Point ``mlflow_default`` at the real server (``served``) or straight at the SQLite store."""
        host = self.server.url if served else self.sqlite_uri
        extra = {"artifact_root": str(self.root / "artifacts")}
        mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": host, "extra": extra}))

    def versions(self) -> list[str]:
        return sorted(str(v.version) for v in self.client.search_model_versions(f"name = '{MODEL}'"))

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(MODEL, version).tags)

    def moves_since(self, mark: int, alias: str | None = None) -> list[AliasEvent]:
        return [e for e in self.audit.history(MODEL) if e.id > mark and (alias is None or e.alias == alias)]

    def mark(self) -> int:
        history = self.audit.history(MODEL, limit=1)
        return history[-1].id if history else 0

    def predict(self, category: str = "grocery", n: int = 1) -> list[tuple[int, str | None, str | None]]:
        """``n`` single-record predictions: (status, role, version) each."""
        rows = _records()
        out: list[tuple[int, str | None, str | None]] = []
        with httpx.Client(base_url=self.gateway.url, timeout=30.0) as http:
            for i in range(n):
                record = {**rows[i % len(rows)], "merchant_category": category}
                answer = http.post(
                    f"/v1/models/{MODEL}/predict", json={"records": record}, headers={"X-Request-ID": uuid.uuid4().hex}
                )
                body = answer.json() if answer.status_code == 200 else {}
                out.append((answer.status_code, body.get("role"), str(body.get("model_version"))))
        return out

    def serving(self, champion: str, canary: str | None = None) -> None:
        """Wait (bounded) until the gateway's routing table shows ``champion`` (and ``canary``)."""
        self.gateway.wait_ready(
            timeout=60,
            predicate=lambda r: (
                r["models"][MODEL]["champion"] == champion and r["models"][MODEL].get("canary") == canary
            ),
        )

    def baseline(self) -> None:
        """Champion v1, no rollout in flight, no rejection left on v2/v3, no pending intent: every test starts here."""
        assert self.audit.pending(MODEL) == [], "an earlier test left an intent behind"
        self.target.rollback(MODEL, self.v1, actor="fault-matrix", reason="test baseline")
        for version in (self.v2, self.v3):
            for key in (Tag.REJECTED_REASON, Tag.REJECTED_BY, Tag.ROLLBACK_REASON):
                if key in self.tags(version):
                    self.client.delete_model_version_tag(MODEL, version, key)
        state = self.target.state(MODEL)
        assert (state.champion, state.canary, state.shadow, state.challenger) == (self.v1, None, None, None)


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    import mlflow

    root = tmp_path_factory.mktemp("fault-matrix-rollout")
    data, cases = root / "transactions.csv", root / "behaviour_cases.csv"
    shutil.copy(REPO / "dags" / "data" / "fraud" / "transactions_batch_001.csv", data)
    shutil.copy(REPO / "dags" / "configs" / "fraud_behaviour_cases.csv", cases)
    log_root = root / "prediction-log"
    sqlite_uri = f"sqlite:///{root / 'mlflow.db'}"
    state_url = f"sqlite:///{root / 'state.db'}"
    overrides = {
        "data": {"uri": str(data)},
        "gates": {"behaviour": {"cases": str(cases)}},
        "rollout": {"canary": CANARY},
        "serving": {"prediction_log": str(log_root)},
    }
    workspace = conftest_module(request.config).Workspace(root=root, tracking_uri=sqlite_uri)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_MLOPS_STATE_DB", state_url)
        # a dead server fails a call at once instead of after mlflow's 7 retries with backoff
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        extra = {"artifact_root": str(root / "artifacts")}
        mp.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": sqlite_uri, "extra": extra})
        )
        broken = workspace.write_config(MODEL, {**overrides, "features": {"unknown_categories": "error"}})
        v3 = train_version(broken, "manual__broken")
        config = workspace.write_config(MODEL, overrides)
        v1 = train_version(config, "manual__v1")
        v2 = train_version(config, "manual__v2")
        client = mlflow.MlflowClient(tracking_uri=sqlite_uri, registry_uri=sqlite_uri)
        target = LocalGatewayTarget.from_options(client=client, state_url=state_url)
        target.promote(MODEL, v1, actor="fault-matrix", reason="first champion")
        server = MlflowServer(sqlite_uri, root / "served-artifacts", root, start_timeout=120.0)  # killed, restarted
        server.start()
        gateway = GatewayProcess(
            models=[MODEL],
            tracking_uri=server.url,
            log_root=log_root,
            extra=["--poll-interval", str(GATEWAY_POLL), "--flush-interval", "0.2"],
        )
        try:
            gateway.wait_ready(predicate=lambda r: r["models"][MODEL]["champion"] == v1)
            yield Env(
                root=root,
                config=config,
                data=data,
                cases=cases,
                log_root=log_root,
                sqlite_uri=sqlite_uri,
                state_url=state_url,
                server=server,
                gateway=gateway,
                client=client,
                target=target,
                v1=v1,
                v2=v2,
                v3=v3,
            )
        finally:
            gateway.kill()
            server.kill()
            for old in workspace.config_dir.iterdir():
                old.unlink()


@pytest.fixture
def mp(env: Env) -> Iterator[pytest.MonkeyPatch]:
    """Per-test environment changes on top of the module's; the server is up and the state at baseline."""
    with pytest.MonkeyPatch.context() as patch:
        if env.server.proc is None:
            env.server.start()
        env.baseline()
        yield patch
    if env.server.proc is None:  # a failed test must not leave MLflow down for the next one
        env.server.start()


def kill_server_at(
    mp: pytest.MonkeyPatch, env: Env, method: str, when: Callable[..., bool], *, then: Callable[[], None] | None = None
) -> list[str]:
    """Make the real server die just before ``MlflowClient.<method>`` is called with arguments ``when`` accepts.

    The call itself is real and goes to the dead server. ``then`` runs right after that call (e.g. start the
    server again: a short outage). Returns a list that gets one entry when the fault fired.
    """
    from mlflow import MlflowClient

    original = getattr(MlflowClient, method)
    fired: list[str] = []

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not fired and self.tracking_uri == env.server.url and when(*args, **kwargs):
            fired.append(f"{method}{args}")
            env.server.kill()
            try:
                return original(self, *args, **kwargs)
            finally:
                if then is not None:
                    then()
        return original(self, *args, **kwargs)

    mp.setattr(MlflowClient, method, wrapped)
    return fired


@functools.cache
def _records() -> list[dict[str, Any]]:
    from airflow_mlops.examples.datasets import fraud_batch

    rows: list[dict[str, Any]] = fraud_batch(12).head(50).drop(columns=["is_fraud"]).to_dict("records")
    return rows


def op(cls: type, env: Env, **kwargs: Any) -> Any:
    kwargs.setdefault("task_id", cls.__name__)
    return cls(config_path=str(env.config), **kwargs)


# --- MLflow down at register --------------------------------------------------------------------------------


def test_mlflow_down_at_register_fails_the_task_registers_nothing_and_the_retry_registers_once(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """MLflow is down when ``register_model`` starts, then dies again after the version was created and before its
    checksum was written. Without ``register_version`` looking for the run's version first, the retry would create
    a second version of the same run; without the checksum going last, the half-registered version could load."""
    from mlflow.exceptions import MlflowException

    env.conn(mp, served=True)
    ctx = context(run_id="manual__register-down")
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator):
        op(cls, env).execute(ctx)
    before = env.versions()
    mark = env.mark()

    env.server.kill()
    with pytest.raises(MlflowException, match=r"API request to .* failed"):
        op(RegisterModelOperator, env).execute(ctx)

    # (1) the champion is untouched and still serving; (2) nothing registered; (3) the task failed, no alias moved
    assert env.target.state(MODEL).champion == env.v1
    assert env.versions() == before
    assert env.moves_since(mark) == []
    assert {(s, v) for s, _, v in env.predict(n=3)} == {(200, env.v1)}

    env.server.start()
    fired = kill_server_at(mp, env, "set_model_version_tag", lambda name, version, key, value: key == Tag.MODEL_SHA256)
    with pytest.raises(MlflowException, match=r"API request to .* failed"):
        op(RegisterModelOperator, env).execute(ctx)
    assert fired, "the fault did not fire"
    (created,) = sorted(set(env.versions()) - set(before))  # the version exists, unverified: nothing loads it
    assert Tag.MODEL_SHA256 not in env.tags(created)

    env.server.start()
    retried = op(RegisterModelOperator, env).execute(ctx)
    again = op(RegisterModelOperator, env).execute(ctx)

    assert (retried["version"], retried["created"]) == (created, False)
    assert (again["version"], again["created"]) == (created, False)
    assert env.versions() == sorted([*before, created])
    assert Tag.MODEL_SHA256 in env.tags(created)  # the retry finished registration (checksum recorded)
    assert env.target.state(MODEL).champion == env.v1
    assert env.moves_since(mark) == []


# --- MLflow down at the alias move ---------------------------------------------------------------------------


def test_mlflow_down_between_two_alias_writes_keeps_the_champion_and_the_retry_completes_the_promotion_once(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """MLflow dies after ``previous`` moved and before ``champion`` does. Without the intent row (recorded before
    the first write) the retry could not know a promotion was half done; without ``complete_pending`` deleting the
    intent in the audit transaction, the retry and a later operation would both audit it (a double promotion in
    the trail)."""
    env.conn(mp, served=True)
    mark = env.mark()
    fired = kill_server_at(mp, env, "set_registered_model_alias", lambda model, alias, version: alias == "champion")

    with pytest.raises(RegistryError, match=r"(?s)promote by .* was interrupted .* its intent \w+ is recorded"):
        op(PromoteOperator, env, version=env.v2).execute(context(run_id="manual__promote-down"))

    assert fired, "the fault did not fire"
    # (1) the champion alias never moved, and the gateway (its registry gone) keeps serving v1
    assert env.target.state(MODEL).champion == env.v1
    assert {(s, r, v) for s, r, v in env.predict(n=3)} == {(200, "champion", env.v1)}
    # (2)/(3) one intent survives, nothing was audited as done
    assert [p.kind for p in env.audit.pending(MODEL)] == ["promote"]
    assert env.moves_since(mark, Alias.CHAMPION) == []

    env.server.start()
    retried = op(PromoteOperator, env, version=env.v2).execute(context(run_id="manual__promote-down"))
    again = op(PromoteOperator, env, version=env.v2).execute(context(run_id="manual__promote-down"))

    state = env.target.state(MODEL)
    assert (state.champion, state.previous) == (env.v2, env.v1)
    assert retried == {"version": env.v2, "changed": False}  # the retry completed the recorded promotion
    assert again == {"version": env.v2, "changed": False}
    champion_moves = [(e.from_version, e.to_version) for e in env.moves_since(mark, Alias.CHAMPION)]
    assert champion_moves == [(env.v1, env.v2)]
    assert env.audit.pending(MODEL) == []
    env.serving(env.v2)
    assert {(s, v) for s, _, v in env.predict(n=2)} == {(200, env.v2)}


# --- MLflow down during a canary check -----------------------------------------------------------------------


def canary_event(trigger: CanaryStepTrigger, traffic: Callable[[], Any]) -> dict[str, Any]:
    """Run the real trigger while ``traffic`` (blocking) runs in a thread; its one event (bounded wait)."""

    async def go() -> dict[str, Any]:
        sender = asyncio.create_task(asyncio.to_thread(traffic))
        events: Any = trigger.run()  # an async generator: aclose() ends it
        try:
            event = await asyncio.wait_for(events.__anext__(), 90)
        finally:
            await events.aclose()
            await sender
        return dict(event.payload)

    return asyncio.run(go())


def start_canary(
    env: Env, version: str, run_id: str, **policy: Any
) -> tuple[CanaryStepOperator, CanaryStepTrigger, Any]:
    """``CanaryStepOperator.execute``: 25 % to ``version``, deferred; returns the operator, its trigger, the context."""
    canary = op(CanaryStepOperator, env, version=version, champion=env.v1, percent=25, policy={**CANARY, **policy})
    ctx = context(run_id=run_id)
    with pytest.raises(TaskDeferred) as deferred:
        canary.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CanaryStepTrigger)
    return canary, trigger, ctx


def test_mlflow_down_during_a_canary_check_fails_the_step_loudly_and_the_retried_step_rolls_back_once(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """The broken v3 is canary at 25 %; MLflow dies; its traffic fails, the trigger (which reads only the
    prediction log) still finds the breach, and the rollback cannot be written. The step must fail (not return
    as healthy), the clients are answered by the champion, and once MLflow is back the retried step rolls v3
    back exactly once. Without the champion fallback a client would see the canary's errors; without the
    guarded reject the doubled completion below would audit a second rollback."""
    env.conn(mp, served=True)
    canary, trigger, ctx = start_canary(env, env.v3, "manual__canary-mlflow-down")
    env.serving(env.v1, env.v3)
    mark = env.mark()

    env.server.kill()
    answers: list[tuple[int, str | None, str | None]] = []
    event = canary_event(trigger, lambda: answers.extend(env.predict("crypto", n=40)))
    assert event["status"] == "breach", event
    with pytest.raises(RegistryError) as failed:
        canary.execute_complete(ctx, event)
    assert not isinstance(failed.value, GateFailedError), "no rollback happened, so none may be reported"
    assert str(failed.value).startswith(f"fraud v{env.v3}: canary step 25%: canary error rate ")
    assert "but the rollback could not be written (MlflowException: API request to " in str(failed.value)

    # (1) every client got the champion's answer; the registry still has v1 as champion
    assert {(s, r, v) for s, r, v in answers} == {(200, "champion", env.v1)}
    state = env.target.state(MODEL)
    assert state.champion == env.v1
    # (3) the breach is not reported as done: v3 still holds its share until the step is retried
    assert (state.canary, state.canary_percent) == (env.v3, 25.0)
    assert env.moves_since(mark) == [] and env.audit.pending(MODEL) == []

    env.server.start()
    canary, trigger, ctx = start_canary(env, env.v3, "manual__canary-mlflow-down")  # the retry: execute() again
    event = canary_event(trigger, lambda: env.predict("crypto", n=40))
    assert event["status"] == "breach", event
    for _ in range(2):  # the completion delivered twice rolls back once
        with pytest.raises(GateFailedError, match=rf"fraud v{env.v3} rolled back: canary step 25%"):
            canary.execute_complete(ctx, event)

    state = env.target.state(MODEL)
    assert (state.champion, state.canary, state.canary_percent) == (env.v1, None, 0.0)
    assert [(e.from_version, e.to_version) for e in env.moves_since(mark, Alias.CANARY)] == [(env.v3, None)]
    assert env.moves_since(mark, Alias.CHAMPION) == []
    assert env.tags(env.v3)[Tag.REJECTED_REASON].startswith("canary step 25%: canary error rate")
    env.serving(env.v1, None)


# --- canary model crashing on every call ---------------------------------------------------------------------


def test_canary_crashing_on_every_call_is_rolled_back_once_and_every_client_gets_the_champion(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """Every request carries a merchant category v3 raises on. Without the gateway's fallback the canary's share
    of clients would get errors; without the trigger's breach the step would pass; without the guarded reject a
    doubled completion would move the canary alias twice."""
    env.conn(mp, served=False)
    canary, trigger, ctx = start_canary(env, env.v3, "manual__canary-crash")
    env.serving(env.v1, env.v3)
    mark = env.mark()

    answers: list[tuple[int, str | None, str | None]] = []
    event = canary_event(trigger, lambda: answers.extend(env.predict("crypto", n=40)))

    assert event["status"] == "breach", event
    assert event["stats"]["requests"] >= CANARY["min_requests"]
    assert event["stats"]["errors"] == event["stats"]["requests"], "the canary fails every call it gets"
    assert {(s, r, v) for s, r, v in answers} == {(200, "champion", env.v1)}
    for _ in range(2):
        with pytest.raises(GateFailedError, match=rf"fraud v{env.v3} rolled back"):
            canary.execute_complete(ctx, event)

    state = env.target.state(MODEL)
    assert (state.champion, state.canary, state.canary_percent) == (env.v1, None, 0.0)
    assert [(e.from_version, e.to_version) for e in env.moves_since(mark)] == [(env.v3, None)]
    with pytest.raises(RegistryError, match=r"was rejected"):
        op(PromoteOperator, env, version=env.v3).execute(ctx)
    env.serving(env.v1, None)
    assert {(s, v) for s, _, v in env.predict("crypto", n=3)} == {(200, env.v1)}


# --- triggerer restarted mid-canary --------------------------------------------------------------------------


def test_triggerer_restart_mid_canary_resumes_the_same_window_and_the_step_is_decided_once(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """The triggerer is killed while the step waits (its ``run()`` cancelled); Airflow re-creates the trigger from
    its stored ``serialize()`` kwargs. The window must keep its start: the traffic served before the restart is
    judged. A trigger that took ``time.time()`` again on re-creation would count none of it and see 0 requests."""
    env.conn(mp, served=False)
    canary, trigger, ctx = start_canary(env, env.v2, "manual__triggerer-restart", step_duration=10)
    classpath, stored = trigger.serialize()
    stored = json.loads(json.dumps(stored))  # the triggerer keeps the kwargs as JSON in Airflow's DB
    env.serving(env.v1, env.v2)
    mark = env.mark()

    async def first_incarnation() -> list[Any]:
        events: list[Any] = []

        async def consume() -> None:
            async for event in trigger.run():
                events.append(event)

        task = asyncio.create_task(consume())
        await asyncio.to_thread(env.predict, "grocery", 60)  # traffic while the first triggerer watches
        task.cancel()  # the triggerer process goes away mid-step
        await asyncio.gather(task, return_exceptions=True)
        return events

    assert asyncio.run(first_incarnation()) == [], "the step ended before the restart; make it longer"
    module, _, name = classpath.rpartition(".")
    resumed = getattr(importlib.import_module(module), name)(**stored)
    assert (resumed.start, resumed.duration) == (trigger.start, trigger.duration), "the window's deadline is kept"

    event = canary_event(resumed, lambda: None)  # no traffic after the restart

    assert event["status"] == "success", event
    assert event["stats"]["requests"] >= CANARY["min_requests"], "traffic from before the restart was judged"
    assert canary.execute_complete(ctx, event)["version"] == env.v2
    promoted = [op(PromoteOperator, env, version=env.v2).execute(ctx) for _ in range(2)]
    assert [p["changed"] for p in promoted] == [True, False]
    assert [(e.from_version, e.to_version) for e in env.moves_since(mark, Alias.CHAMPION)] == [(env.v1, env.v2)]


# --- the gate raising ----------------------------------------------------------------------------------------


def regate(env: Env, run_id: str = "manual__v2") -> dict[str, Any]:
    return dict(op(GateModelOperator, env, task_id="gate_model").execute(context(run_id=run_id)))


def test_gate_raising_is_a_failed_gate_and_the_version_cannot_move(env: Env, mp: pytest.MonkeyPatch) -> None:
    """The behaviour cases file disappears, so a check raises while v2 is gated again. Without the gate's
    fail-closed wrapper the error would leave v2's earlier ``passed`` verdict in place and v2 could still
    become challenger and champion."""
    env.conn(mp, served=False)
    mark = env.mark()
    saved = env.cases.read_bytes()
    env.cases.unlink()
    try:
        with pytest.raises(
            GateFailedError,
            match=rf"fraud v{env.v2} failed its gate: behaviour \(error: .*behaviour_cases.csv' does not exist",
        ):
            regate(env)
        assert env.tags(env.v2)[Tag.GATE] == "failed"
        with pytest.raises(RegistryError, match=r"mlops.gate is 'failed'"):
            op(SetChallengerOperator, env).execute(context(run_id="manual__v2"))
        with pytest.raises(RegistryError, match=r"mlops.gate is 'failed'"):
            op(PromoteOperator, env, version=env.v2).execute(context(run_id="manual__gate-raised"))
        assert env.target.state(MODEL).champion == env.v1
        assert env.moves_since(mark) == [] and env.audit.pending(MODEL) == []
    finally:
        env.cases.write_bytes(saved)

    assert regate(env)["gate"] == "passed"  # the fault gone, the same DAG run's gate passes again
    assert env.tags(env.v2)[Tag.GATE] == "passed"


def test_mlflow_blip_while_the_gate_reads_the_champion_fails_the_gate_instead_of_skipping_the_comparison(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """MLflow is down for exactly the call that reads the champion alias, and back before the verdict is
    written. A champion that cannot be read is not "no champion": the comparison would be skipped and a
    regressed candidate could pass. The gate must fail closed."""
    env.conn(mp, served=True)
    fired = kill_server_at(mp, env, "get_model_version_by_alias", lambda model, alias: alias == "champion",
                           then=env.server.start)  # fmt: skip

    with pytest.raises(GateFailedError, match=r"failed its gate: gate \(error: .*API request to .* failed"):
        regate(env)

    assert fired, "the fault did not fire"
    assert env.tags(env.v2)[Tag.GATE] == "failed"
    assert env.target.state(MODEL).champion == env.v1
    assert regate(env)["gate"] == "passed"


# --- data missing or changed mid-run -------------------------------------------------------------------------


def test_data_changed_between_fingerprint_and_train_is_refused_and_the_retry_on_the_original_trains_once(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """Without the fingerprint check in ``read_verified_data`` the model would be trained on rows that are not
    the ones its lineage (``mlops.data_sha256``) names."""
    env.conn(mp, served=False)
    ctx = context(run_id="manual__data-changed")
    fingerprint = op(FingerprintDataOperator, env).execute(ctx)
    op(ValidateDataOperator, env).execute(ctx)
    before, saved = env.versions(), env.data.read_bytes()
    lines = saved.decode().splitlines(keepends=True)
    env.data.write_text("".join([lines[0], *lines[2:], lines[1]]))  # same rows, another order: other bytes
    try:
        with pytest.raises(DataError, match=r"changed during the DAG run: fingerprinted sha256 \w+, now \w+"):
            op(TrainModelOperator, env).execute(ctx)
        run = env.client.get_run(fingerprint["mlflow_run_id"])
        assert Tag.MODEL_URI not in run.data.tags, "nothing was trained"
        with pytest.raises(DataError, match=r"has no trained model"):
            op(RegisterModelOperator, env).execute(ctx)
        assert env.versions() == before

        env.data.unlink()  # data missing
        with pytest.raises((DataError, FileNotFoundError, OSError)):
            op(TrainModelOperator, env).execute(ctx)
        assert Tag.MODEL_URI not in env.client.get_run(fingerprint["mlflow_run_id"]).data.tags
    finally:
        env.data.write_bytes(saved)

    trained = [op(TrainModelOperator, env).execute(ctx) for _ in range(2)]
    assert trained[0]["model_uri"] == trained[1]["model_uri"], "the retry reuses the trained model"
    assert env.target.state(MODEL).champion == env.v1
    assert env.versions() == before


def test_data_changed_between_train_and_gate_fails_the_gate(env: Env, mp: pytest.MonkeyPatch) -> None:
    """The gate re-reads the held-out rows; if they are not the trained-on bytes, the comparison would be on other
    rows than training held out. Without the check (and the fail-closed gate) v2 would keep ``passed``."""
    env.conn(mp, served=False)
    saved = env.data.read_bytes()
    env.data.write_bytes(saved.replace(b"grocery", b"GROCERY", 1))
    try:
        with pytest.raises(GateFailedError, match=r"gate \(error: .*DataError: .* changed during the DAG run"):
            regate(env)
        assert env.tags(env.v2)[Tag.GATE] == "failed"
        assert env.target.state(MODEL).champion == env.v1
    finally:
        env.data.write_bytes(saved)
    assert regate(env)["gate"] == "passed"


# --- state DB down --------------------------------------------------------------------------------------------

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "connect_timeout": 3}


class PgStateDb:
    """A fresh PostgreSQL database as the state DB; ``down()`` refuses connections and drops the open ones."""

    def __init__(self) -> None:
        psycopg2 = pytest.importorskip("psycopg2")
        try:
            self.admin = psycopg2.connect(**PG)
        except psycopg2.OperationalError as exc:
            _skip_or_fail(f"PostgreSQL at {PG['host']}:{PG['port']} is not reachable: {exc}")
        self.admin.autocommit = True
        self.name = f"mlops_fault_state_{uuid.uuid4().hex[:10]}"
        self.sql(f'CREATE DATABASE "{self.name}"')
        self.url = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.name}"

    def sql(self, statement: str) -> None:
        with self.admin.cursor() as cur:
            cur.execute(statement)

    def down(self) -> None:
        self.sql(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS false')
        self.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def up(self) -> None:
        self.sql(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS true')

    def drop(self) -> None:
        self.up()
        self.sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.close()


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def pg_state(env: Env, mp: pytest.MonkeyPatch) -> Iterator[tuple[PgStateDb, LocalGatewayTarget]]:
    """The operators' state DB is PostgreSQL for this test; the trail first records the registry as it is."""
    db = PgStateDb()
    try:
        mp.setenv("AIRFLOW_MLOPS_STATE_DB", db.url)
        target = LocalGatewayTarget.from_options(client=env.client, state_url=db.url)
        target.rollback(MODEL, env.v1, actor="fault-matrix", reason="state DB baseline")  # reconciles the new trail
        yield db, target
        target.audit.dispose()
    finally:
        db.drop()


def pg_moves(target: LocalGatewayTarget, mark: int, alias: str) -> list[tuple[str | None, str | None]]:
    return [(e.from_version, e.to_version) for e in target.audit.history(MODEL) if e.id > mark and e.alias == alias]


@pytest.mark.postgres
def test_state_db_down_before_promotion_moves_no_alias_and_the_retry_promotes_once(
    env: Env, mp: pytest.MonkeyPatch, pg_state: tuple[PgStateDb, LocalGatewayTarget]
) -> None:
    """No lock and no intent can be taken, so nothing may be written to the registry. Without the lock/intent
    coming first, the promotion would move aliases that no audit row or intent ever records."""
    from sqlalchemy.exc import OperationalError

    db, target = pg_state
    env.conn(mp, served=False)
    mark = target.audit.history(MODEL)[-1].id
    ctx = context(run_id="manual__state-db-down")

    db.down()
    with pytest.raises(OperationalError, match=r"not currently accepting connections"):
        op(PromoteOperator, env, version=env.v2).execute(ctx)
    state = env.target.state(MODEL)
    assert (state.champion, state.canary) == (env.v1, None)
    assert {(s, v) for s, _, v in env.predict(n=2)} == {(200, env.v1)}

    db.up()
    results = [op(PromoteOperator, env, version=env.v2).execute(ctx) for _ in range(2)]
    assert [r["changed"] for r in results] == [True, False]
    assert pg_moves(target, mark, Alias.CHAMPION) == [(env.v1, env.v2)]
    assert target.audit.pending(MODEL) == []


@pytest.mark.postgres
def test_state_db_down_after_the_alias_moved_fails_the_task_and_the_retry_audits_the_promotion_once(
    env: Env, mp: pytest.MonkeyPatch, pg_state: tuple[PgStateDb, LocalGatewayTarget]
) -> None:
    """The state DB dies after the intent was committed and the champion alias moved, before the audit rows.
    The registry then already serves v2 (the promotion's point of no return passed); the task must fail, and
    the surviving intent must make the retry audit the move exactly once. Without the intent the move would
    never be audited; without deleting the intent in the audit transaction it would be audited twice."""
    from sqlalchemy.exc import OperationalError

    db, target = pg_state
    env.conn(mp, served=False)
    mark = target.audit.history(MODEL)[-1].id
    ctx = context(run_id="manual__state-db-down-late")
    from mlflow import MlflowClient

    original = MlflowClient.set_registered_model_alias

    def db_dies_at_the_champion_write(self: Any, name: str, alias: str, version: str) -> None:
        original(self, name, alias, version)
        if alias == "champion":
            db.down()

    mp.setattr(MlflowClient, "set_registered_model_alias", db_dies_at_the_champion_write)
    with pytest.raises(OperationalError):
        op(PromoteOperator, env, version=env.v2).execute(ctx)
    mp.setattr(MlflowClient, "set_registered_model_alias", original)

    assert env.target.state(MODEL).champion == env.v2  # one champion: the intended one
    db.up()
    assert [p.kind for p in target.audit.pending(MODEL)] == ["promote"]
    assert pg_moves(target, mark, Alias.CHAMPION) == []

    results = [op(PromoteOperator, env, version=env.v2).execute(ctx) for _ in range(2)]
    assert [r["changed"] for r in results] == [False, False]
    assert pg_moves(target, mark, Alias.CHAMPION) == [(env.v1, env.v2)]
    assert target.audit.pending(MODEL) == []
    env.serving(env.v2)


# --- duplicated and late drift events ------------------------------------------------------------------------


def drift_event(env: Env, judged: str) -> dict[str, Any]:
    """The extra the real ``emit_drift`` task puts on ``mlops://fraud/drift`` for a monitoring run that judged
    champion ``judged``."""
    from airflow_mlops.factories.assets import drift_asset
    from airflow_mlops.operators.monitoring import EmitDriftEventOperator

    result = {
        "emit": True,
        "suppressed": False,
        "scores": {"amount": {"status": "act", "psi": 0.41}, "hour": {"status": "ok", "psi": 0.01}},
        "window": {"start": "2026-12-06T00:00:00+00:00", "end": "2026-12-07T00:00:00+00:00"},
        "reasons": ["amount PSI 0.41 >= 0.25"],
        "mlflow_run_id": uuid.uuid4().hex,
        "champion": judged,
    }
    emit = op(EmitDriftEventOperator, env, task_id="emit_drift", result=result, outlets=[drift_asset(MODEL)])
    ctx = context(run_id=f"scheduled__monitor-{uuid.uuid4().hex[:6]}")
    payload = dict(emit.execute(ctx))
    assert ctx["outlet_events"][drift_asset(MODEL)].extra == payload
    return payload


def triggered_by(run_id: str, *extras: dict[str, Any]) -> dict[str, Any]:
    """The context of a ``fraud__train`` run the scheduler started for these drift events."""
    from airflow_mlops.factories.assets import drift_asset

    events = [SimpleNamespace(extra=extra) for extra in extras]
    return {**context(run_id=run_id), "triggering_asset_events": {drift_asset(MODEL): events}}


def drift_retrains(env: Env, monitoring_run: str) -> list[str]:
    """DAG runs whose training run was started for the drift finding of ``monitoring_run``."""
    experiment = env.client.get_experiment_by_name(f"airflow-mlops/{MODEL}")
    runs = env.client.search_runs([experiment.experiment_id], f"tags.`{Tag.RETRAINED_FOR_DRIFT}` = '{monitoring_run}'")
    return sorted(run.data.tags[Tag.DAG_RUN_ID] for run in runs)


def test_duplicated_drift_event_retrains_once_and_a_late_one_is_skipped_with_its_reason(
    env: Env, mp: pytest.MonkeyPatch
) -> None:
    """The same drift event reaches two ``fraud__train`` runs (an event delivered twice while the first run was
    busy), and an event from monitoring the old champion arrives after a new champion took over. Without the
    check in ``fingerprint_data`` each would start a training run of its own and register another version."""
    from airflow.sdk.exceptions import AirflowSkipException

    env.conn(mp, served=False)
    event = drift_event(env, judged=env.v1)
    before = env.versions()

    first = triggered_by("asset_triggered__drift-1", event, event)  # the same event twice in one run: one retrain
    run = op(FingerprintDataOperator, env).execute(first)
    for cls in (ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        op(cls, env).execute(first)
    assert op(FingerprintDataOperator, env).execute(first)["mlflow_run_id"] == run["mlflow_run_id"]  # its retry

    with pytest.raises(AirflowSkipException) as duplicate:
        op(FingerprintDataOperator, env).execute(triggered_by("asset_triggered__drift-2", event))
    assert str(duplicate.value) == (
        f"fraud: not retraining: the drift event of monitoring run {event['monitoring_run_id']} was already handled "
        "by DAG run 'asset_triggered__drift-1' (a duplicated event; re-run that DAG run to retrain again)"
    )
    assert drift_retrains(env, event["monitoring_run_id"]) == ["asset_triggered__drift-1"]
    assert len(env.versions()) == len(before) + 1, "one retrain registered one version"

    env.target.promote(MODEL, env.v2, actor="fault-matrix", reason="a new champion before the late event")
    late = drift_event(env, judged=env.v1)
    with pytest.raises(AirflowSkipException) as stale:
        op(FingerprintDataOperator, env).execute(triggered_by("asset_triggered__drift-late", late))
    assert str(stale.value) == (
        f"fraud: not retraining: the drift event of monitoring run {late['monitoring_run_id']} judged champion "
        f"v{env.v1}, and v{env.v2} is the champion now (a late event)"
    )
    assert drift_retrains(env, late["monitoring_run_id"]) == []

    fresh = drift_event(env, judged=env.v2)  # a finding about the serving champion still retrains
    op(FingerprintDataOperator, env).execute(triggered_by("asset_triggered__drift-fresh", fresh))
    assert drift_retrains(env, fresh["monitoring_run_id"]) == ["asset_triggered__drift-fresh"]
    assert env.target.state(MODEL).champion == env.v2
    assert len(env.versions()) == len(before) + 1


def test_only_a_run_started_by_drift_events_alone_can_be_skipped_as_moot() -> None:
    """A new-data event next to the drift event, a schedule or a manual run always trains: only the extras of a
    run that drift events alone started are checked for duplicates and late findings."""
    from airflow_mlops.factories.assets import data_asset, drift_asset
    from airflow_mlops.operators.training import drift_event_runs

    drift = [SimpleNamespace(extra={"monitoring_run_id": "a" * 32, "champion": "1"})]
    data = [SimpleNamespace(extra={"data_uri": "/data/new.csv"})]

    assert drift_event_runs(MODEL, {drift_asset(MODEL): drift}) == [{"monitoring_run_id": "a" * 32, "champion": "1"}]
    assert drift_event_runs(MODEL, {drift_asset(MODEL): drift, data_asset(MODEL): data}) is None
    assert drift_event_runs(MODEL, {drift_asset("other_model"): drift}) is None
    assert drift_event_runs(MODEL, {drift_asset(MODEL): []}) is None
    assert drift_event_runs(MODEL, None) is None
