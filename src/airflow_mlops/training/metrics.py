"""Held-out metrics by name, shared by training (what we log) and gates, canary and monitor (what we compare).

Classification metrics score a :class:`~airflow_mlops.training.classes.ClassSet`'s answers: ``scores`` are the
positive class's probabilities (two classes) or the probability matrix in class order (more classes), and
``labels`` the hard answers. The names are in :mod:`airflow_mlops.config.schema` (``CLASSIFICATION_METRICS``,
per-class ``recall.<class>``...), which also says which need exactly two classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import BINARY_METRICS, LOWER_IS_BETTER, per_class_metric
from airflow_mlops.training.classes import LEGACY, ClassSet

if TYPE_CHECKING:
    import numpy as np


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def metric_problem(metric: str, classes: ClassSet) -> str | None:
    """Why ``metric`` cannot score a classifier of ``classes`` (``None`` when it can), said before training ends."""
    if metric in BINARY_METRICS and not classes.binary:
        averaged = "roc_auc_ovr" if metric == "roc_auc" else f"{metric}_macro, {metric}_weighted or {metric}.<class>"
        return f"{metric!r} needs two classes and the target has {len(classes.classes)}; use {averaged}"
    named = per_class_metric(metric)
    if named is not None and classes.find(named[1]) is None:
        return f"{metric!r} names class {named[1]!r}, which is not one of {list(classes.classes)[:20]}"
    return None


def compute_metric(
    metric: str, y_true: Any, scores: np.ndarray, labels: np.ndarray | None = None, classes: ClassSet | None = None
) -> float:
    """One metric. ``scores``: see the module docstring (regression: the predictions).

    ``labels`` are the hard class predictions; derived from ``scores`` if omitted. ``classes`` defaults to the
    0/1 models of before classes were recorded. Raises ``ValueError`` when the metric is undefined on these rows
    (e.g. AUC with one class) or does not fit the classes.
    """
    import numpy as np
    from sklearn import metrics as m

    scores = np.asarray(scores)
    if metric in _REGRESSION:
        return float(_REGRESSION[metric](m, np, np.asarray(y_true, dtype=float), scores))
    classes = classes or LEGACY
    problem = metric_problem(metric, classes)
    if problem:
        raise ValueError(problem)
    y = classes.labels(y_true)
    hard = classes.labels(labels) if labels is not None else classes.hard(scores)
    if scores.ndim == 2 and classes.binary:
        scores = scores[:, classes.positive_index]
    if metric in _ON_SCORES:
        return float(_ON_SCORES[metric](m, np, y, scores, classes))
    named = per_class_metric(metric)
    if named is not None:
        kind, name = named
        fn = {"precision": m.precision_score, "recall": m.recall_score, "f1": m.f1_score}[kind]
        return float(fn(y, hard, labels=classes.labels([classes.find(name)]), average=None, zero_division=0)[0])
    if metric not in _ON_LABELS:
        raise ValueError(f"unknown metric {metric!r}")
    return float(_ON_LABELS[metric](m, y, hard, classes))


def _binary_truth(y: Any, classes: ClassSet) -> Any:
    import numpy as np

    return np.asarray(y == classes.labels([classes.positive])[0], dtype=int)


def _roc_auc(m: Any, np: Any, y: Any, s: Any, classes: ClassSet, **options: Any) -> float:
    if len(np.unique(y)) < 2:
        raise ValueError("roc_auc is undefined when the rows hold a single class")
    if s.ndim == 1:
        return float(m.roc_auc_score(_binary_truth(y, classes), s))
    return float(m.roc_auc_score(y, s, labels=classes.labels(classes.classes), **options))


def _log_loss(m: Any, np: Any, y: Any, s: Any, classes: ClassSet) -> float:
    if s.ndim == 1:
        return float(m.log_loss(_binary_truth(y, classes), np.clip(s, 1e-15, 1 - 1e-15), labels=[0, 1]))
    return float(m.log_loss(y, np.clip(s, 1e-15, 1.0), labels=classes.labels(classes.classes)))


_REGRESSION: dict[str, Any] = {
    "rmse": lambda m, np, y, s: np.sqrt(m.mean_squared_error(y, s)),
    "mae": lambda m, np, y, s: m.mean_absolute_error(y, s),
    "r2": lambda m, np, y, s: m.r2_score(y, s),
}
# metric -> f(sklearn.metrics, numpy, y_true, scores, classes)
_ON_SCORES: dict[str, Any] = {
    "roc_auc": _roc_auc,
    "roc_auc_ovr": lambda m, np, y, s, c: _roc_auc(m, np, y, s, c, multi_class="ovr", average="macro"),
    "roc_auc_ovr_weighted": lambda m, np, y, s, c: _roc_auc(m, np, y, s, c, multi_class="ovr", average="weighted"),
    "roc_auc_ovo": lambda m, np, y, s, c: _roc_auc(m, np, y, s, c, multi_class="ovo", average="macro"),
    "log_loss": _log_loss,
}


def _averaged(name: str, average: str) -> Any:
    def score(m: Any, y: Any, hard: Any, classes: ClassSet) -> float:
        fn = getattr(m, f"{name}_score")
        return float(fn(y, hard, labels=classes.labels(classes.classes), average=average, zero_division=0))

    return score


def _binary(name: str) -> Any:
    def score(m: Any, y: Any, hard: Any, classes: ClassSet) -> float:
        fn = getattr(m, f"{name}_score")
        return float(fn(_binary_truth(y, classes), _binary_truth(hard, classes), zero_division=0))

    return score


# metric -> f(sklearn.metrics, y_true, hard labels, classes)
_ON_LABELS: dict[str, Any] = {
    "accuracy": lambda m, y, hard, c: m.accuracy_score(y, hard),
    "balanced_accuracy": lambda m, y, hard, c: m.balanced_accuracy_score(y, hard),
    **{name: _binary(name) for name in ("f1", "precision", "recall")},
    **{
        f"{name}_{average}": _averaged(name, average)
        for name in ("f1", "precision", "recall")
        for average in ("macro", "weighted", "micro")
    },
}


def compute_metrics(
    metrics: list[str],
    y_true: Any,
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    classes: ClassSet | None = None,
) -> dict[str, float]:
    return {name: compute_metric(name, y_true, scores, labels, classes) for name in metrics}
