"""The shadow version, predicted in its own process so the live path never pays for the mirror.

A mirrored request crosses to a child process (``spawn``) through a bounded queue: when the queue is full
the copy is dropped and counted (``mlops_gateway_shadow_dropped_total``), so the shadow never builds
backpressure on clients. The child runs at the lowest CPU priority the OS offers (``SCHED_IDLE`` on Linux,
else ``nice 19``): on a busy machine it gets only the CPU the live path leaves over. It loads the shadow
version through its own :class:`~airflow_mlops.serving.models.ModelCache` (the same checksum and signature
checks), answers queued requests in batches (one model call per version), writes its rows to the same
prediction log root with its own writer, and sends each request's latency and outcome back to the gateway's
metrics. Only a share of requests is mirrored (``shadow_share``, chosen by a hash of the request id so a
replica mirrors the same requests).

The child ignores SIGINT and SIGTERM (the gateway stops it once it has drained its own requests: a ``None``
on the queue, then its log is flushed), is killed by the kernel when the gateway dies (``PR_SET_PDEATHSIG``),
and is restarted by the gateway if it dies on its own; copies queued to a dead child are lost. At
``SCHED_IDLE`` a saturated machine may give the child no CPU at all: the queue then fills and every further
copy is dropped and counted, which is the point (the live path keeps the CPU).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.prediction_log import PredictionRecord
from airflow_mlops.vocabulary import Role

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess

    from airflow_mlops.prediction_log import PredictionLog
    from airflow_mlops.serving.models import ModelCache

log = logging.getLogger(__name__)

__all__ = ["ShadowJob", "ShadowProcess", "ShadowWorkerOptions", "mirrored", "prediction_records", "row_id"]

#: (model, version, latency seconds, error) of one shadow request, as the child reports it.
Observation = tuple[str, str, float, bool]


@dataclass(frozen=True)
class ShadowJob:
    """One mirrored request: what the child needs to predict and log it (records as the JSON clients sent)."""

    model: str
    version: str
    request_id: str
    raw_inputs: list[str]


@dataclass(frozen=True)
class ShadowWorkerOptions:
    """How the child reaches the registry and the prediction log (picklable: it crosses ``spawn``)."""

    tracking_uri: str
    registry_uri: str | None
    log_root: str
    log_conn_id: str | None = None
    flush_interval: float = 1.0
    #: The child's own spill folder (batched log), apart from the gateway's.
    wal_dir: str | None = None
    max_pending: int = 100_000
    max_batch: int = 1000
    #: Queued requests answered by one model call.
    batch: int = 64


def mirrored(request_id: str, share: float) -> bool:
    """Whether ``request_id`` is mirrored at ``share`` (0..1): a hash, so every replica picks the same ones."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    return zlib.crc32(request_id.encode("utf-8", "surrogatepass")) < share * 2**32


def row_id(request_id: str, index: int, count: int) -> str:
    """A single record keeps the request id; record ``i`` of a batch is ``<request id>#<i>``."""
    return request_id if count == 1 else f"{request_id}#{index}"


def prediction_records(
    model: str,
    version: str,
    role: str,
    request_id: str,
    raw_inputs: list[str],
    outputs: list[dict[str, Any]] | None,
    latency: float,
    error: str | None,
) -> list[PredictionRecord]:
    """The prediction-log rows of one request (one per record), as every role writes them."""
    from airflow_mlops.serving.models import output_json

    now = datetime.now(UTC)
    per_row = latency * 1000.0
    return [
        PredictionRecord(
            request_id=row_id(request_id, i, len(raw_inputs)),
            ts=now,
            model=model,
            version=version,
            role=role,
            inputs=raw,
            output=None if outputs is None else output_json(outputs[i]),
            latency_ms=per_row,
            error=error,
        )
        for i, raw in enumerate(raw_inputs)
    ]


