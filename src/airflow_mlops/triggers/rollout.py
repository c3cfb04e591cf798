"""Deferrable waits of the rollout: the shadow window and each canary step, read from the prediction log.

Both triggers poll the prediction log every ``check_interval`` seconds in the triggerer (no worker
slot is held). The shadow trigger fires once the window has lasted ``duration`` and seen
``min_requests`` shadow answers (or at ``deadline``). The canary trigger fires at the end of the step
— or at the first check that finds a breach, so the operator rolls back within one check interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


def _read_window(root: str, conn_id: str | None, model: str, start: float, with_feedback: bool) -> tuple[Any, Any]:
    from airflow_mlops.hooks.object_storage import prediction_log_storage
    from airflow_mlops.prediction_log import read_feedback, read_predictions

    since = datetime.fromtimestamp(start, tz=UTC)
    storage = prediction_log_storage(root, conn_id)
    rows = read_predictions(storage, model, since, None)
    feedback = read_feedback(storage, model, since, None) if with_feedback else None
    return rows, feedback


def _variants_metrics(source: dict[str, Any], versions: list[str], start: float) -> list[Any]:
    """The SageMaker variants' CloudWatch metrics since ``start``, one client and one window for all
    (``source``: the operator's health source, the target's options)."""
    from airflow_mlops.config.schema import SageMakerOptions
    from airflow_mlops.deploy.cloudwatch import variant_metrics
    from airflow_mlops.deploy.sagemaker import aws_clients, variant_name

    options = SageMakerOptions.model_validate(source)
    (cloudwatch,) = aws_clients(options, "cloudwatch")
    since, until = datetime.fromtimestamp(start, tz=UTC), datetime.now(tz=UTC)
    return [
        variant_metrics(
            cloudwatch,
            options.endpoint_name,
            variant_name(version),
            since,
            until,
            latency_stat=options.latency_statistic,
        )
        for version in versions
    ]


def _settle(source: dict[str, Any] | None) -> float:
    """Seconds a window's last check waits for late metrics: the SageMaker target's ``metrics_delay``, else 0."""
    if source is None:
        return 0.0
    from airflow_mlops.config.schema import SageMakerOptions, parse_duration

    return parse_duration(SageMakerOptions.model_validate(source).metrics_delay).total_seconds()


def _captured_rows(source: dict[str, Any], model: str, roles: dict[str, str], start: float) -> Any:
    """The SageMaker variants' captured requests and answers since ``start`` as prediction-log rows
    (``roles``: version -> the role it serves in)."""
    from airflow_mlops.config.schema import SageMakerOptions
    from airflow_mlops.deploy.sagemaker import aws_clients, variant_name
    from airflow_mlops.prediction_log.capture import CaptureRows, capture_rows, read_capture

    options = SageMakerOptions.model_validate(source)
    if not options.data_capture_s3_uri:
        raise ValueError(f"SageMaker endpoint {options.endpoint_name}: data_capture_s3_uri is not set")
    (s3,) = aws_clients(options, "s3")
    since, until = datetime.fromtimestamp(start, tz=UTC), datetime.now(tz=UTC)
    found = CaptureRows()
    for version, role in roles.items():
        lines = read_capture(
            s3, options.data_capture_s3_uri, options.endpoint_name, variant_name(version), since, until
        )
        capture_rows(lines, model=model, version=version, role=role, start=since, end=until, into=found)
    if found.skipped:
        log.warning("Capture lines of %s left out: %s", options.endpoint_name, found.skipped)
    return found.frame()


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
            from dataclasses import replace

            from airflow_mlops.deploy.cloudwatch import shadow_stats_from_metrics
            from airflow_mlops.vocabulary import Role

            shadow, champion = _variants_metrics(self.cloudwatch, [self.shadow, self.champion], self.start)
            stats = shadow_stats_from_metrics(shadow, baseline=champion)
            if not self.cloudwatch.get("data_capture_s3_uri"):
                return stats  # no answers to compare: the gate fails closed on the missing agreement
            roles = {self.champion: Role.CHAMPION, self.shadow: Role.SHADOW}
            paired = shadow_stats(
                _captured_rows(self.cloudwatch, self.model, roles, self.start), self.champion, self.shadow
            )
            return replace(stats, pairs=paired.pairs, agreement=paired.agreement, mean_abs_delta=paired.mean_abs_delta)
        rows, _ = _read_window(self.log_root, self.log_conn_id, self.model, self.start, False)
        return shadow_stats(rows, self.champion, self.shadow)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            settle = _settle(self.cloudwatch)
        except ValueError as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
            return
        while True:
            now = time.time()
            if now >= self.start + self.duration + settle:
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

    def _cloudwatch_stats(self) -> Any:
        """The canary's stats from CloudWatch, its 4xx judged against the champion's share in the same window."""
        from airflow_mlops.deploy.cloudwatch import canary_stats_from_metrics

        assert self.cloudwatch is not None
        canary, champion = _variants_metrics(self.cloudwatch, [self.canary, self.champion], self.start)
        return canary_stats_from_metrics(canary, self.metric, baseline=champion)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.config.schema import CanaryConfig
        from airflow_mlops.deploy.health import canary_stats, classes_by_version, decide_canary

        limits = CanaryConfig.model_validate(self.limits)
        try:
            classes = classes_by_version(self.classes)
            settle = _settle(self.cloudwatch)
        except ValueError as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
            return
        end = self.start + self.duration + settle
        while True:
            await asyncio.sleep(min(self.check_interval, max(0.0, end - time.time())))
            try:
                if self.cloudwatch is not None:
                    stats = await asyncio.to_thread(self._cloudwatch_stats)
                else:
                    rows, feedback = await asyncio.to_thread(
                        _read_window, self.log_root, self.log_conn_id, self.model, self.start, self.metric is not None
                    )
                    stats = canary_stats(rows, feedback, self.canary, self.champion, self.metric, classes=classes)
            except Exception as exc:
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
                return
            final = time.time() >= end
            decision = decide_canary(stats, limits, final=final)
            if final and self.cloudwatch is not None and stats.requests < limits.min_requests:
                # CloudWatch may not have the step at all (late or missing metrics): no evidence is not health
                reason = (
                    f"only {stats.requests} canary invocations in CloudWatch (< min_requests {limits.min_requests})"
                )
                decision = type(decision)(passed=False, reasons=[*decision.reasons, reason])
            if not decision.passed:
                yield TriggerEvent({"status": "breach", "reasons": decision.reasons, "stats": stats.to_dict()})
                return
            if final:
                yield TriggerEvent({"status": "success", "stats": stats.to_dict()})
                return
