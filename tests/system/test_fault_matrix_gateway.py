"""Fault matrix, gateway side (issue 11): real ``airflow-mlops serve`` processes under real faults.

One registry for the module (trained, registered and gated by the real operators): v1 and v3 are the
fraud example, v2 is the same model as ``fault_matrix_models.CrashingClassifier``, whose every
prediction raises in a gateway process (see that module). Each test starts from v1 as the only champion
and runs its own gateway processes on its own prediction log. The faults are real, not mocked:

- ``kill -9`` (SIGKILL of the gateway's process group) under concurrent load, strict and batched;
- a store the gateway cannot write: **full** is ``RLIMIT_FSIZE`` lowered on the running gateway
  (``prlimit``; every write past the limit fails with ``EFBIG``, the WAL's and the Parquet files' alike)
  and raised again to recover; **read-only** is every directory of the log's root made unwritable, by
  ``chmod 0o555`` when that stops this user, else (root ignores modes) ``chattr +i`` (the immutable flag,
  which stops root too; ext4 and most local filesystems), else a directory swapped for a regular file
  (``ENOTDIR``, the last resort where neither works);
- a canary whose model raises on every call;
- MLflow unreachable while the gateway serves (the TCP link to a real ``mlflow server`` cut: connection
  refused and open connections reset, as from a killed server), then reachable again.

After each fault the champion still answers, no request a client got a 200 for is missing from the
prediction log (strict mode; batched mode within its documented loss bound), nothing is promoted by the
fault, and no 5xx appears where the docs promise a 200 or a 4xx. Nothing here asserts a duration:
waits are for conditions, with generous deadlines that only turn a hang into a failure.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from airflow_mlops.prediction_log import LocalStorage, PredictionLog, list_partitions, read_predictions
from airflow_mlops.vocabulary import Tag
from support import GatewayProcess, free_port, trained_registry

pytestmark = pytest.mark.integration

MODEL = "fraud"
HERE = Path(__file__).resolve().parent
CRASHING = "fault_matrix_models.CrashingClassifier"
TRANSPORT_ERROR = -1  # no HTTP answer (the gateway died mid-request)
CONCURRENCY = 6
MAX_PENDING = 10_000  # the smallest --max-pending the gateway accepts (its early-flush size)
DEADLINE = 60.0  # seconds before a wait for a condition is a failure (a hang), never a timing assertion


# --- registry (module) ----------------------------------------------------------------------------------------


@dataclass
class Registry:
    tracking_uri: str
    db_path: Path
    client: Any
    target: Any
    v1: str
    v2: str  # crashes on every call in a gateway
    v3: str

    def reset(self) -> None:
        """v1 is the champion; no canary, no shadow; nothing rejected (a rollback rejects what was in flight)."""
        self.target.rollback(MODEL, to_version=self.v1, actor="test", reason="reset")
        for version in (self.v2, self.v3):
            tags = self.client.get_model_version(MODEL, version).tags
            for key in (Tag.REJECTED_REASON, Tag.REJECTED_BY):
                if key in tags:
                    self.client.delete_model_version_tag(MODEL, version, key)

    def champion(self) -> str | None:
        champion = self.target.state(MODEL).champion
        return None if champion is None else str(champion)


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("fault-matrix-registry")
    trainings = [
        (None, "manual__fm_good_v1"),
        ({"estimator": {"class": CRASHING}}, "manual__fm_crashing_v2"),
        (None, "manual__fm_good_v3"),
    ]
    import fault_matrix_models  # imports scikit-learn: not at collection

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST", CRASHING)
        # gateways import fault_matrix_models from here (they inherit os.environ)
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p))
        mp.setattr(fault_matrix_models, "PREDICT_ALLOWED", True)  # this process trains and gates it
        with trained_registry(request.config, root, trainings) as trained:
            v1, v2, v3 = trained.versions
            run_id = trained.client.get_model_version(MODEL, v2).tags[Tag.MLFLOW_RUN_ID]
            assert trained.client.get_run(run_id).data.params["estimator"] == CRASHING
            reg = Registry(trained.tracking_uri, root / "mlflow.db", trained.client, trained.target, v1, v2, v3)
            reg.reset()
            yield reg


@pytest.fixture
def reg(registry: Registry) -> Iterator[Registry]:
    registry.reset()
    yield registry
    registry.reset()


# --- gateway, load and metrics helpers -----------------------------------------------------------------------


@dataclass
class Answer:
    request_id: str
    status: int
    received: datetime  # when the client had the answer (the gateway's clock is the same machine's)
    version: str | None = None
    role: str | None = None
    rows: int = 1
    detail: str = ""


@functools.cache
def _records() -> list[dict[str, Any]]:
    """1,000 request records of the fraud example (built on first use, not at collection)."""
    from airflow_mlops.examples.datasets import fraud_batch

    rows: list[dict[str, Any]] = fraud_batch(12).drop(columns=["is_fraud"]).head(1000).to_dict("records")
    return rows


def _start(
    reg: Registry,
    log_root: Path,
    *,
    mode: str,
    flush: float,
    wal_dir: Path | None = None,
    tracking_uri: str | None = None,
    extra: list[str] | None = None,
) -> GatewayProcess:
    """A gateway on ``log_root``, returned once it serves v1 as the champion."""
    args = ["--log-mode", mode, "--flush-interval", str(flush), "--poll-interval", "0.3", *(extra or [])]
    if wal_dir is not None:
        args += ["--wal-dir", str(wal_dir)]
    gateway = GatewayProcess(
        models=[MODEL], tracking_uri=tracking_uri or reg.tracking_uri, log_root=log_root, extra=args
    )
    try:
        gateway.wait_ready(predicate=lambda r: r["models"][MODEL]["champion"] == reg.v1)
    except BaseException:
        gateway.kill()
        raise
    return gateway


def _post(client: httpx.Client, records: list[dict[str, Any]] | dict[str, Any]) -> Answer:
    request_id = uuid.uuid4().hex
    try:
        response = client.post(
            f"/v1/models/{MODEL}/predict", json={"records": records}, headers={"X-Request-ID": request_id}
        )
    except httpx.TransportError as exc:
        return Answer(request_id, TRANSPORT_ERROR, datetime.now(UTC), detail=repr(exc))
    answer = Answer(
        request_id, response.status_code, datetime.now(UTC), rows=len(records) if isinstance(records, list) else 1
    )
    if response.status_code == 200:
        body = response.json()
        assert body["request_id"] == request_id
        answer.version, answer.role = str(body["model_version"]), body["role"]
    else:
        answer.detail = response.text[:300]
    return answer


def _send(gateway: GatewayProcess, count: int, batch: int = 0) -> list[Answer]:
    """``count`` requests one after another (one record each, or ``batch`` records each)."""
    with httpx.Client(base_url=gateway.url, timeout=30.0) as client:
        if batch:
            return [_post(client, _records()[:batch]) for _ in range(count)]
        return [_post(client, _records()[i % 1000]) for i in range(count)]


class Load:
    """``CONCURRENCY`` threads posting single records until ``total`` were sent, ``stop`` is set, or the
    gateway is gone (a worker stops at its first transport error)."""

    def __init__(self, gateway: GatewayProcess, total: int) -> None:
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._total = total
        self._url = gateway.url
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(CONCURRENCY)]

    def _worker(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30.0) as client:
            while not self.stop.is_set() and (i := next(self._counter)) < self._total:
                answer = _post(client, _records()[i % 1000])
                with self._lock:
                    self.answers.append(answer)
                if answer.status == TRANSPORT_ERROR:
                    return

    def acknowledged(self) -> int:
        with self._lock:
            return sum(a.status == 200 for a in self.answers)

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Wait for the workers to finish (stop them first when the block failed)."""
        if exc_type is not None:
            self.stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        assert not self.running(), "load workers still running"


