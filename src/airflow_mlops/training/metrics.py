"""Held-out metrics by name, shared by training (what we log) and gates (what we compare)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import LOWER_IS_BETTER

if TYPE_CHECKING:
    import numpy as np


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def compute_metric(metric: str, y_true: Any, scores: np.ndarray, labels: np.ndarray | None = None) -> float:
    """One metric. ``scores`` are positive-class probabilities (classification) or predictions (regression).

    ``labels`` are the hard class predictions (classification); derived from ``scores >= 0.5`` if omitted.
    Raises ``ValueError`` when the metric is undefined on these rows (e.g. AUC with one class).
    """
    import numpy as np
    from sklearn import metrics as m

    y = np.asarray(y_true)
    scores = np.asarray(scores)
    if metric in _ON_SCORES:
        if metric == "roc_auc" and len(np.unique(y)) < 2:
            raise ValueError("roc_auc is undefined when the rows hold a single class")
        return float(_ON_SCORES[metric](m, np, y, scores))
    if metric in _ON_LABELS:
        hard = labels if labels is not None else (scores >= 0.5).astype(y.dtype)
        return float(
            _ON_LABELS[metric](m)(y, hard, zero_division=0) if metric != "accuracy" else m.accuracy_score(y, hard)
        )
    raise ValueError(f"unknown metric {metric!r}")


# metric -> f(sklearn.metrics, numpy, y_true, scores)
_ON_SCORES: dict[str, Callable[[Any, Any, Any, Any], float]] = {
    "rmse": lambda m, np, y, s: np.sqrt(m.mean_squared_error(y, s)),
    "mae": lambda m, np, y, s: m.mean_absolute_error(y, s),
    "r2": lambda m, np, y, s: m.r2_score(y, s),
    "roc_auc": lambda m, np, y, s: m.roc_auc_score(y, s),
    "log_loss": lambda m, np, y, s: m.log_loss(y, np.clip(s, 1e-15, 1 - 1e-15), labels=[0, 1]),
}
# metric -> the sklearn.metrics function over hard labels
_ON_LABELS: dict[str, Callable[[Any], Any]] = {
    "accuracy": lambda m: m.accuracy_score,
    "f1": lambda m: m.f1_score,
    "precision": lambda m: m.precision_score,
    "recall": lambda m: m.recall_score,
}


def compute_metrics(
    metrics: list[str], y_true: Any, scores: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    return {name: compute_metric(name, y_true, scores, labels) for name in metrics}
