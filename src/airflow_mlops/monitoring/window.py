"""What a monitoring run compares: the champion's training data (the reference) and a window of traffic.

The reference is found through the champion's lineage: its ``mlops.data_uri`` is read again and must
still hash to its ``mlops.data_sha256`` (a reference that changed is refused, not silently used).
The window is the prediction log's champion/canary rows between two instants, with their inputs
parsed from JSON into one numpy array per feature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import DataError
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
    snapshot = read_snapshot(recorded_files(tags), tags.get(Tag.DATA_CONN_ID) or None, config.data.format)
    frame, actual = snapshot.frame, snapshot.sha256
    if actual != expected:
        raise DataError(
            f"{config.name} v{version}: training data {uri} now hashes to {actual}, not {expected} as recorded; "
            "the reference changed since training"
        )
    return Reference(version=version, data_uri=uri, data_sha256=expected, frame=frame)


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


def served_predictions(rows: pd.DataFrame) -> np.ndarray:
    """The served score (classifiers) or prediction (regressors) of each served row, for prediction drift."""
    import numpy as np

    served = rows[rows["role"].isin(SERVED_ROLES) & rows["error"].isna() & rows["output"].notna()]
    values = []
    for text in served["output"]:
        parsed = json.loads(text)
        values.append(float(parsed.get("score", parsed.get("prediction"))))
    return np.array(values, dtype=float)


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

    def breached(self, max_drop: float, higher_is_better: bool, min_labels: int) -> bool:
        if self.value is None or self.champion_eval is None or self.labelled < min_labels:
            return False
        drop = (self.champion_eval - self.value) if higher_is_better else (self.value - self.champion_eval)
        return drop > max_drop


def performance_on_labels(
    answers: pd.DataFrame, feedback: pd.DataFrame, metric: str, champion_eval: float | None
) -> Performance:
    """The primary metric of served answers that received a delayed label, vs the champion's evaluation.

    Labels go through :func:`~airflow_mlops.monitoring.labels.usable_labels` (first label per request,
    valid for the task; the others are counted).

    :param answers: ``request_id`` and ``output`` (the logged answer JSON) of served rows; other rows of
        the prediction log (shadow, errors) are left out when ``role``/``error`` columns are present.
    """
    import numpy as np

    from airflow_mlops.monitoring.labels import task_of_metric, usable_labels
    from airflow_mlops.training.metrics import compute_metric

    served = answers[answers["output"].notna()]
    if "role" in served.columns:
        served = served[served["role"].isin(SERVED_ROLES)]
    if "error" in served.columns:
        served = served[served["error"].isna()]
    if feedback.empty or served.empty:
        return Performance(metric, None, 0, champion_eval)
    found = usable_labels(feedback, task_of_metric(metric))
    invalid, duplicates = found.invalid, found.duplicates
    joined = served[served["request_id"].isin(found.labels.index)]
    if joined.empty:
        return Performance(metric, None, 0, champion_eval, invalid_labels=invalid, duplicate_labels=duplicates)
    outputs = [json.loads(text) for text in joined["output"]]
    scores = np.array([float(o.get("score", o.get("prediction"))) for o in outputs])
    hard = np.array([o.get("prediction") for o in outputs])
    y = found.labels.loc[joined["request_id"]].to_numpy()
    value: float | None = None
    error: str | None = None
    try:
        value = compute_metric(metric, y, scores, hard if "score" in outputs[0] else None)
    except ValueError as exc:
        error = str(exc)
    return Performance(
        metric, value, len(joined), champion_eval, invalid_labels=invalid, duplicate_labels=duplicates, error=error
    )


def window_bounds(end: datetime, length_seconds: float) -> tuple[datetime, datetime]:
    from datetime import timedelta

    return end - timedelta(seconds=length_seconds), end