def _wait(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}; last value {value!r}")
        time.sleep(0.05)


def _kill_under_load(gateway: GatewayProcess, load: Load, ready: Callable[[], bool], what: str) -> None:
    """SIGKILL the gateway once ``ready()`` holds, while ``load`` is still sending."""

    def due() -> bool:
        assert load.running(), f"the load ended before {what}; raise its request count"
        return ready()

    _wait(due, what)
    gateway.kill()


def _metrics(gateway: GatewayProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10.0).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _sample(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def _logged(log_root: Path) -> Any:
    return read_predictions(LocalStorage(log_root), MODEL)


def _row_ids(answers: list[Answer]) -> set[str]:
    """The request ids the log gives each answered row (``<id>#<i>`` for the rows of a batch)."""
    return {a.request_id if a.rows == 1 else f"{a.request_id}#{i}" for a in answers for i in range(a.rows)}


def _assert_logged_as_answered(answers: list[Answer], logged: Any) -> None:
    """Every acknowledged request has an error-free row of the version and role that answered it."""
    ok = logged[logged["error"].isna()]
    served = set(zip(ok["request_id"], ok["version"], ok["role"], strict=True))
    missing = [a for a in answers if (a.request_id, a.version, a.role) not in served]
    assert not missing, f"{len(missing)} of {len(answers)} acknowledged requests are not in the log: {missing[:3]}"


def _answered_by(answers: list[Answer], version: str) -> None:
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: len(answers)}, [(a.status, a.detail) for a in answers if a.status != 200][:5]
    assert {(a.version, a.role) for a in answers} == {(version, "champion")}


