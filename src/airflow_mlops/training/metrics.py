"""Held-out metrics by name, shared by training (what we log) and gates (what we compare)."""

from __future__ import annotations

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
    if metric in ("rmse", "mae", "r2"):
        if metric == "rmse":
            return float(np.sqrt(m.mean_squared_error(y, scores)))
        if metric == "mae":
            return float(m.mean_absolute_error(y, scores))
        return float(m.r2_score(y, scores))
    hard = labels if labels is not None else (np.asarray(scores) >= 0.5).astype(y.dtype)
    if metric == "roc_auc":
        if len(np.unique(y)) < 2:
            raise ValueError("roc_auc is undefined when the rows hold a single class")
        return float(m.roc_auc_score(y, scores))
    if metric == "log_loss":
        return float(m.log_loss(y, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1]))
    if metric == "accuracy":
        return float(m.accuracy_score(y, hard))
    if metric == "f1":
        return float(m.f1_score(y, hard, zero_division=0))
    if metric == "precision":
        return float(m.precision_score(y, hard, zero_division=0))
    if metric == "recall":
        return float(m.recall_score(y, hard, zero_division=0))
    raise ValueError(f"unknown metric {metric!r}")


def compute_metrics(
    metrics: list[str], y_true: Any, scores: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    return {name: compute_metric(name, y_true, scores, labels) for name in metrics}
