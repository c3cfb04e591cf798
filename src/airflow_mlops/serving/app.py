"""The gateway's ASGI app: predict, feedback, health, readiness and Prometheus metrics.

Request path: parse JSON -> pick champion or canary (by request id) -> check inputs against that
version's MLflow signature (422 naming the field) -> predict. If the canary fails, the champion
answers and the failure is counted against the canary. A shadow version gets a copy of the request
on a separate worker thread after the response is ready: its output is logged, never returned, and
its errors or slowness never change the client's response. Every answered record is appended to the
prediction log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from airflow_mlops.serving.metrics import GatewayMetrics
from airflow_mlops.serving.models import LoadedModel, ModelCache, output_json
from airflow_mlops.serving.prediction_log import FeedbackRecord, PredictionLog, PredictionRecord
from airflow_mlops.serving.routing import choose_role
from airflow_mlops.serving.signature import InputError
from airflow_mlops.serving.state import RegistryWatcher

log = logging.getLogger(__name__)


@dataclass
class GatewaySettings:
    models: list[str]
    max_batch: int = 1000
    #: Shadow requests waiting beyond this are dropped (and counted): the shadow never builds backpressure.
    shadow_queue: int = 1000


@dataclass(frozen=True)
class _ShadowJob:
    model: str
    version: str
    request_id: str
    payload: Any
    raw_inputs: list[str]


class Gateway:
    """Everything the routes need; owns the watcher, the prediction log and the shadow worker."""

    def __init__(self, settings: GatewaySettings, cache: ModelCache, watcher: RegistryWatcher, plog: PredictionLog):
        self.settings = settings
        self.cache = cache
        self.watcher = watcher
        self.plog = plog
        self.metrics = GatewayMetrics()
        self._shadow_jobs: queue.Queue[_ShadowJob | None] = queue.Queue(maxsize=settings.shadow_queue)
        self._shadow_thread = threading.Thread(target=self._shadow_worker, name="mlops-shadow", daemon=True)
        self.shadow_dropped = 0

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.plog.start()
        self.watcher.start()
        self._shadow_thread.start()

    def stop(self) -> None:
        self.watcher.stop()
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
        role = choose_role(request_id, routing.canary_percent, routing.canary is not None)
        version = routing.canary if role == "canary" and routing.canary else routing.champion
        try:
            outputs, served_version, served_role, raw_inputs = self._answer(
                model, version, role, routing.champion, payload, request_id
            )
        except InputError as exc:
            self.metrics.count_rejected(model, "invalid_input")
            return 422, {"detail": exc.problems, "request_id": request_id}
        if routing.shadow and routing.shadow not in (served_version,):
            self._enqueue_shadow(_ShadowJob(model, routing.shadow, request_id, payload, raw_inputs))
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

        Inputs are always checked against the champion's signature first: that is the contract
        clients rely on, so a 422 never depends on which version the request was routed to.
        """
        champion_model = self._loaded(model, champion)
        frame = champion_model.schema.validate(payload, max_batch=self.settings.max_batch)
        raw_inputs = _raw_inputs(payload)
        if role == "canary":
            started = time.perf_counter()
            try:
                canary_model = self._loaded(model, version)
                canary_frame = (
                    frame
                    if canary_model.schema == champion_model.schema
                    else canary_model.schema.validate(payload, max_batch=self.settings.max_batch)
                )
                outputs = canary_model.predict(canary_frame)
            except Exception as exc:  # the champion answers; the failure counts against the canary
                latency = time.perf_counter() - started
                self.metrics.observe(model, version, role, latency, error=True)
                self.metrics.count_fallback(model, version)
                self._log(model, version, role, request_id, raw_inputs, None, latency, f"{type(exc).__name__}: {exc}")
                log.warning("Canary %s v%s failed request %s: %s; champion answers", model, version, request_id, exc)
            else:
                latency = time.perf_counter() - started
                self.metrics.observe(model, version, role, latency, error=False)
                self._log(model, version, role, request_id, raw_inputs, outputs, latency, None)
                return outputs, version, role, raw_inputs
        started = time.perf_counter()
        try:
            outputs = champion_model.predict(frame)
        except Exception as exc:
            latency = time.perf_counter() - started
            self.metrics.observe(model, champion, "champion", latency, error=True)
            self._log(
                model, champion, "champion", request_id, raw_inputs, None, latency, f"{type(exc).__name__}: {exc}"
            )
            raise
        latency = time.perf_counter() - started
        self.metrics.observe(model, champion, "champion", latency, error=False)
        self._log(model, champion, "champion", request_id, raw_inputs, outputs, latency, None)
        return outputs, champion, "champion", raw_inputs

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
        now = datetime.now(UTC)
        per_row = latency * 1000.0
        records = [
            PredictionRecord(
                request_id=_row_id(request_id, i, len(raw_inputs)),
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
        self.plog.append(records)

    # shadow ------------------------------------------------------------------------------------
    def _enqueue_shadow(self, job: _ShadowJob) -> None:
        try:
            self._shadow_jobs.put_nowait(job)
        except queue.Full:
            self.shadow_dropped += 1

    def _shadow_worker(self) -> None:
        while True:
            job = self._shadow_jobs.get()
            if job is None:
                return
            started = time.perf_counter()
            try:
                loaded = self._loaded(job.model, job.version)
                outputs: list[dict[str, Any]] | None = loaded.predict(
                    loaded.schema.validate(job.payload, max_batch=self.settings.max_batch)
                )
                error = None
            except Exception as exc:  # never reaches a client
                outputs, error = None, f"{type(exc).__name__}: {exc}"
            latency = time.perf_counter() - started
            self.metrics.observe(job.model, job.version, "shadow", latency, error=error is not None)
            self._log(job.model, job.version, "shadow", job.request_id, job.raw_inputs, outputs, latency, error)

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
        if model not in self.settings.models:
            return 404, {"detail": f"unknown model {model!r}"}
        items = payload.get("feedback") if isinstance(payload, dict) and "feedback" in payload else [payload]
        if not isinstance(items, list) or not items:
            return 422, {
                "detail": [{"loc": ["body"], "msg": "expected {'request_id', 'label'} or {'feedback': [...]}"}]
            }
        problems = []
        records = []
        now = datetime.now(UTC)
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("request_id"), str) or not item["request_id"]:
                problems.append({"loc": ["feedback", i, "request_id"], "msg": "expected a non-empty string"})
                continue
            if "label" not in item:
                problems.append({"loc": ["feedback", i, "label"], "msg": "field required"})
                continue
            records.append(FeedbackRecord(item["request_id"], now, model, json.dumps(item["label"])))
        if problems:
            return 422, {"detail": problems}
        self.plog.append_feedback(records)
        return 200, {"recorded": len(records)}


def _raw_inputs(payload: Any) -> list[str]:
    records = payload["records"]
    rows = records if isinstance(records, list) else [records]
    return [json.dumps(row, separators=(",", ":"), allow_nan=True) for row in rows]


def _row_id(request_id: str, index: int, count: int) -> str:
    """A single record keeps the request id; record ``i`` of a batch is ``<request id>#<i>``."""
    return request_id if count == 1 else f"{request_id}#{index}"


async def _json_body(request: Request) -> tuple[Any, Response | None]:
    body = await request.body()
    try:
        return json.loads(body), None
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        return None, JSONResponse({"detail": [{"loc": ["body"], "msg": f"body is not valid JSON: {exc}"}]}, 422)


def create_app(gateway: Gateway) -> Starlette:
    async def predict(request: Request) -> Response:
        model = request.path_params["model"]
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if model not in gateway.settings.models:  # before counting anything under a client-chosen label
            return JSONResponse(
                {"detail": f"unknown model {model!r}", "request_id": request_id},
                status_code=404,
                headers={"x-request-id": request_id},
            )
        payload, error = await _json_body(request)
        if error is not None:
            gateway.metrics.count_rejected(model, "invalid_json")
            return error
        if gateway.plog.mode == "strict":  # each append waits for fsync: keep the event loop free meanwhile
            status, body = await asyncio.to_thread(gateway.predict, model, payload, request_id)
        else:
            status, body = gateway.predict(model, payload, request_id)
        return JSONResponse(body, status_code=status, headers={"x-request-id": request_id})

    async def feedback(request: Request) -> Response:
        payload, error = await _json_body(request)
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

    routes: list[Route] = [
        Route("/v1/models/{model}/predict", _safe(predict), methods=["POST"]),
        Route("/v1/models/{model}/feedback", _safe(feedback), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _safe(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Turn an unexpected exception into a 503 with the request id instead of a bare 500 (and log it)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            log.exception("Unhandled error on %s", request.url.path)
            return JSONResponse({"detail": f"gateway error: {type(exc).__name__}"}, status_code=503)

    return wrapped
