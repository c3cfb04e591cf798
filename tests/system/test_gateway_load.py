"""Acceptance: a real gateway under bounded load with a failing canary loses nothing and rolls back by itself.

A real ``airflow-mlops serve`` process (strict prediction log, its WAL in ``tmp_path``) serves champion
v1 and a canary v2 at 30 %. v2 passed the offline gates but raises on a merchant category it never saw
in training, and about 10 % of the load carries such a category. While 5,000 requests run at
concurrency 32, the real ``CanaryStepTrigger`` watches the prediction log; its breach event goes to the
real ``CanaryStepOperator.execute_complete``, which rolls the canary back. Then the gateway is
SIGKILLed and the log recovered. Checked:

- every client got a 200 (a failing canary is answered by the champion; nothing turns into a 5xx);
- the canary answered some requests and failed some (``mlops_gateway_canary_fallbacks_total`` > 0);
- the breach was detected and rolled back while the load was running, and once ``/ready`` showed no
  canary, no request sent afterwards (nor any response after one poll interval of grace) came from it;
- every acknowledged request id is in the recovered log, on an error-free row of the version and role
  that answered it.

Measured numbers (throughput, client latency, detection and rollback delays) are printed, not asserted.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_mlops.vocabulary import Tag
from support import GatewayProcess, context, train_version

pytestmark = pytest.mark.integration

MODEL = "fraud"
REQUESTS = 5_000
CONCURRENCY = 32
UNKNOWN_EVERY = 10  # every 10th request carries an unseen merchant category
CANARY_PERCENT = 30.0
POLL_INTERVAL = 0.5  # gateway registry poll; also the grace period for in-flight canary answers
LOAD_TIMEOUT = 120.0
# The latency limit is out of reach on purpose: a loaded 2-core runner must not breach on latency before errors.
CANARY = {
    "steps": [CANARY_PERCENT, 100],
    "step_duration": 120,
    "check_interval": 1,
    "max_error_rate": 0.02,
    "max_latency_p95_ms": 60_000,
}


@dataclass
class Result:
    index: int
    request_id: str
    unknown: bool
    sent: float
    received: float
    status: int  # -1: transport error (no HTTP answer)
    role: str | None = None
    version: str | None = None
    detail: str | None = None


@dataclass
class Rollback:
    detected: float | None = None
    answered_at_detection: int = 0
    event: dict[str, Any] | None = None
    error: BaseException | None = None
    rolled_back: float | None = None
    effective: float | None = None  # /ready first showed no canary


@pytest.fixture
def load_env(workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    log_root = tmp_path / "prediction-log"
    wal_dir = tmp_path / "wal"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", state_url)
    serving = {"prediction_log": str(log_root)}
    good = workspace.write_config(MODEL, {"rollout": {"canary": CANARY}, "serving": serving})
    v1 = train_version(good, "manual__v1")
    target = LocalGatewayTarget.from_options(client=workspace.client(), state_url=state_url)
    target.promote(MODEL, v1, actor="test", reason="first champion")
    broken = workspace.write_config(
        MODEL, {"features": {"unknown_categories": "error"}, "rollout": {"canary": CANARY}, "serving": serving}
    )
    v2 = train_version(broken, "manual__broken")
    gateway = GatewayProcess(
        models=[MODEL],
        tracking_uri=workspace.tracking_uri,
        log_root=log_root,
        extra=[
            "--log-mode",
            "strict",
            "--wal-dir",
            str(wal_dir),
            "--poll-interval",
            str(POLL_INTERVAL),
            "--flush-interval",
            "0.5",
        ],
    )
    try:
        gateway.wait_ready(predicate=lambda r: r["models"][MODEL]["champion"] == v1)
        yield {
            "config": broken,
            "v1": v1,
            "v2": v2,
            "target": target,
            "gateway": gateway,
            "log_root": log_root,
            "wal_dir": wal_dir,
        }
    finally:
        gateway.kill()


def _records() -> list[dict[str, Any]]:
    from airflow_mlops.examples.datasets import fraud_batch

    rows: list[dict[str, Any]] = fraud_batch(12).drop(columns=["is_fraud"]).to_dict("records")
    return rows


async def _load(url: str, rows: list[dict[str, Any]], results: list[Result], done: asyncio.Event) -> None:
    """Exactly ``REQUESTS`` single-record predictions from ``CONCURRENCY`` workers sharing one client."""
    counter = itertools.count()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def worker(client: httpx.AsyncClient) -> None:
        while (i := next(counter)) < REQUESTS:
            record = dict(rows[i % len(rows)])
            unknown = i % UNKNOWN_EVERY == UNKNOWN_EVERY // 2
            if unknown:
                record["merchant_category"] = "crypto"
            request_id = uuid.uuid4().hex
            sent = time.monotonic()
            try:
                answer = await client.post(
                    f"/v1/models/{MODEL}/predict", json={"records": record}, headers={"X-Request-ID": request_id}
                )
            except httpx.HTTPError as exc:
                results.append(Result(i, request_id, unknown, sent, time.monotonic(), -1, detail=repr(exc)))
                continue
            result = Result(i, request_id, unknown, sent, time.monotonic(), answer.status_code)
            body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
            if answer.status_code == 200:
                result.role, result.version = body["role"], str(body["model_version"])
                assert body["request_id"] == request_id
            else:
                result.detail = answer.text[:300]
            results.append(result)

    try:
        async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
            await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    finally:
        done.set()


async def _watch_and_roll_back(
    url: str, trigger: Any, operator: Any, ctx: dict[str, Any], results: list[Result], state: Rollback
) -> None:
    """The deferred canary step: the real trigger, then the operator's ``execute_complete`` on its event."""
    from airflow_mlops.exceptions import GateFailedError

    events = trigger.run()
    try:
        async for event in events:
            state.detected, state.answered_at_detection, state.event = time.monotonic(), len(results), event.payload
            break
    finally:
        await events.aclose()
    if not state.event or state.event.get("status") != "breach":
        return
    try:
        await asyncio.to_thread(operator.execute_complete, ctx, state.event)
    except GateFailedError as exc:
        state.error = exc
    state.rolled_back = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ready = (await client.get("/ready")).json()
            except (httpx.HTTPError, ValueError):
                ready = {}
            if ready.get("models", {}).get(MODEL, {}).get("canary", "?") is None:
                state.effective = time.monotonic()
                return
            await asyncio.sleep(0.05)