class ShadowPredictor:
    """Predict and log shadow jobs: the child's work, also usable in-process (tests, ``--shadow-mode thread``).

    The latency recorded is the model call's, as on the live path: loading a version and checking inputs are not
    part of it. ``clock`` measures it: wall time on a thread of the gateway; CPU time in the shadow process,
    whose wall time at idle priority measures how busy the machine is, not how slow the model is (the shadow
    gate's ``max_latency_p95_ms`` must judge the model).
    """

    def __init__(
        self, cache: ModelCache, plog: PredictionLog, *, max_batch: int, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.cache = cache
        self.plog = plog
        self.max_batch = max_batch
        self.clock = clock

    def run(self, jobs: list[ShadowJob]) -> list[Observation]:
        groups: dict[tuple[str, str], list[ShadowJob]] = {}
        for job in jobs:
            groups.setdefault((job.model, job.version), []).append(job)
        observations: list[Observation] = []
        for group in groups.values():
            observations += self._batch(group)
        return observations

    def _loaded(self, model: str, version: str) -> Any:
        loaded = self.cache.get(model, version)
        return loaded if loaded is not None else self.cache.load(model, version)

    def _batch(self, jobs: list[ShadowJob]) -> list[Observation]:
        """Predict ``jobs`` (same version) together; if that fails, one by one so each error lands on its request.

        The latency logged for each request is the whole batch's.
        """
        if len(jobs) > 1:
            try:
                loaded = self._loaded(jobs[0].model, jobs[0].version)
                rows = [json.loads(raw) for job in jobs for raw in job.raw_inputs]
                validated = loaded.schema.validate({"records": rows}, max_batch=len(rows))
                started = self.clock()
                outputs = loaded.predict(validated)
                latency = self.clock() - started
            except Exception:  # retried per request below, where each error is logged
                pass
            else:
                observations: list[Observation] = []
                start = 0
                for job in jobs:
                    end = start + len(job.raw_inputs)
                    part = outputs[start:end]
                    self.plog.append(self._rows(job, part, latency, None))
                    observations.append((job.model, job.version, latency, False))
                    start = end
                return observations
        return [self._one(job) for job in jobs]

    @staticmethod
    def _rows(job: ShadowJob, outputs: list[dict[str, Any]] | None, latency: float, error: str | None) -> list[Any]:
        return prediction_records(
            job.model, job.version, Role.SHADOW, job.request_id, job.raw_inputs, outputs, latency, error
        )

    def _one(self, job: ShadowJob) -> Observation:
        latency = 0.0
        outputs: list[dict[str, Any]] | None = None
        try:
            loaded = self._loaded(job.model, job.version)
            records = [json.loads(raw) for raw in job.raw_inputs]
            validated = loaded.schema.validate({"records": records}, max_batch=self.max_batch)
            started = self.clock()
            try:
                outputs = loaded.predict(validated)
            finally:
                latency = self.clock() - started
            error = None
        except Exception as exc:  # never reaches a client
            outputs, error = None, f"{type(exc).__name__}: {exc}"
        self.plog.append(self._rows(job, outputs, latency, error))
        return (job.model, job.version, latency, error is not None)


def _lowest_priority() -> str:
    """Run this process only on CPU nobody else wants: ``SCHED_IDLE`` (Linux), else the highest niceness."""
    sched_idle = getattr(os, "SCHED_IDLE", None)
    if sched_idle is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, sched_idle, os.sched_param(0))
            return "SCHED_IDLE"
    with contextlib.suppress(OSError):
        os.nice(19 - os.nice(0))
    return f"nice {os.nice(0)}"


def _die_with_parent(parent: int) -> None:
    """Be killed by the kernel when the gateway dies (Linux ``PR_SET_PDEATHSIG``).

    Checking the parent from the loop is not enough: at ``SCHED_IDLE`` on a busy machine the worker may get
    no CPU to notice. Elsewhere the loop's check is all there is.
    """
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(0)


