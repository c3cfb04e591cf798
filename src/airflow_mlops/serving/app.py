"""The gateway's ASGI app: predict, feedback, health, readiness and Prometheus metrics.

Request path: parse JSON -> pick champion or canary (by request id) -> check inputs against the
champion's MLflow signature (422 naming the field) -> check categories against the version routed to
-> predict. If the canary fails, the champion answers and the failure is counted against the canary.
A shadow version gets a copy of the request after the response is ready, predicted in its own process
at the lowest CPU priority (:mod:`airflow_mlops.serving.shadow`; or on a thread, ``shadow_worker=None``):
its output is logged, never returned, and its errors or slowness never change the client's response.
Every answered record is appended to the prediction log.

A category the champion never saw, when it refuses those (``unknown_categories: error``, see
:mod:`airflow_mlops.serving.categories`), is the client's input, not the model failing: 422 naming the
field, the value and the categories it knows, counted in ``mlops_gateway_refused_inputs_total`` and
never a 5xx. A canary or shadow that refuses a category the champion answers is still charged with an
error (counted as refused too): live traffic it cannot serve is what its health check must see. With
the canary split keyed by a server secret, a client cannot aim such rows at the canary.

Listeners: :func:`create_app` builds every route on one app, or the public routes (predict, feedback,
``/health``) and the admin routes (``/ready``, ``/metrics``, ``/health``) apart, which
:class:`ByListener` serves on two ports of one server sharing one :class:`Gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_mlops.monitoring.labels import label_problem
from airflow_mlops.prediction_log import FeedbackRecord, PredictionLog
from airflow_mlops.serving.batching import Coalescer
from airflow_mlops.serving.categories import KnownCategories, UnknownCategoryError, known_categories
from airflow_mlops.serving.guard import Admission, ApiKeys, BodyLimit, RateLimiter, read_json
from airflow_mlops.serving.metrics import GatewayMetrics
from airflow_mlops.serving.models import LoadedModel, ModelCache
from airflow_mlops.serving.routing import choose_role
from airflow_mlops.serving.shadow import (
    ShadowJob,
    ShadowPredictor,
    ShadowProcess,
    ShadowWorkerOptions,
    mirrored,
    prediction_records,
)
from airflow_mlops.serving.signature import InputError
from airflow_mlops.serving.state import RegistryWatcher
from airflow_mlops.vocabulary import Role

log = logging.getLogger(__name__)

#: A Starlette lifespan: the gateway's start and stop around serving.
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]

#: How many labelled requests (per gateway) are remembered to refuse a second label for one of them
#: (about 40 MB at most); older duplicates are still ignored by the readers, which keep the first label.
LABELLED_MEMORY = 200_000


@dataclass
class GatewaySettings:
    models: list[str]
    max_batch: int = 1000
    #: API keys required on /predict and /feedback (none: open); see :mod:`airflow_mlops.serving.guard`.
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    #: Per-client token bucket (None: no limit).
    rate_limit: RateLimiter | None = None
    #: Request bodies beyond this many bytes are refused (413) before they are parsed.
    max_body_bytes: int = 1 << 20
    #: Keys the canary split's hash, so a client cannot choose its variant through ``x-request-id``.
    #: Random per process by default; give replicas the same key so they split alike.
    routing_key: bytes = field(default_factory=lambda: os.urandom(32))
    #: Shadow requests waiting beyond this are dropped (and counted): the shadow never builds backpressure.
    shadow_queue: int = 1000
    #: The shadow worker answers up to this many queued requests with one model call.
    shadow_batch: int = 64
    #: Share (0..1) of live requests mirrored to the shadow (by a hash of the request id).
    shadow_share: float = 1.0
    #: Run the shadow in its own process with these options; None: on a thread of this process.
    shadow_worker: ShadowWorkerOptions | None = None


class Gateway:
    """Everything the routes need; owns the watcher, the prediction log and the shadow worker."""

    def __init__(self, settings: GatewaySettings, cache: ModelCache, watcher: RegistryWatcher, plog: PredictionLog):
        self.settings = settings
        self.cache = cache
        self.watcher = watcher
        self.plog = plog
        self.metrics = GatewayMetrics(prediction_log=plog)
        self._shadow_process: ShadowProcess | None = None
        self._shadow_jobs: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=settings.shadow_queue)
        self._shadow_thread: threading.Thread | None = None
        if settings.shadow_worker is not None:
            self._shadow_process = ShadowProcess(
                settings.shadow_worker,
                queue_size=settings.shadow_queue,
                observe=lambda model, version, latency, error: self.metrics.observe(
                    model, version, Role.SHADOW, latency, error=error
                ),
                dropped=self.metrics.count_shadow_dropped,
            )
        else:
            self._shadow_thread = threading.Thread(target=self._shadow_worker, name="mlops-shadow", daemon=True)
        self._coalescers: dict[tuple[str, str], Coalescer] = {}
        self._coalescers_lock = threading.Lock()
        self._labelled: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._labelled_lock = threading.Lock()
        #: per (model, version): a version's artifacts are checksum-verified, so a reload has the same categories
        self._known_categories: dict[tuple[str, str], KnownCategories] = {}

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.plog.start()
        self.watcher.start()
        if self._shadow_process is not None:
            self._shadow_process.start()
        elif self._shadow_thread is not None:
            self._shadow_thread.start()

    def stop(self) -> None:
        self.watcher.stop()
        if self._shadow_process is not None:
            self._shadow_process.stop()
        elif self._shadow_thread is not None and self._shadow_thread.is_alive():
            self._shadow_jobs.put(None)
            self._shadow_thread.join(timeout=10)
        self.plog.close()

    # predict -----------------------------------------------------------------------------------
    def predict(self, model: str, payload: Any, request_id: str) -> tuple[int, dict[str, Any]]:
        routing = self.watcher.routing(model)
        if routing is None or routing.champion is None:
            known = model in self.settings.models
            return (503 if known else 404), {
                "detail": f"model {model!r} has no servable champion yet" if known else f"unknown model {model!r}",
                "request_id": request_id,
            }
        role = choose_role(request_id, routing.canary_percent, routing.canary is not None, self.settings.routing_key)
        version = routing.canary if role == Role.CANARY and routing.canary else routing.champion
        try:
            outputs, served_version, served_role, raw_inputs = self._answer(
                model, version, role, routing.champion, payload, request_id
            )
        except InputError as exc:
            reason = "unknown_category" if isinstance(exc, UnknownCategoryError) else "invalid_input"
            self.metrics.count_rejected(model, reason)
            return 422, {"detail": exc.problems, "request_id": request_id}
        if routing.shadow and routing.shadow != served_version and mirrored(request_id, self.settings.shadow_share):
            self._enqueue_shadow(ShadowJob(model, routing.shadow, request_id, raw_inputs))
        return 200, {
            "model": model,
            "model_version": served_version,
            "role": served_role,
            "request_id": request_id,
            "predictions": outputs,
        }

    def _answer(
        self, model: str, version: str, role: str, champion: str, payload: Any, request_id: str
    ) -> tuple[list[dict[str, Any]], str, str, list[str]]:
        """Predict with ``version``; a failing canary (bad load, schema or prediction) falls back to the champion.

        Inputs are always checked against the champion's signature first: that is the contract clients rely
        on, so a 422 for a field's type or presence never depends on which version the request was routed to.
        A category the champion refuses is a 422; one only the canary refuses is the canary's error (the
        champion answers).
        """
        champion_model = self._loaded(model, champion)
        champion_model.schema.validate(payload, max_batch=self.settings.max_batch)
        raw_inputs = _raw_inputs(payload)
        if role == Role.CANARY:
            answered = self._canary_answer(model, version, champion_model, payload, request_id, raw_inputs)
            if answered is not None:
                return answered, version, role, raw_inputs
        try:
            self._categories(champion_model).check(payload)
        except InputError:
            self.metrics.count_refused(model, champion, Role.CHAMPION)
            raise
        started = time.perf_counter()
        try:
            outputs, latency = self._model_call(champion_model, payload)
        except Exception as exc:
            latency = time.perf_counter() - started
            self.metrics.observe(model, champion, Role.CHAMPION, latency, error=True)
            self._log(
                model, champion, Role.CHAMPION, request_id, raw_inputs, None, latency, f"{type(exc).__name__}: {exc}"
            )
            raise
        self.metrics.observe(model, champion, Role.CHAMPION, latency, error=False)
        self._log(model, champion, Role.CHAMPION, request_id, raw_inputs, outputs, latency, None)
        return outputs, champion, Role.CHAMPION, raw_inputs

    def _canary_answer(
        self,
        model: str,
        version: str,
        champion_model: LoadedModel,
        payload: Any,
        request_id: str,
        raw_inputs: list[str],
    ) -> list[dict[str, Any]] | None:
        """The canary's outputs, or ``None`` for the champion to answer.

        A failure (load, signature, a category it refuses, prediction) is the canary's: counted as its error
        and a fallback, and logged (a refused category is counted as refused too).
        """
        started = time.perf_counter()
        try:
            canary_model = self._loaded(model, version)
            if canary_model.schema != champion_model.schema:
                canary_model.schema.validate(payload, max_batch=self.settings.max_batch)
            try:
                self._categories(canary_model).check(payload)
            except InputError:
                self.metrics.count_refused(model, version, Role.CANARY)
                raise
            outputs, latency = self._model_call(canary_model, payload)
        except Exception as exc:  # the champion answers; the failure counts against the canary
            latency = time.perf_counter() - started
            self.metrics.observe(model, version, Role.CANARY, latency, error=True)
            self.metrics.count_fallback(model, version)
            error = f"{type(exc).__name__}: {exc}"
            self._log(model, version, Role.CANARY, request_id, raw_inputs, None, latency, error)
            log.warning("Canary %s v%s failed request %s: %s; champion answers", model, version, request_id, exc)
            return None
        self.metrics.observe(model, version, Role.CANARY, latency, error=False)
        self._log(model, version, Role.CANARY, request_id, raw_inputs, outputs, latency, None)
        return outputs

    def _categories(self, loaded: LoadedModel) -> KnownCategories:
        """The categories ``loaded`` refuses new values of, read once per loaded version."""
        key = (loaded.model, loaded.version)
        known = self._known_categories.get(key)
        if known is None:  # no reference to the model kept: a retired version's estimator can be freed
            known = self._known_categories[key] = known_categories(loaded.estimator)  # a race: computed twice
        return known

    def _model_call(self, loaded: LoadedModel, payload: Any) -> tuple[list[dict[str, Any]], float]:
        """Predict ``payload`` (validated for ``loaded``) together with concurrent requests to it.

        Returns the outputs and the seconds of the model call that produced them (not the wait for it),
        which is what the latency metrics and the prediction log record, as before batching.
        """
        key = (loaded.model, loaded.version)
        coalescer = self._coalescers.get(key)
        if coalescer is None:
            with self._coalescers_lock:
                coalescer = self._coalescers.setdefault(key, Coalescer(loaded, self.settings.max_batch))
        return coalescer.predict(_records_of(payload))

    def _loaded(self, model: str, version: str) -> LoadedModel:
        loaded = self.cache.get(model, version)
        return loaded if loaded is not None else self.cache.load(model, version)

    def _log(
        self,
        model: str,
        version: str,
        role: str,
        request_id: str,
        raw_inputs: list[str],
        outputs: list[dict[str, Any]] | None,
        latency: float,
        error: str | None,
    ) -> None:
        self.plog.append(prediction_records(model, version, role, request_id, raw_inputs, outputs, latency, error))

    # shadow ------------------------------------------------------------------------------------
    def _enqueue_shadow(self, job: ShadowJob) -> None:
        if self._shadow_process is not None:
            self._shadow_process.submit(job)  # counts what it drops
            return
        try:
            self._shadow_jobs.put_nowait(job)
        except queue.Full:
            self.metrics.count_shadow_dropped(job.model)

    def _shadow_worker(self) -> None:
        """The in-process shadow (``shadow_worker=None``): drain the queue in batches, one model call per version.

        A model call costs about the same for 1 row as for 64 (scikit-learn's per-call overhead dominates), so
        batching keeps the shadow's CPU, and its pull on the GIL, small; its own process removes that pull.
        """
        predictor = ShadowPredictor(self.cache, self.plog, max_batch=self.settings.max_batch)
        while True:
            job = self._shadow_jobs.get()
            if job is None:
                return
            jobs, stop = [job], False
            while len(jobs) < self.settings.shadow_batch:
                try:
                    more = self._shadow_jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            for model, version, latency, error in predictor.run(jobs):
                self.metrics.observe(model, version, Role.SHADOW, latency, error=error)
            if stop:
                return

    # readiness ---------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Each model's routing table; ready when every model has a servable champion."""
        models = {}
        for model in self.settings.models:
            routing = self.watcher.routing(model)
            models[model] = {
                "champion": routing.champion if routing else None,
                "canary": routing.canary if routing else None,
                "canary_percent": routing.canary_percent if routing else 0.0,
                "shadow": routing.shadow if routing else None,
                "error": self.watcher.status.errors.get(model),
            }
        return all(m["champion"] is not None for m in models.values()), models

    # feedback ----------------------------------------------------------------------------------
    def feedback(self, model: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """Log delayed labels: each must be a valid answer for the champion's task (its classes, or a finite
        number), and the first label of a request wins — a later one is refused and counted, so a client
        cannot rewrite the labels a canary or the monitor is judged by."""
        if model not in self.settings.models:
            return 404, {"detail": f"unknown model {model!r}"}
        items = payload.get("feedback") if isinstance(payload, dict) and "feedback" in payload else [payload]
        if not isinstance(items, list) or not items:
            return 422, {
                "detail": [{"loc": ["body"], "msg": "expected {'request_id', 'label'} or {'feedback': [...]}"}]
            }
        judge = self._label_judge(model)
        if judge is None:
            return 503, {"detail": f"{model} has no champion loaded yet; labels cannot be checked, retry later"}
        task, classes = judge
        problems = []
        labels: list[tuple[str, Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("request_id"), str) or not item["request_id"]:
                problems.append({"loc": ["feedback", i, "request_id"], "msg": "expected a non-empty string"})
                continue
            if "label" not in item:
                problems.append({"loc": ["feedback", i, "label"], "msg": "field required"})
                continue
            problem = label_problem(item["label"], task, classes)
            if problem is not None:
                problems.append({"loc": ["feedback", i, "label"], "msg": problem})
                continue
            labels.append((item["request_id"], item["label"]))
        if problems:
            self.metrics.count_feedback(model, "invalid", len(items))
            return 422, {"detail": problems}
        fresh, duplicates = self._first_labels(model, labels)
        now = datetime.now(UTC)
        self.plog.append_feedback([FeedbackRecord(rid, now, model, json.dumps(label)) for rid, label in fresh])
        self.metrics.count_feedback(model, "recorded", len(fresh))
        self.metrics.count_feedback(model, "duplicate", len(duplicates))
        body: dict[str, Any] = {"recorded": len(fresh)}
        if duplicates:
            body["duplicates"] = duplicates
            body["detail"] = "a request keeps its first label; later labels are refused"
        return (409 if duplicates and not fresh else 200), body

    def _label_judge(self, model: str) -> tuple[str, tuple[Any, ...]] | None:
        """The champion's task and classes, which a label must fit; ``None`` while no champion is loaded."""
        routing = self.watcher.routing(model)
        if routing is None or routing.champion is None:
            return None
        loaded = self.cache.get(model, routing.champion)
        return (loaded.task, loaded.classes) if loaded is not None else None

    def _first_labels(self, model: str, labels: list[tuple[str, Any]]) -> tuple[list[tuple[str, Any]], list[str]]:
        """Split into labels of requests not labelled before and the refused duplicates (first wins).

        Remembers the last ``LABELLED_MEMORY`` labelled requests; the readers keep the first label too, so
        an older duplicate (or one logged by another gateway replica) never replaces the first either.
        """
        fresh: list[tuple[str, Any]] = []
        duplicates: list[str] = []
        with self._labelled_lock:
            for request_id, label in labels:
                key = (model, request_id)
                if key in self._labelled:
                    duplicates.append(request_id)
                    continue
                self._labelled[key] = None
                fresh.append((request_id, label))
            while len(self._labelled) > LABELLED_MEMORY:
                self._labelled.popitem(last=False)
        return fresh, duplicates


def _records_of(payload: Any) -> list[Any]:
    """The records of a validated body: ``{"records": [...]}`` or ``{"records": {...}}``."""
    records = payload["records"]
    return records if isinstance(records, list) else [records]


def _raw_inputs(payload: Any) -> list[str]:
    return [json.dumps(row, separators=(",", ":"), allow_nan=True) for row in _records_of(payload)]


#: Why a body was refused, by status, for ``mlops_gateway_rejected_total{reason}``.
_BODY_REFUSALS = {413: "body_too_large", 415: "not_json_content_type", 422: "invalid_json"}


#: Which routes an app serves: every route on one listener, or the public or admin half of two.
Listener = Literal["all", "public", "admin"]


def create_app(gateway: Gateway, routes: Listener = "all", *, lifespan: Lifespan | None = None) -> Starlette:
    """The gateway's ASGI app.

    ``routes="public"``: predict and feedback (behind the API keys and the rate limit) and ``/health``;
    ``"admin"``: ``/ready``, ``/metrics`` and ``/health``, never behind the keys (scrapers and probes have
    none; the admin listener is protected by where it listens); ``"all"``: both, on one listener. A route
    an app does not serve answers 404. ``/health`` (liveness: ``{"status": "ok"}``, nothing else) is on
    both, for a load balancer that probes the public port.
    """
    settings = gateway.settings
    limit = BodyLimit(settings.max_body_bytes)
    admit = Admission(settings.api_keys, settings.rate_limit).refuse

    async def predict(request: Request) -> Response:
        model = request.path_params["model"]
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if model not in gateway.settings.models:  # before counting anything under a client-chosen label
            return JSONResponse(
                {"detail": f"unknown model {model!r}", "request_id": request_id},
                status_code=404,
                headers={"x-request-id": request_id},
            )
        payload, error = await read_json(request, limit)
        if error is not None:
            gateway.metrics.count_rejected(model, _BODY_REFUSALS.get(error.status_code, "invalid_body"))
            return error
        # On a worker thread: requests that arrive while a model call runs join the next call (dynamic
        # batching), and strict mode's fsync does not block the event loop.
        status, body = await run_in_threadpool(gateway.predict, model, payload, request_id)
        return JSONResponse(body, status_code=status, headers={"x-request-id": request_id})

    async def feedback(request: Request) -> Response:
        payload, error = await read_json(request, limit)
        if error is not None:
            return error
        status, body = await asyncio.to_thread(gateway.feedback, request.path_params["model"], payload)
        return JSONResponse(body, status_code=status)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        ok, models = gateway.readiness()
        return JSONResponse({"ready": ok, "models": models}, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    public = [
        Route("/v1/models/{model}/predict", _safe(predict, admit), methods=["POST"]),
        Route("/v1/models/{model}/feedback", _safe(feedback, admit), methods=["POST"]),
    ]
    admin = [Route("/ready", ready, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    served = {"all": [*public, *admin], "public": public, "admin": admin}[routes]
    return Starlette(routes=[*served, Route("/health", health, methods=["GET"])], lifespan=lifespan)


class ByListener:
    """One ASGI app for two listeners of one server: a connection accepted on ``admin_port`` reaches
    ``admin``, any other ``public``.

    The port is the local one of the socket the connection arrived on (ASGI ``scope["server"]``, set by
    the server from the socket, not from anything the client sends); a connection without one goes to
    ``public``, which holds no admin route. The lifespan (gateway start and stop) is ``public``'s.
    """

    def __init__(self, public: ASGIApp, admin: ASGIApp, admin_port: int) -> None:
        self.public = public
        self.admin = admin
        self.admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") if scope["type"] != "lifespan" else None
        on_admin = server is not None and len(server) > 1 and server[1] == self.admin_port
        await (self.admin if on_admin else self.public)(scope, receive, send)


def _safe(
    handler: Callable[[Request], Awaitable[Response]], admit: Callable[[Request], Response | None]
) -> Callable[[Request], Awaitable[Response]]:
    """Refuse what ``admit`` refuses (401, 429) before the handler runs; turn an unexpected exception into a
    503 instead of a bare 500 (and log it)."""

    async def wrapped(request: Request) -> Response:
        refused = admit(request)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except Exception as exc:
            log.exception("Unhandled error on %s", request.url.path)
            return JSONResponse({"detail": f"gateway error: {type(exc).__name__}"}, status_code=503)

    return wrapped