def _part_files(log_root: Path) -> list[str]:
    """The names of the part files under ``log_root`` (also under a directory moved aside by :func:`_read_only`)."""
    return sorted(path.name for path in log_root.rglob("part-*.parquet"))


def _temporary_files(log_root: Path) -> list[Path]:
    return [p for p in log_root.rglob(".*.tmp")]


# --- 1, 2: kill -9 under load --------------------------------------------------------------------------------


def test_kill_9_under_load_strict_loses_no_acknowledged_request(reg: Registry, tmp_path: Path) -> None:
    """Strict mode: every 200 survives SIGKILL; the restarted gateway recovers them and serves the same champion.

    Without the fsynced write-ahead log before answering (or without its recovery at start) the rows would
    be lost: the flush interval is 600 s, so no acknowledged row reached Parquet before the kill.
    """
    log_root, wal_dir = tmp_path / "log", tmp_path / "wal"
    gateway = _start(reg, log_root, mode="strict", flush=600.0, wal_dir=wal_dir)
    try:
        with Load(gateway, total=5_000) as load:
            _kill_under_load(gateway, load, lambda: load.acknowledged() >= 150, "150 acknowledged answers")
    finally:
        gateway.kill()
    acked = [a for a in load.answers if a.status == 200]
    assert {a.status for a in load.answers} <= {200, TRANSPORT_ERROR}, Counter(a.status for a in load.answers)
    assert len(acked) >= 150
    assert any(a.status == TRANSPORT_ERROR for a in load.answers), "the kill did not interrupt the load"
    _answered_by(acked, reg.v1)
    assert list_partitions(LocalStorage(log_root), MODEL) == []  # only the WAL holds them now
    assert list(wal_dir.glob("wal-*.jsonl"))

    restarted = _start(reg, log_root, mode="strict", flush=0.2, wal_dir=wal_dir)
    try:
        _assert_logged_as_answered(acked, _logged(log_root))  # recovered at the restart, before /ready
        _answered_by(_send(restarted, 5), reg.v1)
    finally:
        restarted.kill()
    assert reg.champion() == reg.v1  # the crash promoted nothing
    assert reg.target.state(MODEL).canary is None


def test_kill_9_under_load_batched_loses_at_most_the_unflushed_tail(reg: Registry, tmp_path: Path) -> None:
    """Batched mode: after SIGKILL only rows appended after the last completed flush may be missing.

    The bound comes from the log itself, not from timing: every logged row was appended before the take of
    the flush that wrote it, so an acknowledged request whose answer the client had before the newest logged
    row's timestamp was appended before the last completed flush took its rows, and must be in the log.
    A flush that lost or skipped rows (or a buffer swap that dropped rows appended during a flush) fails it.
    """
    log_root = tmp_path / "log"
    gateway = _start(reg, log_root, mode="batched", flush=0.25)
    try:
        with Load(gateway, total=20_000) as load:
            _kill_under_load(
                gateway,
                load,
                lambda: load.acknowledged() >= 100 and len(list_partitions(LocalStorage(log_root), MODEL)) >= 2,
                "two completed flushes and 100 acknowledged answers",
            )
    finally:
        gateway.kill()
    acked = [a for a in load.answers if a.status == 200]
    assert {a.status for a in load.answers} <= {200, TRANSPORT_ERROR}, Counter(a.status for a in load.answers)
    _answered_by(acked, reg.v1)

    logged = _logged(log_root)
    newest = logged["ts"].max().to_pydatetime()
    before = [a for a in acked if a.received < newest]
    assert before, "no answer preceded the last completed flush; the check would be empty"
    _assert_logged_as_answered(before, logged)
    logged_ids = set(logged["request_id"])
    missing = [a for a in acked if a.request_id not in logged_ids]
    assert all(a.received >= newest for a in missing)
    assert logged_ids <= {a.request_id for a in load.answers}  # nothing the clients did not send

    restarted = _start(reg, log_root, mode="batched", flush=0.2)
    try:
        _answered_by(_send(restarted, 5), reg.v1)
    finally:
        restarted.kill()
    assert reg.champion() == reg.v1


