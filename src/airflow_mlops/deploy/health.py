"""Shadow comparison and canary health from prediction-log rows: plain functions, decisions from config.

Rows are the prediction log's columns (request_id, ts, model, version, role, inputs, output,
latency_ms, error). Outputs are JSON objects with ``prediction`` (and ``score`` for classifiers).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import CanaryConfig, ShadowConfig
from airflow_mlops.monitoring.labels import task_of_metric, usable_labels
from airflow_mlops.training.metrics import compute_metric, higher_is_better
from airflow_mlops.vocabulary import Role

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ShadowStats:
    pairs: int
    agreement: float | None
    mean_abs_delta: float | None
    shadow_requests: int
    shadow_error_rate: float
    shadow_latency_p95_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CanaryStats:
    requests: int
    errors: int
    error_rate: float
    latency_p95_ms: float | None
    labelled: int = 0
    champion_labelled: int = 0
    metric: str | None = None
    canary_metric: float | None = None
    champion_metric: float | None = None
    #: Labels left out: not a valid answer for the task, or a later label of an already labelled request.
    invalid_labels: int = 0
    duplicate_labels: int = 0
    #: Why the label metric could not be computed on enough labels (fails the step: fail closed).
    metric_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def _p95(values: Any) -> float | None:
    import numpy as np

    array = np.asarray(values, dtype=float)
    return float(np.percentile(array, 95)) if array.size else None


def _prediction(output: str | None) -> Any:
    if output is None:
        return None
    return json.loads(output).get("prediction")


def _score(output: str | None) -> float | None:
    if output is None:
        return None
    parsed = json.loads(output)
    value = parsed.get("score", parsed.get("prediction"))
    return None if value is None else float(value)


def shadow_stats(rows: pd.DataFrame, champion: str, shadow: str) -> ShadowStats:
    """Pair shadow rows with the champion's answer to the same request id."""
    champ = rows[(rows["role"] == Role.CHAMPION) & (rows["version"] == champion) & rows["error"].isna()]
    shad = rows[(rows["role"] == Role.SHADOW) & (rows["version"] == shadow)]
    errors = int(shad["error"].notna().sum())
    ok = shad[shad["error"].isna()]
    merged = ok.merge(champ, on="request_id", suffixes=("_shadow", "_champion"))
    agreement = delta = None
    if len(merged):
        same = [
            _prediction(a) == _prediction(b)
            for a, b in zip(merged["output_shadow"], merged["output_champion"], strict=True)
        ]
        agreement = sum(same) / len(same)
        deltas = [
            abs(float(_score(a) or 0.0) - float(_score(b) or 0.0))
            for a, b in zip(merged["output_shadow"], merged["output_champion"], strict=True)
        ]
        delta = sum(deltas) / len(deltas)
    return ShadowStats(
        pairs=len(merged),
        agreement=agreement,
        mean_abs_delta=delta,
        shadow_requests=len(shad),
        shadow_error_rate=errors / len(shad) if len(shad) else 0.0,
        shadow_latency_p95_ms=_p95(ok["latency_ms"]),
    )


def decide_shadow(stats: ShadowStats, config: ShadowConfig) -> Decision:
    reasons = []
    if stats.shadow_requests < config.min_requests:
        reasons.append(f"only {stats.shadow_requests} shadow requests (< min_requests {config.min_requests})")
    if stats.shadow_error_rate > config.max_error_rate:
        reasons.append(f"shadow error rate {stats.shadow_error_rate:.4f} > {config.max_error_rate}")
    if stats.agreement is None:
        reasons.append("no shadow answer could be paired with a champion answer")
    elif stats.agreement < config.min_agreement:
        reasons.append(f"agreement with champion {stats.agreement:.4f} < {config.min_agreement}")
    if stats.shadow_latency_p95_ms is not None and stats.shadow_latency_p95_ms > config.max_latency_p95_ms:
        reasons.append(f"shadow latency p95 {stats.shadow_latency_p95_ms:.1f} ms > {config.max_latency_p95_ms} ms")
    return Decision(passed=not reasons, reasons=reasons)


