"""Deferrable waits of the rollout: the shadow window and each canary step, read from the prediction log.

Both triggers poll the prediction log every ``check_interval`` seconds in the triggerer (no worker
slot is held). The shadow trigger fires once the window has lasted ``duration`` and seen
``min_requests`` shadow answers (or at ``deadline``). The canary trigger fires at the end of the step
— or at the first check that finds a breach, so the operator rolls back within one check interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def _read_window(root: str, conn_id: str | None, model: str, start: float, with_feedback: bool) -> tuple[Any, Any]:
    from airflow_mlops.hooks.object_storage import prediction_log_storage
    from airflow_mlops.prediction_log import read_feedback, read_predictions

    since = datetime.fromtimestamp(start, tz=UTC)
    storage = prediction_log_storage(root, conn_id)
    rows = read_predictions(storage, model, since, None)
    feedback = read_feedback(storage, model, since, None) if with_feedback else None
    return rows, feedback


def _variant_metrics(source: dict[str, Any], version: str, start: float) -> Any:
    """One SageMaker variant's CloudWatch metrics since ``start`` (``source``: the operator's health source)."""
    from airflow_mlops.config.schema import SageMakerOptions
    from airflow_mlops.deploy.cloudwatch import variant_metrics
    from airflow_mlops.deploy.sagemaker import aws_clients, variant_name

    options = SageMakerOptions.model_validate(source)
    (cloudwatch,) = aws_clients(options, "cloudwatch")
    return variant_metrics(
        cloudwatch,
        options.endpoint_name,
        variant_name(version),
        datetime.fromtimestamp(start, tz=UTC),
        datetime.now(tz=UTC),
        latency_stat=options.latency_statistic,
    )


class ShadowWindowTrigger(BaseTrigger):
    """Wait for the shadow window to fill; the event carries the shadow-vs-champion statistics."""

    def __init__(
        self,
        *,
        log_root: str,
        log_conn_id: str | None,
        model: str,
        champion: str,
        shadow: str,
        start: float,
        duration: float,
        min_requests: int,
        deadline: float,
        check_interval: float = 5.0,
        cloudwatch: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.log_root, self.log_conn_id, self.model = log_root, log_conn_id, model
        self.champion, self.shadow = champion, shadow
        self.start, self.duration, self.min_requests = start, duration, min_requests
        self.deadline, self.check_interval = deadline, check_interval
        #: A SageMaker target's options: read the shadow variant's CloudWatch metrics, not the prediction log.
        self.cloudwatch = cloudwatch

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "log_root": self.log_root,
                "log_conn_id": self.log_conn_id,
                "model": self.model,
                "champion": self.champion,
                "shadow": self.shadow,
                "start": self.start,
                "duration": self.duration,
                "min_requests": self.min_requests,
                "deadline": self.deadline,
                "check_interval": self.check_interval,
                "cloudwatch": self.cloudwatch,
            },
        )

    def _stats(self) -> Any:
        from airflow_mlops.deploy.health import shadow_stats

        if self.cloudwatch is not None:
            from airflow_mlops.deploy.cloudwatch import shadow_stats_from_metrics

            return shadow_stats_from_metrics(_variant_metrics(self.cloudwatch, self.shadow, self.start))
        rows, _ = _read_window(self.log_root, self.log_conn_id, self.model, self.start, False)
        return shadow_stats(rows, self.champion, self.shadow)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            now = time.time()
            if now >= self.start + self.duration:
                try:
                    stats = await asyncio.to_thread(self._stats)
                except Exception as exc:  # reported to the operator, which fails closed
                    yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
                    return
                if stats.shadow_requests >= self.min_requests or now >= self.deadline:
                    yield TriggerEvent(
                        {"status": "success", "stats": stats.to_dict(), "timed_out": now >= self.deadline}
                    )
                    return
            await asyncio.sleep(self.check_interval)


class CanaryStepTrigger(BaseTrigger):
    """Watch one canary step; fire early on a breach of the config's limits, else at the end of the step."""

    def __init__(
        self,
        *,
        log_root: str,
        log_conn_id: str | None,
        model: str,
        champion: str,
        canary: str,
        start: float,
        duration: float,
        check_interval: float,
        limits: dict[str, Any],
        metric: str | None,
        classes: dict[str, str | None] | None = None,
        cloudwatch: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.log_root, self.log_conn_id, self.model = log_root, log_conn_id, model
        self.champion, self.canary = champion, canary
        self.start, self.duration, self.check_interval = start, duration, check_interval
        self.limits, self.metric = limits, metric
        #: version -> its ``mlops.classes`` JSON (None: none recorded), read by the operator from the registry
        self.classes = classes
        #: A SageMaker target's options: read the canary variant's CloudWatch metrics, not the prediction log.
        self.cloudwatch = cloudwatch

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "log_root": self.log_root,
                "log_conn_id": self.log_conn_id,
                "model": self.model,
                "champion": self.champion,
                "canary": self.canary,
                "start": self.start,
                "duration": self.duration,
                "check_interval": self.check_interval,
                "limits": self.limits,
                "metric": self.metric,
                "classes": self.classes,
                "cloudwatch": self.cloudwatch,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.config.schema import CanaryConfig
        from airflow_mlops.deploy.health import canary_stats, classes_by_version, decide_canary

        limits = CanaryConfig.model_validate(self.limits)
        try:
            classes = classes_by_version(self.classes)
        except ValueError as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
            return
        while True:
            await asyncio.sleep(min(self.check_interval, max(0.0, self.start + self.duration - time.time())))
            try:
                if self.cloudwatch is not None:
                    from airflow_mlops.deploy.cloudwatch import canary_stats_from_metrics

                    metrics = await asyncio.to_thread(_variant_metrics, self.cloudwatch, self.canary, self.start)
                    stats = canary_stats_from_metrics(metrics, self.metric)
                else:
                    rows, feedback = await asyncio.to_thread(
                        _read_window, self.log_root, self.log_conn_id, self.model, self.start, self.metric is not None
                    )
                    stats = canary_stats(rows, feedback, self.canary, self.champion, self.metric, classes=classes)
            except Exception as exc:
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
                return
            final = time.time() >= self.start + self.duration
            decision = decide_canary(stats, limits, final=final)
            if not decision.passed:
                yield TriggerEvent({"status": "breach", "reasons": decision.reasons, "stats": stats.to_dict()})
                return
            if final:
                yield TriggerEvent({"status": "success", "stats": stats.to_dict()})
                return
