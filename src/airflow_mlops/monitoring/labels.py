"""Delayed labels from the outside: which ones are usable, one per request, and how many were refused.

Feedback reaches the prediction log from clients (the gateway's ``/feedback``), so every reader that
scores answers against labels (canary health, the monitor's live performance) takes them through
:func:`usable_labels`: the *first* label of a request wins (a later one cannot rewrite history), and a
label that is not a valid answer for the task — a class the model does not have, a probability, a
string, NaN — is left out and counted instead of making the metric undefined and the check silently
skipped. The gateway refuses such labels with :func:`label_problem` before they are logged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from airflow_mlops.config.schema import is_classification_metric
from airflow_mlops.training.classes import LEGACY, same_label

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BINARY_CLASSES", "LabelSet", "label_problem", "task_of_metric", "usable_labels"]

#: The classes of classifiers trained before classes were recorded (:data:`~airflow_mlops.training.classes.LEGACY`).
BINARY_CLASSES: Final[tuple[Any, ...]] = LEGACY.classes


def task_of_metric(metric: str) -> str:
    """``"classification"`` or ``"regression"``: which task's labels ``metric`` scores."""
    return "classification" if is_classification_metric(metric) else "regression"


def label_problem(value: Any, task: str, classes: Sequence[Any] = BINARY_CLASSES) -> str | None:
    """Why ``value`` (a decoded JSON label) is not a valid label for ``task``; ``None`` when it is.

    Classification: one of ``classes`` (compared as JSON values: ``1`` is not ``"1"``, ``true`` is not
    ``1``; ``true`` is a label only of a model whose classes are booleans). Regression: a finite number (not a
    boolean).
    """
    if task == "classification":
        if not any(same_label(value, c) for c in classes):
            return f"expected one of the model's classes {list(classes)[:20]}, got {value!r}"[:500]
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    return None


@dataclass(frozen=True)
class LabelSet:
    """The usable labels by request id, and what was left out."""

    labels: pd.Series
    invalid: int = 0
    duplicates: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"labelled": len(self.labels), "invalid_labels": self.invalid, "duplicate_labels": self.duplicates}


def usable_labels(feedback: pd.DataFrame, task: str, classes: Sequence[Any] = BINARY_CLASSES) -> LabelSet:
    """One label per request id — the first logged (``feedback`` is in ``ts`` order) — valid for ``task``.

    A request whose first label is invalid has no usable label (a valid label after it does not count:
    first wins whatever it says).
    """
    import pandas as pd

    if feedback.empty:
        return LabelSet(pd.Series(dtype=object))
    first = feedback.drop_duplicates("request_id", keep="first")
    keep: dict[str, Any] = {}
    invalid = 0
    for request_id, text in zip(first["request_id"], first["label"], strict=True):
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            invalid += 1
            continue
        if label_problem(value, task, classes) is not None:
            invalid += 1
            continue
        keep[str(request_id)] = value
    labels = pd.Series(keep) if keep else pd.Series(dtype=object)  # ints stay ints: sklearn reads their type
    return LabelSet(labels, invalid=invalid, duplicates=len(feedback) - len(first))