# --- 3: the prediction log's store full or read-only ----------------------------------------------------------


@contextlib.contextmanager
def _file_size_limit(gateway: GatewayProcess, limit: int) -> Iterator[None]:
    """``RLIMIT_FSIZE`` of the running gateway lowered to ``limit`` bytes (a full disk, as the process sees
    it: a write past the limit fails with EFBIG; Python ignores SIGXFSZ), then restored."""
    pid = gateway.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        if gateway.proc.poll() is None:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def _unwritable(directory: Path) -> bool:
    probe = directory / f".probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError:
        return True
    probe.rmdir()
    return False


@contextlib.contextmanager
def _read_only(log_root: Path) -> Iterator[str]:
    """Every directory under ``log_root`` (and it) unwritable; yields the mechanism that worked here.

    ``chmod`` does not stop root, so as root the immutable flag (``chattr +i``) is used; where neither
    stops this process (no ``chattr``, or a filesystem without the flag), the model's directory is swapped
    for a regular file, so every write under it fails with ENOTDIR.
    """
    dirs = [log_root, *(p for p in log_root.rglob("*") if p.is_dir())]
    modes = {d: d.stat().st_mode for d in dirs}
    for d in dirs:
        d.chmod(0o555)
    if all(_unwritable(d) for d in dirs):
        try:
            yield "chmod 0o555"
        finally:
            for d, mode in modes.items():
                d.chmod(mode)
        return
    for d, mode in modes.items():
        d.chmod(mode)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "-R", "+i", str(log_root)], capture_output=True).returncode == 0:
        if all(_unwritable(d) for d in dirs):
            try:
                yield "chattr +i"
            finally:
                subprocess.run([chattr, "-R", "-i", str(log_root)], check=True, capture_output=True)
            return
        subprocess.run([chattr, "-R", "-i", str(log_root)], check=True, capture_output=True)
    model_dir, moved = log_root / MODEL, log_root / f".{MODEL}.moved"
    model_dir.rename(moved)
    model_dir.write_text("not a directory")
    try:
        yield "a regular file in place of the model's directory"
    finally:
        model_dir.unlink()
        moved.rename(model_dir)


def test_strict_mode_refuses_what_it_cannot_log_on_a_full_disk(reg: Registry, tmp_path: Path) -> None:
    """Strict mode with the disk full: no request is acknowledged that is not in the write-ahead log (503,
    not 200); once the disk has room again the gateway answers and logs as before, and a SIGKILL loses
    nothing it acknowledged.

    Without the protection: a gateway that answered 200 after a failed WAL write would show 200s here whose
    rows are missing after the kill; a WAL that kept the torn start of a failed line (the limit cuts each
    write mid-line) would glue it to the next acknowledged row, which recovery then could not read.
    """
    log_root, wal_dir = tmp_path / "log", tmp_path / "wal"
    gateway = _start(reg, log_root, mode="strict", flush=600.0, wal_dir=wal_dir)  # no flush: only the WAL
    try:
        before = _send(gateway, 10)
        _answered_by(before, reg.v1)
        (segment,) = wal_dir.glob("wal-*.jsonl")
        # room for less than one more WAL line: every append writes part of its line, then fails
        with _file_size_limit(gateway, segment.stat().st_size + 64):
            refused = _send(gateway, 10)
            assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200
            ready = httpx.get(f"{gateway.url}/ready", timeout=10)
            assert ready.status_code == 200 and ready.json()["models"][MODEL]["champion"] == reg.v1
        after = _send(gateway, 10)
        _answered_by(after, reg.v1)
    finally:
        gateway.kill()
    assert list_partitions(LocalStorage(log_root), MODEL) == []  # only the WAL holds them
    assert [a.status for a in refused] == [503] * 10, [(a.status, a.detail) for a in refused]
    assert all("OSError" in a.detail for a in refused), refused[0].detail

    PredictionLog(LocalStorage(log_root), mode="strict", wal_dir=str(wal_dir)).close()  # recover the dead WAL
    logged = _logged(log_root)
    _assert_logged_as_answered(before + after, logged)
    assert not set(logged["request_id"]) & {a.request_id for a in refused}  # the log says what clients were told
    assert len(logged) == 20
    assert reg.champion() == reg.v1


