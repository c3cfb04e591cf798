"""What a monitoring run compares: the champion's training data (the reference) and a window of traffic.

The reference is found through the champion's lineage: its ``mlops.data_uri`` is read again and must
still hash to its ``mlops.data_sha256`` (a reference that changed is refused, not silently used).
The window is the prediction log's champion/canary rows between two instants, with their inputs
parsed from JSON into one numpy array per feature. The champion's classes (``mlops.classes``) say how its
answers are read: the positive class's ``score`` (two classes), the predicted class (more classes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import DataError
from airflow_mlops.prediction_log.records import finite_number, logged_answer
from airflow_mlops.training.classes import ClassSet, class_key
from airflow_mlops.vocabulary import SERVED_ROLES, Alias, Tag

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from airflow_mlops.config.schema import ModelConfig


@dataclass(frozen=True)
class Reference:
    version: str
    data_uri: str
    data_sha256: str
    frame: pd.DataFrame
    #: The champion's classes as its version records them; ``None`` for a regressor or a 0/1 version trained
    #: before classes were recorded.
    classes: ClassSet | None = None
    #: The files the champion was trained on (``data_uri`` may be a folder) and their store's connection.
    files: tuple[str, ...] = ()
    conn_id: str | None = None


def recorded_classes(tags: dict[str, str], where: str) -> ClassSet | None:
    """A version's ``mlops.classes`` tag; ``None`` without one.

    :raises DataError: the tag is not a class set (edited by hand): its answers cannot be read safely.
    """
    text = tags.get(Tag.CLASSES)
    if not text:
        return None
    try:
        return ClassSet.from_json(text)
    except ValueError as exc:
        raise DataError(f"{where}: {Tag.CLASSES}: {exc}") from exc


def champion_reference(client: MlflowClient, config: ModelConfig) -> Reference:
    """The champion's training data, verified against its recorded fingerprint."""
    from airflow_mlops.data.snapshot import read_snapshot, recorded_files
    from airflow_mlops.registry.versions import alias_version

    version = alias_version(client, config.name, Alias.CHAMPION)
    if version is None:
        raise DataError(f"{config.name} has no champion: nothing to monitor yet")
    tags = client.get_model_version(config.name, version).tags
    uri, expected = tags.get(Tag.DATA_URI), tags.get(Tag.DATA_SHA256)
    if not uri or not expected:
        raise DataError(f"{config.name} v{version} has no data lineage tags; cannot find its training data")
    files, conn_id = recorded_files(tags), tags.get(Tag.DATA_CONN_ID) or None
    snapshot = read_snapshot(files, conn_id, config.data.format)
    frame, actual = snapshot.frame, snapshot.sha256
    if actual != expected:
        raise DataError(
            f"{config.name} v{version}: training data {uri} now hashes to {actual}, not {expected} as recorded; "
            "the reference changed since training"
        )
    classes = recorded_classes(tags, f"{config.name} v{version}")
    return Reference(
        version=version,
        data_uri=uri,
        data_sha256=expected,
        frame=frame,
        classes=classes,
        files=tuple(files),
        conn_id=conn_id,
    )


def reference_columns(reference: Reference, config: ModelConfig) -> dict[str, np.ndarray]:
    """One array per feature: float64 for numerics, object (str or None) for categoricals."""
    import numpy as np

    out: dict[str, np.ndarray] = {}
    for name in config.features.numeric:
        out[name] = reference.frame[name].to_numpy(dtype=float, na_value=np.nan)
    for name in config.features.categorical:
        out[name] = np.array([None if _missing(v) else str(v) for v in reference.frame[name]], dtype=object)
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def window_columns(rows: pd.DataFrame, config: ModelConfig) -> dict[str, np.ndarray]:
    """Parse the logged inputs of served rows (no errors) into one array per feature."""
    import numpy as np

    served = rows[rows["role"].isin(SERVED_ROLES) & rows["error"].isna()]
    records = [json.loads(text) for text in served["inputs"]]
    out: dict[str, np.ndarray] = {}
    for name in config.features.numeric:
        out[name] = np.array([_as_float(r.get(name)) for r in records], dtype=float)
    for name in config.features.categorical:
        out[name] = np.array([None if _missing(r.get(name)) else str(r.get(name)) for r in records], dtype=object)
    return out


def _as_float(value: Any) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def served_predictions(rows: pd.DataFrame, categorical: bool = False) -> np.ndarray:
    """What prediction drift compares, per served row: the score (binary classifiers) or prediction (regressors)
    as floats; with ``categorical`` (more classes) the predicted class's key (``"setosa"``, ``"1"``, ``"true"``).

    An answer without one (not this kind of model's answer) is a missing value — reported as the column's
    ``nan_share``, never a number or class it did not say.
    """
    import numpy as np

    served = rows[rows["role"].isin(SERVED_ROLES) & rows["error"].isna() & rows["output"].notna()]
    answers = [logged_answer(text) for text in served["output"]]
    if categorical:
        return np.array([class_label(a.get("prediction")) for a in answers], dtype=object)
    return np.array([_finite(a.get("score", a.get("prediction"))) for a in answers], dtype=float)