def _worker_main(options: ShadowWorkerOptions, jobs: Any, results: Any, parent: int) -> None:
    """The child: predict and log mirrored requests until a ``None`` arrives or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent)
    priority = _lowest_priority()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from airflow_mlops.hooks.object_storage import prediction_log_storage
    from airflow_mlops.prediction_log import PredictionLog
    from airflow_mlops.serving.models import ModelCache

    client = mlflow.MlflowClient(
        tracking_uri=options.tracking_uri, registry_uri=options.registry_uri or options.tracking_uri
    )
    plog = PredictionLog(
        prediction_log_storage(options.log_root, options.log_conn_id),
        mode="batched",
        flush_interval=options.flush_interval,
        wal_dir=options.wal_dir,
        max_pending=options.max_pending,
    )
    predictor = ShadowPredictor(ModelCache(client), plog, max_batch=options.max_batch, clock=time.process_time)
    plog.start()
    log.info("Shadow worker %s running at %s", os.getpid(), priority)
    try:
        while True:
            try:
                job = jobs.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # the gateway died (kill -9): do not linger as an orphan
                    return
                continue
            if job is None:
                return
            batch, stop = [job], False
            while len(batch) < options.batch:
                try:
                    more = jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            results.put(predictor.run(batch))
            if stop:
                return
    finally:
        plog.close()


class ShadowProcess:
    """The gateway's side: a bounded queue into the shadow process, its observations back into the metrics.

    :param observe: called with ``(model, version, latency_seconds, error)`` per shadow request.
    :param dropped: called with the model of a copy that was not mirrored (queue full, worker down).
    """

    def __init__(
        self,
        options: ShadowWorkerOptions,
        *,
        queue_size: int,
        observe: Callable[[str, str, float, bool], None],
        dropped: Callable[[str], None],
    ) -> None:
        self.options = options
        self.queue_size = queue_size
        self._observe = observe
        self._dropped = dropped
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._jobs: Any = None
        self._results: Any = None
        self._process: SpawnProcess | None = None
        self._stopping = threading.Event()
        self._drainer = threading.Thread(target=self._drain, name="mlops-shadow-results", daemon=True)
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The shadow worker's process id (None before it started)."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def alive(self) -> bool:
        process = self._process
        return process is not None and process.is_alive()

    def start(self) -> None:
        self._spawn()
        self._drainer.start()

    def _spawn(self) -> None:
        # Fresh queues for every child: one that died holding a queue's lock would hang its successor.
        jobs, results = self._ctx.Queue(maxsize=self.queue_size), self._ctx.Queue()
        process = self._ctx.Process(
            target=_worker_main, args=(self.options, jobs, results, os.getpid()), name="mlops-shadow", daemon=True
        )
        process.start()
        with self._lock:
            self._jobs, self._results, self._process = jobs, results, process

    def submit(self, job: ShadowJob) -> bool:
        """Queue a copy for the shadow; ``False`` (counted as dropped) when the queue is full or the worker down."""
        with self._lock:
            jobs, process = self._jobs, self._process
        if jobs is None or process is None or not process.is_alive() or self._stopping.is_set():
            self._dropped(job.model)
            return False
        try:
            jobs.put_nowait(job)
        except queue.Full:
            self._dropped(job.model)
            return False
        return True

    def _drain(self) -> None:
        """Hand the child's observations to the metrics; restart the child if it died on its own."""
        while True:
            with self._lock:
                results, process = self._results, self._process
            try:
                batch = results.get(timeout=0.5)
            except queue.Empty:
                batch = None
            except (EOFError, OSError):  # the queue of a child that is gone
                batch = None
            for model, version, latency, error in batch or ():
                self._observe(model, version, latency, error)
            if batch is not None:
                continue
            if self._stopping.is_set():
                if process is None or not process.is_alive():
                    return
                continue
            if process is not None and not process.is_alive():
                self.restarts += 1
                log.error("Shadow worker exited (%s); restarting it (restart %d)", process.exitcode, self.restarts)
                self._spawn()

    def stop(self, timeout: float = 20.0) -> None:
        """Let the child finish what is queued and flush its log, then wait for it (terminate beyond ``timeout``)."""
        self._stopping.set()
        with self._lock:
            jobs, process = self._jobs, self._process
        if process is not None and process.is_alive():
            with contextlib.suppress(queue.Full, OSError, ValueError):
                jobs.put(None, timeout=timeout)
            process.join(timeout)
            if process.is_alive():
                log.error("Shadow worker did not stop in %s s; terminating it", timeout)
                process.kill()
                process.join(5)
        if self._drainer.is_alive():
            self._drainer.join(timeout=5)