def test_strict_mode_keeps_answering_through_a_read_only_store(reg: Registry, tmp_path: Path) -> None:
    """Strict mode with the Parquet store read-only (the WAL on another, writable disk): the WAL holds every
    acknowledged row, none reaches the store during the outage, all of them do once it is writable again.

    Without the protection: a flush that dropped its rows on a write error, or deleted its WAL segment
    anyway, would leave the outage's acknowledged rows missing at the end.
    """
    log_root, wal_dir = tmp_path / "log", tmp_path / "wal"
    gateway = _start(reg, log_root, mode="strict", flush=0.2, wal_dir=wal_dir)
    try:
        before = _send(gateway, 10)
        _wait(lambda: len(_logged(log_root)) == 10, "the first rows in Parquet")
        parts = _part_files(log_root)
        with _read_only(log_root) as mechanism:
            during = _send(gateway, 30)
            _answered_by(during, reg.v1)
            pending = _wait(
                lambda: _sample(_metrics(gateway), "mlops_gateway_prediction_log_pending_rows") == 30,
                "the outage's rows waiting in the gateway",
            )
            assert pending
            assert _part_files(log_root) == parts, f"the store was still writable ({mechanism})"
        _wait(lambda: len(_logged(log_root)) == 40, "the outage's rows in Parquet once the store is writable")
        after = _send(gateway, 10)
        _wait(lambda: len(_logged(log_root)) == 50, "new rows logged")
        metrics = _metrics(gateway)
    finally:
        gateway.kill()
    _answered_by(before + after, reg.v1)
    _assert_logged_as_answered(before + during + after, _logged(log_root))
    assert _sample(metrics, "mlops_gateway_prediction_log_dropped_rows_total") == 0
    assert _temporary_files(log_root) == []
    assert reg.champion() == reg.v1


