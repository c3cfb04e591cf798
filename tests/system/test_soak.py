"""Bounded soak: a real gateway under steady load while two rollouts and an emergency rollback move its aliases.

One ``airflow-mlops serve`` process (batched prediction log, flushed every second) serves ``fraud``; client
threads post transactions at a steady pace for ``MLOPS_SOAK_SECONDS`` (default 60 s; at most 600, the
issue's 10-minute bound). Meanwhile, through the real ``LocalGatewayTarget`` (the registry aliases the gateway
polls, the audit trail, the lock):

1. rollout 1: v2 in shadow, then canary 10 % -> 50 %, then champion;
2. rollout 2: v3 canary 20 % -> 50 %, interrupted by an emergency ``rollback`` to ``previous`` (v1, the
   champion before v2), while the load keeps running.

Checked at the end, after a graceful stop (SIGTERM: the batched log flushes):

- no error response (every request got a 200);
- the gateway's resident memory is flat: the median of the last fifth of the run is within 10 % of the median
  of the second fifth (the first fifth is warm-up: models loading, caches filling);
- the prediction log is complete: every acknowledged request id is logged once, by the version and role that
  answered it, and the shadow's copies are logged too;
- every answer came from a version the aliases allowed at that time (no answer from v3 after the rollback took
  effect on ``/ready``, plus one poll interval of grace).

Measured numbers (request rate, memory, latencies) are printed, not asserted beyond the bounds above.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import GatewayProcess, TrainedRegistry, trained_registry

pytestmark = pytest.mark.integration

MODEL = "fraud"
SOAK_SECONDS = min(600.0, float(os.environ.get("MLOPS_SOAK_SECONDS", "60")))
CLIENTS = 4
PACE_S = 0.02  # per client: ~200 requests/s in all, well under what one gateway answers on two cores
POLL_INTERVAL = 0.5
CATEGORIES = ["grocery", "restaurant", "fuel", "online", "travel", "electronics"]


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Answer:
    request_id: str
    sent: float
    received: float
    status: int  # -1: transport error
    version: str | None = None
    role: str | None = None


def record(i: int) -> dict[str, Any]:
    return {
        "amount": 10.0 + (i * 7919) % 500,
        "hour": i % 24,
        "distance_from_home_km": float((i * 31) % 90),
        "txn_count_24h": i % 15,
        "account_age_days": float(30 + (i * 13) % 2000),
        "card_present": i % 2,
        "merchant_category": CATEGORIES[i % len(CATEGORIES)],
    }


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Load:
    """``CLIENTS`` threads posting at a steady pace until stopped; every answer kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self, n: int) -> None:
        i = n
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._halt.is_set():
                request_id = f"soak-{n}-{uuid.uuid4().hex[:12]}"
                sent = time.monotonic()
                try:
                    response = client.post(
                        f"/v1/models/{MODEL}/predict", json={"records": record(i)}, headers={"x-request-id": request_id}
                    )
                    body = response.json() if response.status_code == 200 else {}
                    answer = Answer(
                        request_id,
                        sent,
                        time.monotonic(),
                        response.status_code,
                        body.get("model_version"),
                        body.get("role"),
                    )
                except httpx.HTTPError:
                    answer = Answer(request_id, sent, time.monotonic(), -1)
                with self._lock:
                    self.answers.append(answer)
                i += CLIENTS
                self._halt.wait(PACE_S)


