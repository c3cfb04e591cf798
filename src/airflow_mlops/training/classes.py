"""The classes a classifier answers: learned from the training data, recorded with the version, read back
by everything that scores its answers (gates, gateway, shadow, canary, monitor).

A classifier's classes are whatever its training target held — integers, strings or booleans — in
scikit-learn's order (``classes_``). Binary models keep the answer they always had, ``{"prediction", "score"}``
with ``score`` the probability of the *positive* class (``positive_class`` in the config; by default the
second class in that order: ``1``, ``True`` or the later label). Models with more classes answer
``{"prediction", "probabilities": {class: probability}}``. Versions trained before classes were recorded
are the 0/1 binary models they were (:data:`LEGACY`).

Cheap to import: no numpy at module level.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from airflow_mlops.exceptions import DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["LEGACY", "MAX_RECORDED_CHARS", "ClassSet", "class_key", "plain_label", "same_label"]

#: The longest JSON the classes may take: what an MLflow model-version tag value holds.
MAX_RECORDED_CHARS: Final = 5000


def same_label(value: Any, cls: Any) -> bool:
    """Whether a JSON value is the class ``cls``: ``1`` is not ``"1"``, ``true`` is not ``1``, ``1.0`` is ``1``."""
    if isinstance(cls, bool) or isinstance(value, bool):
        return type(value) is type(cls) and value == cls
    if isinstance(cls, int | float) and isinstance(value, int | float):
        return bool(value == cls)
    return type(value) is type(cls) and value == cls


def class_key(cls: Any) -> str:
    """The class as a JSON object key: a string class is itself, any other its JSON text (``1``, ``true``)."""
    return cls if isinstance(cls, str) else json.dumps(cls)


def plain_label(value: Any) -> Any:
    """A numpy scalar as the Python value JSON writes (``np.int64(1)`` -> ``1``, ``np.str_`` -> ``str``)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # a target read as float because of the file format (1.0) is the class 1
    return value