def test_batched_mode_keeps_serving_with_a_bounded_counted_loss_when_the_store_is_unwritable(
    reg: Registry, tmp_path: Path
) -> None:
    """Batched mode with the store read-only, then full: every request is answered (200); at most
    ``--max-pending`` rows wait, the oldest beyond are dropped and counted in ``/metrics``; each time the
    store is writable again the waiting rows, and new ones, are logged; no half-written temporary file is
    left behind.

    Without the protection: an unbounded buffer would hold all 12,000 rows of an outage (pending > max,
    dropped 0); a loss not exported would be missing from /metrics; a flush that lost the waiting rows on
    its errors would not log the 10,000 kept; a failed write that left its temporary file would leave one
    per retry on a disk that is already full.
    """
    log_root = tmp_path / "log"
    gateway = _start(reg, log_root, mode="batched", flush=0.2, extra=["--max-pending", str(MAX_PENDING)])
    try:
        before = _send(gateway, 5)
        _wait(lambda: len(_logged(log_root)) == 5, "the first rows in Parquet")
        outages: list[list[Answer]] = []
        for number, fault in enumerate([_read_only(log_root), _file_size_limit(gateway, 0)], start=1):
            logged_before, parts = len(_logged(log_root)), _part_files(log_root)

            def dropped(expected: int = 2_000 * number) -> bool:
                return _sample(_metrics(gateway), "mlops_gateway_prediction_log_dropped_rows_total") == expected

            def kept(expected: int = logged_before + MAX_PENDING) -> bool:
                return len(_logged(log_root)) == expected

            with fault as mechanism:
                during = _send(gateway, 12, batch=1000)  # 12,000 rows, sent in order
                _answered_by(during, reg.v1)
                _wait(dropped, "the rows beyond --max-pending dropped and counted")
                pending = _sample(_metrics(gateway), "mlops_gateway_prediction_log_pending_rows")
                assert pending == MAX_PENDING, (mechanism, pending)
                assert _part_files(log_root) == parts, f"the store was still writable ({mechanism})"
            outages.append(during)
            _wait(kept, "the kept rows logged once the store is writable")
        after = _send(gateway, 5)
        _wait(lambda: len(_logged(log_root)) == 5 + 2 * MAX_PENDING + 5, "new rows logged")
        final = _metrics(gateway)
    finally:
        gateway.kill()
    assert _sample(final, "mlops_gateway_prediction_log_dropped_rows_total") == 4_000
    assert _sample(final, "mlops_gateway_prediction_log_pending_rows") == 0
    _answered_by(before + after, reg.v1)
    # the oldest 2,000 rows of each outage (its first two requests) were dropped, nothing else
    survivors = [answer for during in outages for answer in during[2:]]
    assert set(_logged(log_root)["request_id"]) == _row_ids(before + survivors + after)
    assert _temporary_files(log_root) == []
    assert reg.champion() == reg.v1


# --- 4: a canary that crashes on every call -------------------------------------------------------------------


def test_a_canary_crashing_on_every_call_is_answered_by_the_champion_and_judged_for_rollback(
    reg: Registry, tmp_path: Path
) -> None:
    """The canary (v2) raises on every call: each request routed to it is answered by the champion (200,
    never a 5xx), and its failures are counted against it, per version and role, in ``/metrics`` and in the
    prediction log, which is what the canary check reads: the real check on the logged rows says roll back.

    Without the protection: a canary error that reached the client would be a 5xx here; one not charged to
    the canary (counted as a champion error, or not logged) would leave the canary check at 0 % errors, and
    its decision would pass.
    """
    from fault_matrix_models import CRASH_MESSAGE

    from airflow_mlops.config.loader import load_config
    from airflow_mlops.deploy.health import canary_stats, decide_canary

    log_root = tmp_path / "log"
    reg.target.set_traffic(MODEL, reg.v2, 50.0, actor="test", reason="crashing canary")
    gateway = _start(reg, log_root, mode="batched", flush=0.2)
    try:
        gateway.wait_ready(predicate=lambda r: r["models"][MODEL]["canary"] == reg.v2)
        with Load(gateway, total=200) as load:
            pass
        answers = load.answers
        metrics = _metrics(gateway)
        requests = _sample(metrics, "mlops_gateway_requests_total", model=MODEL, version=reg.v2, role="canary")
        _wait(lambda: len(_logged(log_root)) == 200 + (requests or 0), "every answer and canary failure logged")
    finally:
        gateway.kill()
    assert len(answers) == 200
    _answered_by(answers, reg.v1)  # every request answered by the champion, none by the canary

    def sample(name: str, **labels: str) -> float | None:
        return _sample(metrics, name, model=MODEL, **labels)

    assert requests is not None and requests > 0, "no request was routed to the canary"
    assert sample("mlops_gateway_errors_total", version=reg.v2, role="canary") == requests
    assert sample("mlops_gateway_canary_fallbacks_total", version=reg.v2) == requests
    assert sample("mlops_gateway_requests_total", version=reg.v1, role="champion") == 200
    assert sample("mlops_gateway_errors_total", version=reg.v1, role="champion") == 0

    logged = _logged(log_root)
    _assert_logged_as_answered(answers, logged)
    canary_rows = logged[logged["role"] == "canary"]
    assert len(canary_rows) == requests and set(canary_rows["version"]) == {reg.v2}
    assert canary_rows["error"].str.contains(CRASH_MESSAGE, regex=False).all()

    limits = load_config(Path(__file__).resolve().parents[2] / "dags" / "configs" / "fraud.yaml").config
    stats = canary_stats(logged, None, reg.v2, reg.v1, None)
    decision = decide_canary(stats, limits.rollout.canary, final=False)
    assert (stats.requests, stats.errors, stats.error_rate) == (requests, requests, 1.0)
    assert not decision.passed and decision.reasons[0].startswith("canary error rate 1.0000"), decision
    assert reg.champion() == reg.v1  # the canary was never promoted


