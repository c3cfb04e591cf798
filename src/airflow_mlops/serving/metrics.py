"""The gateway's Prometheus metrics: our own counters, exposed through ``prometheus_client``.

Counting stays in plain Python (one lock, a few integer adds per request: the live path pays almost
nothing); ``prometheus_client`` renders the exposition (escaping, number formatting, histogram
buckets) from a collector over those counters, one ``CollectorRegistry`` per gateway, so several
gateways in one process never share series. ``snapshot`` reads the same counters back as plain
data.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypedDict

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds in seconds; ``+Inf`` is implied."""

_REQUESTS = "mlops_gateway_requests"
_ERRORS = "mlops_gateway_errors"
_LATENCY = "mlops_gateway_request_latency_seconds"
_REJECTED = "mlops_gateway_rejected"
_FALLBACKS = "mlops_gateway_canary_fallbacks"
_FEEDBACK = "mlops_gateway_feedback"
_REFUSED = "mlops_gateway_refused_inputs"
_SHADOW_DROPPED = "mlops_gateway_shadow_dropped"
_LOG_DROPPED = "mlops_gateway_prediction_log_dropped_rows"
_LOG_PENDING = "mlops_gateway_prediction_log_pending_rows"
_SERIES_LABELS = ["model", "version", "role"]


class LogCounts(Protocol):
    """What the metrics read from the gateway's prediction log (a ``PredictionLog``)."""

    @property
    def dropped_rows(self) -> int: ...

    @property
    def pending_rows(self) -> int: ...


class SeriesSnapshot(TypedDict):
    """Counters of one (model, version, role) since the gateway started."""

    requests: int
    errors: int
    error_rate: float
    p95_seconds: float | None


@dataclass
class _Series:
    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))  # not cumulative


def estimate_quantile(q: float, bucket_counts: list[int]) -> float | None:
    """Prometheus' ``histogram_quantile``: interpolate linearly inside the bucket holding the q-th observation.

    ``bucket_counts`` are per bucket (not cumulative), one per ``LATENCY_BUCKETS`` entry plus +Inf.
    An observation beyond the last finite bound is reported as that bound, as Prometheus does.
    """
    total = sum(bucket_counts)
    if total == 0:
        return None
    rank = q * total
    cumulative = 0
    for index, count in enumerate(bucket_counts):
        if count and cumulative + count >= rank:
            if index == len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            lower = LATENCY_BUCKETS[index - 1] if index else 0.0
            return lower + (LATENCY_BUCKETS[index] - lower) * (rank - cumulative) / count
        cumulative += count
    return LATENCY_BUCKETS[-1]  # unreachable for 0 < q <= 1; keeps mypy and rounding honest