def _find(classes: Sequence[Any], value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = plain_label(value)
    for c in classes:
        if same_label(value, c):
            return c
    text = str(value)
    for c in classes:
        if text == class_key(c) or (isinstance(c, bool) and text.lower() == class_key(c)):
            return c
    return None


@dataclass(frozen=True)
class ClassSet:
    """The classes of one classifier, in its ``classes_`` order, and the positive class when there are two."""

    classes: tuple[Any, ...]
    positive: Any = None

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise DataError(f"a classifier needs at least two classes; got {list(self.classes)}")
        if self.binary and not any(same_label(self.positive, c) for c in self.classes):
            raise DataError(f"positive class {self.positive!r} is not one of the classes {list(self.classes)}")

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive_index(self) -> int:
        """The column of ``predict_proba`` that is the positive class (binary models)."""
        return next(i for i, c in enumerate(self.classes) if same_label(self.positive, c))

    @property
    def negative(self) -> Any:
        return self.classes[1 - self.positive_index]

    @property
    def keys(self) -> list[str]:
        return [class_key(c) for c in self.classes]

    @classmethod
    def learned(cls, classes: Iterable[Any], positive_class: Any = None) -> ClassSet:
        """From a fitted estimator's ``classes_``; ``positive_class`` (the config's) must be one of them.

        :raises DataError: fewer than two classes, or ``positive_class`` is not among them or is set for a
            model with more than two classes (which has no single positive class).
        """
        found = tuple(plain_label(c) for c in classes)
        if len(found) < 2:
            raise DataError(f"the training target holds a single class {list(found)}; a classifier needs two or more")
        if positive_class is None:
            return cls(found, found[1] if len(found) == 2 else None)
        match = _find(found, positive_class)
        if match is None:
            raise DataError(
                f"positive_class: got {positive_class!r}; the training data's classes are {list(found)[:20]}"
            )
        if len(found) > 2:
            raise DataError(
                f"positive_class: got {positive_class!r} for {len(found)} classes; it applies to two classes only "
                "(use per-class metrics such as recall.<class> instead)"
            )
        return cls(found, match)

    def find_index(self, value: Any) -> int:
        """The position (``predict_proba`` column) of the class ``value`` names; ``ValueError`` if none."""
        found = self.find(value)
        for i, c in enumerate(self.classes):
            if found is not None and same_label(found, c):
                return i
        raise ValueError(f"{value!r} is not one of the classes {list(self.classes)[:20]}")

    def find(self, value: Any) -> Any:
        """The class ``value`` names — as a JSON value, or as text (a CSV cell, a YAML string) — else ``None``.

        Text matches a class when it is the class's key (``"1"`` names ``1``; ``"true"`` and ``"True"`` name
        ``True``).
        """
        return _find(self.classes, value)

    # answers ------------------------------------------------------------------------------------------

    def answers(self, labels: Sequence[Any], proba: np.ndarray) -> list[dict[str, Any]]:
        """The gateway's JSON answer per row: binary ``prediction`` + ``score``; more classes ``prediction`` +
        ``probabilities`` (class key -> probability)."""
        if self.binary:
            index = self.positive_index
            return [
                {"prediction": plain_label(label), "score": float(row[index])}
                for label, row in zip(labels, proba, strict=True)
            ]
        keys = self.keys
        return [
            {"prediction": plain_label(label), "probabilities": dict(zip(keys, map(float, row), strict=True))}
            for label, row in zip(labels, proba, strict=True)
        ]

    def scores(self, outputs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """What :func:`~airflow_mlops.training.metrics.compute_metric` scores from logged answers: the positive
        class's probability (binary), or the probability matrix in class order (more classes).

        :raises ValueError: an answer lacks a probability (it is not this model's answer).
        """
        import numpy as np

        if self.binary:
            return np.asarray([float(o["score"]) for o in outputs], dtype=float)
        keys = self.keys
        try:
            rows = [[float(o["probabilities"][k]) for k in keys] for o in outputs]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"an answer has no probability for class {exc} of {keys}") from exc
        return np.asarray(rows, dtype=float).reshape(len(rows), len(keys))

    def labels(self, values: Iterable[Any]) -> np.ndarray:
        """Class labels as one typed array (ints stay ints, strings strings), as scikit-learn's metrics need."""
        import numpy as np

        items = [plain_label(v) for v in values]
        if not items:
            return np.asarray([self.classes[0]])[:0]
        return np.asarray(items)

    def hard(self, scores: np.ndarray) -> np.ndarray:
        """Hard labels from :meth:`scores` (most probable class; binary: the positive class from 0.5)."""
        import numpy as np

        if scores.ndim == 1:
            return np.where(scores >= 0.5, self.labels([self.positive]), self.labels([self.negative]))
        found: np.ndarray = self.labels(self.classes)[np.argmax(scores, axis=1)]
        return found

    # recording ----------------------------------------------------------------------------------------

    def to_json(self) -> str:
        """For the run and version tag ``mlops.classes``.

        :raises DataError: the classes do not fit in a tag (:data:`MAX_RECORDED_CHARS`).
        """
        text = json.dumps({"classes": list(self.classes), "positive": self.positive}, separators=(",", ":"))
        if len(text) > MAX_RECORDED_CHARS:
            raise DataError(
                f"the target has {len(self.classes)} classes, {len(text)} characters as JSON; at most "
                f"{MAX_RECORDED_CHARS} can be recorded with a model version"
            )
        return text

    @classmethod
    def from_json(cls, text: str | None) -> ClassSet:
        """What :meth:`to_json` wrote; no text (a version trained before classes were recorded) is :data:`LEGACY`.

        :raises ValueError: the text is not a class set (a tag edited by hand).
        """
        if not text:
            return LEGACY
        try:
            data = json.loads(text)
            classes = data["classes"]
            if not isinstance(classes, list) or not all(isinstance(c, str | int | float | bool) for c in classes):
                raise TypeError("classes must be a list of strings, numbers or booleans")
            if len({class_key(c) for c in classes}) != len(classes):
                raise TypeError("classes repeat")
            return cls(tuple(classes), data.get("positive"))
        except (ValueError, TypeError, KeyError, DataError) as exc:
            raise ValueError(f"classes tag {text[:200]!r} is not a class set: {exc}") from exc


#: The classes of versions trained before classes were recorded: 0/1, positive 1.
LEGACY: Final = ClassSet((0, 1), 1)