class Memory(threading.Thread):
    """The gateway's RSS once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(1.0):
            try:
                self.samples.append((time.monotonic(), rss_bytes(self.pid)))
            except (OSError, RuntimeError):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedRegistry]:
    root = tmp_path_factory.mktemp("soak-registry")
    trainings: list[tuple[dict[str, Any] | None, str]] = [
        (None, "manual__soak_v1"),
        ({"estimator": {"params": {"C": 0.5}}}, "manual__soak_v2"),
        ({"estimator": {"params": {"C": 2.0}}}, "manual__soak_v3"),
    ]
    with trained_registry(request.config, root, trainings) as reg:
        reg.target.promote(MODEL, reg.versions[0], actor="soak", reason="first champion")
        yield reg


def wait_routing(gateway: GatewayProcess, **expected: str | None) -> float:
    """Wait until ``/ready`` shows the expected aliases; return when (monotonic)."""
    gateway.wait_ready(predicate=lambda r: all(r["models"][MODEL][k] == v for k, v in expected.items()), timeout=30)
    return time.monotonic()


def test_steady_load_through_two_rollouts_and_a_rollback(registry: TrainedRegistry, tmp_path: Path) -> None:
    from airflow_mlops.prediction_log import LocalStorage, read_predictions

    v1, v2, v3 = registry.versions
    target = registry.target
    log_root = tmp_path / "plog"
    gateway = GatewayProcess(
        models=[MODEL],
        tracking_uri=registry.tracking_uri,
        log_root=log_root,
        extra=["--poll-interval", str(POLL_INTERVAL), "--flush-interval", "1"],
    )
    load = Load(gateway.url)
    memory = Memory(gateway.proc.pid)
    phase = SOAK_SECONDS / 8
    try:
        wait_routing(gateway, champion=v1)
        began = time.monotonic()
        load.start()
        memory.start()
        log(f"load started; soak of {SOAK_SECONDS:.0f} s, a step every {phase:.0f} s")

        def step(at: float, what: str, move: Any, **expected: str | None) -> float:
            time.sleep(max(0.0, began + at - time.monotonic()))
            move()
            effective = wait_routing(gateway, **expected)
            log(f"{what}: effective {effective - began:.1f} s")
            return effective

        actor, why = "soak", "soak test"
        step(1 * phase, "v2 shadow", lambda: target.start_shadow(MODEL, v2, actor=actor, reason=why), shadow=v2)
        step(
            2 * phase, "v2 canary 10%", lambda: target.set_traffic(MODEL, v2, 10.0, actor=actor, reason=why), canary=v2
        )
        step(
            3 * phase, "v2 canary 50%", lambda: target.set_traffic(MODEL, v2, 50.0, actor=actor, reason=why), canary=v2
        )
        step(
            4 * phase,
            "v2 champion",
            lambda: target.promote(MODEL, v2, actor=actor, reason=why),
            champion=v2,
            canary=None,
        )
        step(
            5 * phase, "v3 canary 20%", lambda: target.set_traffic(MODEL, v3, 20.0, actor=actor, reason=why), canary=v3
        )
        step(
            6 * phase, "v3 canary 50%", lambda: target.set_traffic(MODEL, v3, 50.0, actor=actor, reason=why), canary=v3
        )
        rolled_back = step(
            6.5 * phase,
            "emergency rollback to previous",
            lambda: target.rollback(MODEL, "previous", actor=actor, reason="soak: emergency"),
            champion=v1,
            canary=None,
        )
        time.sleep(max(0.0, began + SOAK_SECONDS - time.monotonic()))
    finally:
        load.stop()
        memory.stop()
        ended = time.monotonic()
        # graceful stop: the batched log flushes what it holds
        if gateway.proc.poll() is None:
            os.killpg(gateway.proc.pid, signal.SIGTERM)
        gateway.proc.wait(timeout=60)
        gateway.kill()

    answers = load.answers
    seconds = ended - began
    latencies = sorted((a.received - a.sent) * 1000 for a in answers)
    cuts = statistics.quantiles(latencies, n=100)
    served = Counter((a.version, a.role) for a in answers)
    log(
        f"{len(answers)} requests in {seconds:.0f} s ({len(answers) / seconds:.0f} req/s), client latency "
        f"p50 {cuts[49]:.1f} ms p99 {cuts[98]:.1f} ms; answers by (version, role): {dict(served)}"
    )

    # -- no error responses ---------------------------------------------------------------------------
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: len(answers)}, statuses
    assert len(answers) > 20 * SOAK_SECONDS  # the load really ran (~200/s planned)

    # -- the aliases decided who answered ---------------------------------------------------------------
    assert {(v1, "champion"), (v2, "canary"), (v2, "champion"), (v3, "canary")} <= set(served), served
    assert set(served) <= {(v1, "champion"), (v2, "canary"), (v2, "champion"), (v3, "canary")}, served
    late = [a for a in answers if a.version == v3 and a.received > rolled_back + POLL_INTERVAL]
    assert not late, f"{len(late)} answers from v3 after the rollback took effect"

    # -- memory flat ------------------------------------------------------------------------------------
    samples = memory.samples
    fifth = seconds / 5
    second = [rss for t, rss in samples if began + fifth <= t < began + 2 * fifth]
    last = [rss for t, rss in samples if t >= began + 4 * fifth]
    assert second and last, (len(samples), seconds)
    baseline, final = statistics.median(second), statistics.median(last)
    log(f"gateway RSS: median {baseline / 2**20:.1f} MiB in the second fifth, {final / 2**20:.1f} MiB in the last")
    assert final <= baseline * 1.10, f"RSS grew from {baseline / 2**20:.1f} to {final / 2**20:.1f} MiB"

    # -- the prediction log is complete -----------------------------------------------------------------
    logged = read_predictions(LocalStorage(log_root), MODEL)
    live = logged[logged["role"].isin(["champion", "canary"]) & logged["error"].isna()]
    counts = Counter(zip(live["request_id"], live["version"], live["role"], strict=True))
    missing = [a for a in answers if counts[(a.request_id, a.version, a.role)] != 1]
    assert not missing, f"{len(missing)} acknowledged answers not logged exactly once, e.g. {missing[:3]}"
    shadow = logged[logged["role"] == "shadow"]
    assert len(shadow) > 0 and set(shadow["version"]) == {v2}