def holdout_reference(text: str, classes: ClassSet | None) -> np.ndarray:
    """The reference of prediction drift from the champion's ``evaluation/holdout_predictions.csv``: its
    ``score`` column (binary classifiers, regressors) as floats, or (``classes`` with more than two) its
    ``prediction`` column as class keys, like :func:`served_predictions`.

    :raises DataError: the column is missing, or holds a value that is not a score / one of ``classes``.
    """
    import io

    import numpy as np
    import pandas as pd

    multiclass = classes is not None and not classes.binary
    column = "prediction" if multiclass else "score"
    try:  # y_true may be text with commas and quotes: a CSV reader, not a split on ","
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"holdout predictions: not a CSV ({exc})") from exc
    if column not in frame.columns:
        raise DataError(f"holdout predictions: no {column!r} column (columns {list(frame.columns)[:10]})")
    if not multiclass:
        values: np.ndarray = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            raise DataError(f"holdout predictions: {column!r} holds values that are not finite numbers")
        return values
    assert classes is not None
    keys = []
    for cell in frame[column]:
        found = classes.find(cell)
        if found is None:
            found = classes.find(_float_or_none(cell))
        if found is None:
            raise DataError(f"holdout predictions: {cell[:100]!r} is not one of the classes {classes.keys[:20]}")
        keys.append(class_key(found))
    return np.array(keys, dtype=object)


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _finite(value: Any) -> float:
    number = finite_number(value)
    return float("nan") if number is None else number


def class_label(value: Any) -> str | None:
    """A served prediction as its class key (``1.0`` is the class ``1``); ``None`` for one that is not a label."""
    if isinstance(value, float):
        if value != value or abs(value) == float("inf"):
            return None
        return class_key(int(value) if value.is_integer() else value)
    return class_key(value) if isinstance(value, str | bool | int) else None


@dataclass(frozen=True)
class Performance:
    metric: str
    value: float | None
    labelled: int
    champion_eval: float | None
    #: Labels left out (invalid for the task, or later labels of a labelled request) and why the metric failed.
    invalid_labels: int = 0
    duplicate_labels: int = 0
    error: str | None = None
    #: Labelled answers left out: not an answer of the champion's kind (no probability, not a class).
    invalid_answers: int = 0

    def breached(self, max_drop: float, higher_is_better: bool, min_labels: int) -> bool:
        if self.value is None or self.champion_eval is None or self.labelled < min_labels:
            return False
        drop = (self.champion_eval - self.value) if higher_is_better else (self.value - self.champion_eval)
        return drop > max_drop


def performance_on_labels(
    answers: pd.DataFrame,
    feedback: pd.DataFrame,
    metric: str,
    champion_eval: float | None,
    classes: ClassSet | None = None,
) -> Performance:
    """The primary metric of served answers that received a delayed label, vs the champion's evaluation.

    Labels go through :func:`~airflow_mlops.monitoring.labels.usable_labels` (first label per request,
    valid for the task and ``classes``; the others are counted). A classifier's answers are scored with
    ``classes`` (the champion's; ``None``: the 0/1 models of before classes were recorded); an answer that is
    not one of its answers (no probability for a class, a prediction that is not a class) is left out and
    counted in :attr:`Performance.invalid_answers`.

    :param answers: ``request_id`` and ``output`` (the logged answer JSON) of served rows; other rows of
        the prediction log (shadow, errors) are left out when ``role``/``error`` columns are present.
    """
    import numpy as np

    from airflow_mlops.monitoring.labels import task_of_metric, usable_labels
    from airflow_mlops.training.classes import LEGACY
    from airflow_mlops.training.metrics import compute_metric

    served = answers[answers["output"].notna()]
    if "role" in served.columns:
        served = served[served["role"].isin(SERVED_ROLES)]
    if "error" in served.columns:
        served = served[served["error"].isna()]
    if feedback.empty or served.empty:
        return Performance(metric, None, 0, champion_eval)
    task = task_of_metric(metric)
    judge = (classes or LEGACY) if task == "classification" else None
    found = usable_labels(feedback, task, judge.classes) if judge is not None else usable_labels(feedback, task)
    invalid, duplicates = found.invalid, found.duplicates
    joined = served[served["request_id"].isin(found.labels.index)]
    outputs = [logged_answer(text) for text in joined["output"]]
    if judge is None:
        scores = np.array([_finite(o.get("score", o.get("prediction"))) for o in outputs], dtype=float)
        fits = np.isfinite(scores)
        hard = None
    else:
        fits = np.array([_fits(o, judge) for o in outputs], dtype=bool)
    bad = int((~fits).sum())
    joined, outputs = joined[fits], [o for o, ok in zip(outputs, fits, strict=True) if ok]
    if joined.empty:
        return Performance(
            metric, None, 0, champion_eval, invalid_labels=invalid, duplicate_labels=duplicates, invalid_answers=bad
        )
    if judge is not None:
        scores = judge.scores(outputs)
        hard = judge.labels([judge.find(o["prediction"]) for o in outputs])
    else:
        scores = scores[fits]
    y = found.labels.loc[joined["request_id"]].to_numpy()
    value: float | None = None
    error: str | None = None
    try:
        value = compute_metric(metric, y, scores, hard, judge)
    except ValueError as exc:
        error = str(exc)
    return Performance(
        metric,
        value,
        len(joined),
        champion_eval,
        invalid_labels=invalid,
        duplicate_labels=duplicates,
        error=error,
        invalid_answers=bad,
    )


def _fits(answer: dict[str, Any], classes: ClassSet) -> bool:
    """Whether ``answer`` is one a model of ``classes`` gives: a class, and its probabilities as numbers."""
    import numpy as np

    if classes.find(answer.get("prediction")) is None:
        return False
    try:
        return bool(np.isfinite(classes.scores([answer])).all())
    except (KeyError, TypeError, ValueError):
        return False


def window_bounds(end: datetime, length_seconds: float) -> tuple[datetime, datetime]:
    from datetime import timedelta

    return end - timedelta(seconds=length_seconds), end
