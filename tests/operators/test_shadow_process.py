"""The shadow's own process (:mod:`airflow_mlops.serving.shadow`), driven directly.

Real spawned processes, real signals: the worker runs under ``SCHED_IDLE``; a full queue drops and counts
instead of waiting (the worker is frozen with SIGSTOP so nothing drains it); a worker that dies is restarted;
a worker whose gateway was killed does not linger; ``stop`` lets it finish and exits it. What the worker
predicts and logs is checked end to end in ``test_gateway_app.py`` (``shadow_mode="process"``) and by the
real gateway processes of the system tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_mlops.serving.shadow import ShadowJob, ShadowProcess, ShadowWorkerOptions, mirrored

pytestmark = pytest.mark.integration

DEADLINE_S = 90.0  # a spawned worker imports mlflow first: slow on a loaded 2-core machine


def wait_for(predicate: object, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Recorder:
    def __init__(self) -> None:
        self.observed: list[tuple[str, str, float, bool]] = []
        self.dropped: Counter[str] = Counter()
        self._lock = threading.Lock()

    def observe(self, model: str, version: str, latency: float, error: bool) -> None:
        with self._lock:
            self.observed.append((model, version, latency, error))

    def drop(self, model: str) -> None:
        with self._lock:
            self.dropped[model] += 1


def options(tmp: Path) -> ShadowWorkerOptions:
    """A registry without models: every job fails to load its version, which is all these tests need."""
    return ShadowWorkerOptions(
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        registry_uri=None,
        log_root=str(tmp / "plog"),
        flush_interval=0.2,
        wal_dir=str(tmp / "wal"),
    )


@pytest.fixture
def shadow(tmp_path: Path) -> Iterator[tuple[ShadowProcess, Recorder]]:
    recorder = Recorder()
    process = ShadowProcess(options(tmp_path), queue_size=5, observe=recorder.observe, dropped=recorder.drop)
    process.start()
    try:
        yield process, recorder
    finally:
        pid = process.pid
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGCONT)
        process.stop(timeout=30)


def job(i: int) -> ShadowJob:
    return ShadowJob("fraud", "7", f"r{i}", ['{"amount": 1.0}'])


def test_mirrored_share_is_a_stable_hash_of_the_request_id() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    picked = [i for i in ids if mirrored(i, 0.25)]
    assert picked == [i for i in ids if mirrored(i, 0.25)]  # every replica picks the same requests
    assert 0.23 < len(picked) / len(ids) < 0.27
    assert set(picked) <= {i for i in ids if mirrored(i, 0.5)}  # a larger share keeps the smaller one's picks
    assert all(mirrored(i, 1.0) for i in ids[:100]) and not any(mirrored(i, 0.0) for i in ids[:100])


def test_the_worker_runs_at_the_lowest_cpu_priority_and_reports_back(shadow: tuple[ShadowProcess, Recorder]) -> None:
    process, recorder = shadow
    pid = process.pid
    assert pid is not None and pid != os.getpid()
    wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE, "SCHED_IDLE")
    assert process.submit(job(0))
    wait_for(lambda: recorder.observed, "the worker's observation")
    ((model, version, _, error),) = recorder.observed
    assert (model, version, error) == ("fraud", "7", True)  # v7 does not exist: an error, never a client's problem


def test_a_full_queue_drops_and_counts_instead_of_waiting(shadow: tuple[ShadowProcess, Recorder]) -> None:
    process, recorder = shadow
    pid = process.pid
    assert pid is not None
    wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE, "the worker's start-up")
    os.kill(pid, signal.SIGSTOP)  # nothing drains the queue now
    accepted = [process.submit(job(i)) for i in range(12)]
    assert accepted == [True] * 5 + [False] * 7  # queue_size 5; the rest dropped at once, never waited for
    assert recorder.dropped == Counter({"fraud": 7})
    os.kill(pid, signal.SIGCONT)
    wait_for(lambda: len(recorder.observed) == 5, "the 5 queued jobs answered after SIGCONT")
    assert process.submit(job(99))


def test_a_worker_that_dies_is_restarted(shadow: tuple[ShadowProcess, Recorder]) -> None:
    process, recorder = shadow
    first = process.pid
    assert first is not None
    wait_for(lambda: os.sched_getscheduler(first) == os.SCHED_IDLE, "the worker's start-up")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: process.restarts == 1 and process.pid != first and process.alive, "a new worker")
    second = process.pid
    assert second is not None
    wait_for(lambda: os.sched_getscheduler(second) == os.SCHED_IDLE, "the new worker's start-up")
    assert process.submit(job(1))
    wait_for(lambda: recorder.observed, "an answer from the new worker")


def test_stop_ends_the_worker(shadow: tuple[ShadowProcess, Recorder]) -> None:
    process, _ = shadow
    pid = process.pid
    assert pid is not None
    wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE, "the worker's start-up")
    process.stop(timeout=30)
    assert not process.alive and not running(pid)
    assert not process.submit(job(2))  # stopped: dropped, not queued to nobody


def test_the_worker_exits_when_its_gateway_is_killed(tmp_path: Path) -> None:
    """kill -9 of the gateway's process alone (not its group): the worker notices and exits, no orphan."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from airflow_mlops.serving.shadow import ShadowProcess, ShadowWorkerOptions
        options = ShadowWorkerOptions(
            tracking_uri="sqlite:///{tmp_path / "mlflow.db"}", registry_uri=None, log_root="{tmp_path / "plog"}"
        )
        process = ShadowProcess(options, queue_size=5, observe=lambda *a: None, dropped=lambda m: None)
        process.start()
        print(process.pid, flush=True)
        time.sleep(600)
        """
    )
    gateway = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert gateway.stdout is not None
        worker = int(gateway.stdout.readline())
        wait_for(lambda: os.sched_getscheduler(worker) == os.SCHED_IDLE, "the worker's start-up")
        gateway.kill()
        gateway.wait(timeout=30)
        wait_for(lambda: not running(worker), "the orphaned worker to exit", timeout=60)
    finally:
        if gateway.poll() is None:
            gateway.kill()