# --- 5: MLflow down while serving -----------------------------------------------------------------------------


class MlflowServer:
    """``mlflow server`` over the module's SQLite registry, in its own process group."""

    def __init__(self, db_path: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = workdir / "mlflow-server.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        binary = Path(sys.executable).with_name("mlflow")
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(binary), "server", "--backend-store-uri", f"sqlite:///{db_path}",
                 "--artifacts-destination", str(workdir / "served-artifacts"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            _wait(self._healthy, f"mlflow server on {self.url} healthy", timeout=120)
        except BaseException:
            self.kill()
            raise

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            tail = self._log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"mlflow server exited with {self.proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


class Link:
    """The network between the gateway and the tracking server: a TCP relay on its own port that can be cut.

    ``cut()`` closes the listening socket and every relayed connection, so the gateway's MLflow client
    meets exactly what a dead server gives it (connection refused, or a reset mid-request);
    ``restore()`` listens on the same port again. A relay, not a second ``mlflow server`` start, because
    starting one costs about 15 s on a loaded 2-core machine.
    """

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._upstream = upstream_port
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        assert self._listener is None
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        listener.settimeout(0.1)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and self._thread is not None:
            listener.close()
            self._thread.join(timeout=10)
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream), timeout=10)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_mlflow_down_the_gateway_keeps_serving_its_champion_and_follows_the_registry_once_back(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow becomes unreachable while the gateway serves: predictions continue from the loaded champion
    (200s, no 5xx), ``/ready`` stays 200 with the champion and reports the registry error; an alias moved
    meanwhile (straight in the registry's database) is not served until MLflow is reachable again, and then is.

    The gateway talks to a real ``mlflow server`` through :class:`Link`, which is cut (connection refused,
    open connections reset: what a killed server gives a client) and restored. The gateway's MLflow client
    is told not to retry (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``, a deployment choice) so each poll fails at
    once; with MLflow's default retries a poll takes minutes to fail and ``/ready`` says so later, but
    serving is the same.

    Without the protection: a gateway that read the registry on the request path, or dropped its routing
    table on a failed poll, would answer 5xx (or 503 "no servable champion") while MLflow is down; one that
    stopped polling after errors would never serve v3.
    """
    log_root = tmp_path / "log"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server = MlflowServer(reg.db_path, tmp_path)
    try:
        link = Link(server.port)
        gateway = _start(reg, log_root, mode="batched", flush=0.2, tracking_uri=link.url)
        try:
            _answered_by(_send(gateway, 5), reg.v1)
            link.cut()

            def reports_error() -> dict[str, Any] | None:
                body: dict[str, Any] = httpx.get(f"{gateway.url}/ready", timeout=10).json()
                return body if body["models"][MODEL]["error"] else None

            ready = _wait(reports_error, "/ready to report the registry error")
            assert ready["ready"] is True and ready["models"][MODEL]["champion"] == reg.v1, ready
            assert httpx.get(f"{gateway.url}/ready", timeout=10).status_code == 200

            reg.target.promote(MODEL, reg.v3, actor="test", reason="moved while MLflow is unreachable")
            assert reg.champion() == reg.v3
            with Load(gateway, total=100) as load:
                pass
            assert len(load.answers) == 100
            _answered_by(load.answers, reg.v1)  # the move cannot be seen: the loaded champion serves
            assert reports_error(), "MLflow answered through a cut link"

            link.restore()
            gateway.wait_ready(
                timeout=DEADLINE,
                predicate=lambda r: r["models"][MODEL]["champion"] == reg.v3 and r["models"][MODEL]["error"] is None,
            )
            _answered_by(_send(gateway, 5), reg.v3)
            _wait(lambda: len(_logged(log_root)) == 110, "every answer logged")
        finally:
            gateway.kill()
            link.cut()
    finally:
        server.kill()
    _assert_logged_as_answered(load.answers, _logged(log_root))