class GatewayMetrics:
    """Thread-safe counters and latency histograms of one gateway process.

    Label values are whatever the gateway passes (model names from config, registry versions,
    roles ``champion``/``canary``/``shadow``, rejection reasons); the exposition escapes them.

    :param prediction_log: the gateway's prediction log, whose waiting and dropped rows are exported (read
        at each scrape), so a store that stays down is visible before and while rows are lost.
    """

    def __init__(self, prediction_log: LogCounts | None = None) -> None:
        self._prediction_log = prediction_log
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._rejected: dict[tuple[str, str], int] = {}
        self._fallbacks: dict[tuple[str, str], int] = {}
        self._feedback: dict[tuple[str, str], int] = {}
        self._refused: dict[tuple[str, str, str], int] = {}
        self._shadow_dropped: dict[str, int] = {}
        #: this gateway's own registry (never prometheus_client's process-global REGISTRY)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def observe(self, model: str, version: str, role: str, latency_seconds: float, error: bool) -> None:
        """Count one answered (or failed) prediction and its latency."""
        if not latency_seconds >= 0.0:  # also NaN
            raise ValueError(f"latency_seconds: got {latency_seconds!r}; expected a duration >= 0")
        index = bisect.bisect_left(LATENCY_BUCKETS, latency_seconds)  # first bound with value <= le
        key = (model, version, role)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            series.requests += 1
            series.errors += bool(error)
            series.latency_sum += latency_seconds
            series.bucket_counts[index] += 1

    def count_rejected(self, model: str, reason: str) -> None:
        """Count a request turned away before any model ran (the 422s): ``invalid_input`` (its signature),
        ``unknown_category`` (a category the champion refuses), or the body's problem (``invalid_json`` ...)."""
        with self._lock:
            self._rejected[(model, reason)] = self._rejected.get((model, reason), 0) + 1

    def count_refused(self, model: str, version: str, role: str) -> None:
        """Count a request ``version`` did not predict because it refuses the input (an unseen category).

        A client error, never a model error: the champion's refusal is a 422, a canary's leaves the answer to
        the champion, a shadow's skips the copy. Kept apart from ``errors`` so no client can drive those up.
        """
        key = (model, version, role)
        with self._lock:
            self._refused[key] = self._refused.get(key, 0) + 1

    def count_shadow_dropped(self, model: str) -> None:
        """Count a request not mirrored to the shadow: its queue was full or its worker down."""
        with self._lock:
            self._shadow_dropped[model] = self._shadow_dropped.get(model, 0) + 1

    def shadow_dropped(self, model: str | None = None) -> int:
        """Requests not mirrored, for ``model`` or all models."""
        with self._lock:
            return self._shadow_dropped.get(model, 0) if model else sum(self._shadow_dropped.values())

    def count_fallback(self, model: str, version: str) -> None:
        """Count a request where canary ``version`` failed and the champion answered instead."""
        with self._lock:
            self._fallbacks[(model, version)] = self._fallbacks.get((model, version), 0) + 1

    def count_feedback(self, model: str, outcome: str, count: int = 1) -> None:
        """Count labels by outcome: ``recorded``, ``duplicate`` (refused: first wins) or ``invalid``."""
        if count:
            with self._lock:
                self._feedback[(model, outcome)] = self._feedback.get((model, outcome), 0) + count

    def snapshot(self, model: str) -> dict[str, dict[str, SeriesSnapshot]]:
        """``{version: {role: {requests, errors, error_rate, p95_seconds}}}`` for ``model``; JSON-safe."""
        with self._lock:
            copies = [
                (version, role, s.requests, s.errors, list(s.bucket_counts))
                for (name, version, role), s in self._series.items()
                if name == model
            ]
        out: dict[str, dict[str, SeriesSnapshot]] = {}
        for version, role, requests, errors, buckets in sorted(copies):
            out.setdefault(version, {})[role] = SeriesSnapshot(
                requests=requests,
                errors=errors,
                error_rate=errors / requests if requests else 0.0,
                p95_seconds=estimate_quantile(0.95, buckets),
            )
        return out

    def render(self) -> str:
        """The text exposition (format 0.0.4) of every metric; serve it with ``CONTENT_TYPE``."""
        return generate_latest(self.registry).decode("utf-8")

    def collect(self) -> Iterator[Metric]:
        """The ``prometheus_client`` collector protocol: a consistent copy of every family."""
        with self._lock:
            series = [
                (key, _Series(s.requests, s.errors, s.latency_sum, list(s.bucket_counts)))
                for key, s in sorted(self._series.items(), key=lambda item: item[0])
            ]
            rejected = sorted(self._rejected.items())
            fallbacks = sorted(self._fallbacks.items())
            feedback = sorted(self._feedback.items())
            refused = sorted(self._refused.items())
            shadow_dropped = sorted(self._shadow_dropped.items())
        requests = CounterMetricFamily(
            _REQUESTS, "Prediction requests answered or failed, by model version and role.", labels=_SERIES_LABELS
        )
        errors = CounterMetricFamily(
            _ERRORS, "Prediction requests whose model call failed, by model version and role.", labels=_SERIES_LABELS
        )
        latency = HistogramMetricFamily(
            _LATENCY, "Time spent in the model call, by model version and role.", labels=_SERIES_LABELS
        )
        for labels, s in series:
            requests.add_metric(list(labels), s.requests)
            errors.add_metric(list(labels), s.errors)
            latency.add_metric(list(labels), _cumulative_buckets(s.bucket_counts), s.latency_sum)
        rejections = CounterMetricFamily(
            _REJECTED, "Requests rejected before prediction (422), by reason.", labels=["model", "reason"]
        )
        for (model, reason), count in rejected:
            rejections.add_metric([model, reason], count)
        fallback_family = CounterMetricFamily(
            _FALLBACKS, "Requests where the canary failed and the champion answered.", labels=["model", "version"]
        )
        for (model, version), count in fallbacks:
            fallback_family.add_metric([model, version], count)
        feedback_family = CounterMetricFamily(
            _FEEDBACK,
            "Labels posted to /feedback, by outcome: recorded, duplicate (refused, first wins), invalid.",
            labels=["model", "outcome"],
        )
        for (model, outcome), count in feedback:
            feedback_family.add_metric([model, outcome], count)
        refused_family = CounterMetricFamily(
            _REFUSED,
            "Requests a version did not predict because it refuses their input (a category it never saw): "
            "client errors, not model errors. Champion: answered 422; canary: the champion answered; shadow: skipped.",
            labels=_SERIES_LABELS,
        )
        for labels, count in refused:
            refused_family.add_metric(list(labels), count)
        shadow_family = CounterMetricFamily(
            _SHADOW_DROPPED,
            "Requests not mirrored to the shadow because its bounded queue was full (or its worker down): the "
            "shadow drops copies rather than slow the live path.",
            labels=["model"],
        )
        for model, count in shadow_dropped:
            shadow_family.add_metric([model], count)
        yield from (
            requests,
            errors,
            latency,
            rejections,
            fallback_family,
            feedback_family,
            refused_family,
            shadow_family,
        )
        if self._prediction_log is not None:
            yield CounterMetricFamily(
                _LOG_DROPPED,
                "Prediction-log rows dropped, oldest first, because the log's store stayed down with the "
                "most rows allowed (--max-pending) waiting in memory (batched mode).",
                value=self._prediction_log.dropped_rows,
            )
            yield GaugeMetricFamily(
                _LOG_PENDING,
                "Prediction-log rows not in the log's store yet: waiting in memory, or being written.",
                value=self._prediction_log.pending_rows,
            )


def _cumulative_buckets(bucket_counts: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip((*LATENCY_BUCKETS, math.inf), bucket_counts, strict=True):
        cumulative += count
        out.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
    return out
