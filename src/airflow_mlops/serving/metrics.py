"""The gateway's Prometheus metrics, rendered in the text exposition format (version 0.0.4).

Five metric families are few enough to write by hand, which keeps ``prometheus_client`` (and its
process-global registry, awkward with several gateways in one test process) out of the
dependencies. ``snapshot`` reads the same counters back as plain data for the deploy DAG's
canary health checks.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from typing import TypedDict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds in seconds; ``+Inf`` is implied."""

_REQUESTS = "mlops_gateway_requests_total"
_ERRORS = "mlops_gateway_errors_total"
_LATENCY = "mlops_gateway_request_latency_seconds"
_REJECTED = "mlops_gateway_rejected_total"
_FALLBACKS = "mlops_gateway_canary_fallbacks_total"


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


def escape_label_value(value: str) -> str:
    """Escape a label value per the exposition format: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{key}="{escape_label_value(value)}"' for key, value in labels.items()) + "}"


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


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
    roles ``champion``/``canary``/``shadow``, rejection reasons); they are escaped, never trusted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._rejected: dict[tuple[str, str], int] = {}
        self._fallbacks: dict[tuple[str, str], int] = {}

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
        """Count a request turned away before any model ran (the 422s)."""
        with self._lock:
            self._rejected[(model, reason)] = self._rejected.get((model, reason), 0) + 1

    def count_fallback(self, model: str, version: str) -> None:
        """Count a request where canary ``version`` failed and the champion answered instead."""
        with self._lock:
            self._fallbacks[(model, version)] = self._fallbacks.get((model, version), 0) + 1

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
        """The text exposition of every metric (serve with ``CONTENT_TYPE``)."""
        with self._lock:
            series = [
                (key, _Series(s.requests, s.errors, s.latency_sum, list(s.bucket_counts)))
                for key, s in sorted(self._series.items(), key=lambda item: item[0])
            ]
            rejected = sorted(self._rejected.items())
            fallbacks = sorted(self._fallbacks.items())
        lines: list[str] = []
        _family(lines, _REQUESTS, "counter", "Prediction requests answered or failed, by model version and role.")
        lines.extend(f"{_REQUESTS}{_labels(model=m, version=v, role=r)} {s.requests}" for (m, v, r), s in series)
        _family(lines, _ERRORS, "counter", "Prediction requests whose model call failed, by model version and role.")
        lines.extend(f"{_ERRORS}{_labels(model=m, version=v, role=r)} {s.errors}" for (m, v, r), s in series)
        _family(lines, _LATENCY, "histogram", "Time spent in the model call, by model version and role.")
        for (m, v, r), s in series:
            _histogram(lines, m, v, r, s)
        _family(lines, _REJECTED, "counter", "Requests rejected before prediction (422), by reason.")
        lines.extend(f"{_REJECTED}{_labels(model=m, reason=reason)} {n}" for (m, reason), n in rejected)
        _family(lines, _FALLBACKS, "counter", "Requests where the canary failed and the champion answered.")
        lines.extend(f"{_FALLBACKS}{_labels(model=m, version=v)} {n}" for (m, v), n in fallbacks)
        return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _histogram(lines: list[str], model: str, version: str, role: str, series: _Series) -> None:
    base = _labels(model=model, version=version, role=role)[1:-1]
    cumulative = 0
    for bound, count in zip((*LATENCY_BUCKETS, math.inf), series.bucket_counts, strict=True):
        cumulative += count
        lines.append(f'{_LATENCY}_bucket{{{base},le="{_number(bound)}"}} {cumulative}')
    lines.append(f"{_LATENCY}_sum{{{base}}} {_number(series.latency_sum)}")
    lines.append(f"{_LATENCY}_count{{{base}}} {series.requests}")