def canary_stats(
    rows: pd.DataFrame, feedback: pd.DataFrame | None, canary: str, champion: str, metric: str | None
) -> CanaryStats:
    """Error rate and latency of the canary; with labels, ``metric`` for canary and champion on their rows."""
    mine = rows[(rows["role"] == Role.CANARY) & (rows["version"] == canary)]
    errors = int(mine["error"].notna().sum())
    stats = CanaryStats(
        requests=len(mine),
        errors=errors,
        error_rate=errors / len(mine) if len(mine) else 0.0,
        latency_p95_ms=_p95(mine.loc[mine["error"].isna(), "latency_ms"]),
        metric=metric,
    )
    if metric is None or feedback is None or feedback.empty:
        return stats
    found = usable_labels(feedback, task_of_metric(metric))
    labels = found.labels
    values: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    failures: list[str] = []
    for role, version in ((Role.CANARY, canary), (Role.CHAMPION, champion)):
        part = rows[(rows["role"] == role) & (rows["version"] == version) & rows["error"].isna()]
        part = part[part["request_id"].isin(labels.index)]
        counts[role] = len(part)
        values[role], error = _label_metric(metric, labels.loc[part["request_id"]].to_numpy(), part["output"])
        if error:
            failures.append(f"{role} v{version}: {error}")
    return CanaryStats(
        **{
            **stats.to_dict(),
            "labelled": counts[Role.CANARY],
            "champion_labelled": counts[Role.CHAMPION],
            "canary_metric": values[Role.CANARY],
            "champion_metric": values[Role.CHAMPION],
            "invalid_labels": found.invalid,
            "duplicate_labels": found.duplicates,
            "metric_error": "; ".join(failures) or None,
        }
    )


def _label_metric(metric: str, y: Any, outputs: pd.Series) -> tuple[float | None, str | None]:
    """``(value, None)``; ``(None, None)`` while the labels cannot define it yet (none, or one class for
    AUC); ``(None, why)`` when it fails on labels that should define it (the step then fails)."""
    import numpy as np

    if len(y) == 0 or (metric == "roc_auc" and len(np.unique(y)) < 2):
        return None, None
    try:
        value = compute_metric(metric, y, _scores(outputs), _labels(outputs))
    except (ValueError, TypeError) as exc:
        return None, f"{metric} could not be computed on {len(y)} labels: {exc}"
    if not math.isfinite(value):
        return None, f"{metric} is {value} on {len(y)} labels"
    return value, None


def _scores(outputs: pd.Series) -> Any:
    import numpy as np

    return np.asarray([_score(o) for o in outputs], dtype=float)


def _labels(outputs: pd.Series) -> Any:
    import numpy as np

    return np.asarray([_prediction(o) for o in outputs])


def decide_canary(stats: CanaryStats, config: CanaryConfig, *, final: bool = True) -> Decision:
    """A breach of any limit fails the step. Before the step's end (``final=False``) error rate and latency
    are judged only once the canary has ``min_requests`` answers, so one early error is not a rollback."""
    reasons: list[str] = []
    if not final and stats.requests < config.min_requests:
        return Decision(passed=True, reasons=reasons)
    if stats.error_rate > config.max_error_rate:
        reasons.append(f"canary error rate {stats.error_rate:.4f} > {config.max_error_rate} ({stats.errors} errors)")
    if stats.latency_p95_ms is not None and stats.latency_p95_ms > config.max_latency_p95_ms:
        reasons.append(f"canary latency p95 {stats.latency_p95_ms:.1f} ms > {config.max_latency_p95_ms} ms")
    enough = min(stats.labelled, stats.champion_labelled) >= config.min_labels
    if stats.metric and enough and stats.metric_error:
        reasons.append(f"canary label check failed: {stats.metric_error}")
    if stats.metric and enough and stats.canary_metric is not None and stats.champion_metric is not None:
        sign = 1.0 if higher_is_better(stats.metric) else -1.0
        drop = sign * (stats.champion_metric - stats.canary_metric)
        if math.isfinite(drop) and drop > config.max_metric_regression + 1e-12:  # float noise at the limit
            reasons.append(
                f"canary {stats.metric} {stats.canary_metric:.4f} trails champion {stats.champion_metric:.4f} "
                f"by more than {config.max_metric_regression}"
            )
    return Decision(passed=not reasons, reasons=reasons)