async def _run(url: str, trigger: Any, operator: Any, ctx: dict[str, Any]) -> tuple[list[Result], Rollback, float]:
    results: list[Result] = []
    state = Rollback()
    done = asyncio.Event()
    watch = asyncio.create_task(_watch_and_roll_back(url, trigger, operator, ctx, results, state))
    try:
        started = time.monotonic()
        await asyncio.wait_for(_load(url, rows=_records(), results=results, done=done), timeout=LOAD_TIMEOUT)
        load_seconds = time.monotonic() - started
        # The breach should have been handled long ago; bound the wait in case it was not.
        await asyncio.wait_for(asyncio.shield(watch), timeout=15)
    finally:
        if not watch.done():
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
    return results, state, load_seconds


def _fallbacks(metrics_text: str, version: str) -> int:
    match = re.search(rf'^mlops_gateway_canary_fallbacks_total\{{model="{MODEL}",version="{version}"\}} (\d+)(?:\.0)?$',
                      metrics_text, re.M)  # fmt: skip
    return int(match.group(1)) if match else 0


def test_gateway_under_load_with_failing_canary(workspace: Any, load_env: dict[str, Any]) -> None:
    from airflow_mlops.exceptions import GateFailedError
    from airflow_mlops.operators.rollout import CanaryStepOperator
    from airflow_mlops.prediction_log import LocalStorage, PredictionLog, read_predictions
    from airflow_mlops.triggers.rollout import CanaryStepTrigger

    v1, v2, gateway, target = load_env["v1"], load_env["v2"], load_env["gateway"], load_env["target"]
    log_root, wal_dir = load_env["log_root"], load_env["wal_dir"]

    target.set_traffic(MODEL, v2, CANARY_PERCENT, actor="test", reason="load test canary")
    gateway.wait_ready(predicate=lambda r: r["models"][MODEL]["canary"] == v2, timeout=15)

    operator = CanaryStepOperator(
        task_id="canary_30", config_path=str(load_env["config"]), version=v2, champion=v1, percent=CANARY_PERCENT
    )
    cfg = operator.loaded.config
    ctx = context(run_id="manual__load")
    trigger = CanaryStepTrigger(
        log_root=str(log_root),
        log_conn_id=None,
        model=MODEL,
        champion=v1,
        canary=v2,
        start=time.time(),
        duration=float(CANARY["step_duration"]),
        check_interval=float(CANARY["check_interval"]),
        limits=cfg.rollout.canary.model_dump(mode="json"),
        metric=cfg.primary_metric,
    )
    assert cfg.rollout.canary.max_error_rate == 0.02

    results, rollback, load_seconds = asyncio.run(_run(gateway.url, trigger, operator, ctx))
    load_end = max(r.received for r in results)
    metrics_text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    fallbacks = _fallbacks(metrics_text, v2)

    # --- measured numbers (printed, not asserted) -------------------------------------------------
    latencies = sorted((r.received - r.sent) * 1000 for r in results)
    cuts = statistics.quantiles(latencies, n=100)
    first_unknown = min(r.sent for r in results if r.unknown)
    served = Counter((r.version, r.role) for r in results if r.status == 200)
    print(
        f"\n[gateway load] {len(results)} requests at concurrency {CONCURRENCY} in {load_seconds:.2f} s "
        f"= {len(results) / load_seconds:.0f} req/s; client latency p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms"
    )
    print(f"[gateway load] answers by (version, role): {dict(served)}; canary fallbacks {fallbacks}")
    if rollback.detected is not None:
        print(
            f"[gateway load] breach detected {rollback.detected - first_unknown:.2f} s after the first unseen category "
            f"(after {rollback.answered_at_detection} answers): {rollback.event}"
        )
    if rollback.rolled_back is not None and rollback.effective is not None:
        print(
            f"[gateway load] rollback written {rollback.rolled_back - first_unknown:.2f} s, effective on /ready "
            f"{rollback.effective - first_unknown:.2f} s after the first unseen category; load ended "
            f"{load_end - first_unknown:.2f} s after it"
        )

    # --- the clients saw only successes -------------------------------------------------------------
    assert len(results) == REQUESTS
    assert len({r.request_id for r in results}) == REQUESTS
    statuses = Counter(r.status for r in results)
    assert not [r for r in results if r.status >= 500], statuses
    assert statuses == {200: REQUESTS}, [(r.status, r.detail) for r in results if r.status != 200][:5]

    # --- the canary served, failed, and was rolled back automatically while load ran ------------------
    assert rollback.event is not None and rollback.event["status"] == "breach", rollback.event
    assert any("canary error rate" in reason for reason in rollback.event["reasons"]), rollback.event
    assert isinstance(rollback.error, GateFailedError), rollback.error
    assert rollback.effective is not None, "the gateway never stopped serving the canary after the rollback"
    assert rollback.effective < load_end, "the rollback must take effect while the load is still running"
    assert served[(v2, "canary")] > 0, "the canary answered nothing before the rollback"
    assert fallbacks > 0
    assert set(served) <= {(v1, "champion"), (v2, "canary")}
    canary_after = [r for r in results if r.role == "canary" and r.sent > rollback.effective]
    assert not canary_after, f"{len(canary_after)} requests sent after the rollback took effect hit the canary"
    late = [r for r in results if r.role == "canary" and r.received > rollback.effective + POLL_INTERVAL]
    assert not late, f"{len(late)} canary answers arrived more than {POLL_INTERVAL} s after the rollback"
    assert any(r.sent > rollback.effective for r in results), "no load left after the rollback"
    state = target.state(MODEL)
    assert (state.champion, state.canary) == (v1, None)
    reason = workspace.client().get_model_version(MODEL, v2).tags[Tag.ROLLBACK_REASON]
    assert reason.startswith(f"canary step {CANARY_PERCENT:g}%: canary error rate"), reason

    # --- kill -9, recover the WAL: every acknowledged answer is in the log -----------------------------
    gateway.kill()
    PredictionLog(LocalStorage(log_root), mode="strict", wal_dir=str(wal_dir)).close()
    logged = read_predictions(LocalStorage(log_root), MODEL)
    answered = logged[logged["error"].isna() & logged["role"].isin(["champion", "canary"])]
    answered_keys = set(zip(answered["request_id"], answered["version"], answered["role"], strict=True))
    missing = [r for r in results if (r.request_id, r.version, r.role) not in answered_keys]
    assert not missing, f"{len(missing)} acknowledged requests are not in the log, e.g. {missing[:3]}"
    canary_errors = logged[(logged["role"] == "canary") & logged["error"].notna()]
    assert len(canary_errors) == fallbacks
    assert canary_errors["inputs"].str.contains('"merchant_category":"crypto"').all()
