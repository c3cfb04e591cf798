"""evidently's view of a window: its DataDriftPreset as HTML, and its own verdict under our thresholds.

Our statistics make the decision. evidently is run with the same method (PSI) and the same thresholds
(each feature's ``psi_act``, the config's ``drifted_share``), so its verdict is comparable: the monitor
stores it next to ours and flags a disagreement (different binning of the same data can tip a feature
over a threshold) instead of hiding it. It runs on a bounded sample (``max_rows`` per side) so a
monitoring run stays cheap however large the window is. It is optional: without the ``[reports]``
extra :func:`evidently_drift` raises :class:`~airflow_mlops.exceptions.MissingExtraError` and the
monitor records why the report is missing.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops._optional import require

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EvidentlyDrift", "evidently_drift"]

_VALUE_DRIFT = re.compile(r"^ValueDrift\(column=(?P<column>.*?),method=")


@dataclass(frozen=True)
class EvidentlyDrift:
    """evidently's verdict: PSI per feature, which features reach their act threshold, dataset drift."""

    html: Path
    psi: dict[str, float]
    drifted: tuple[str, ...]
    share: float
    drifted_share: float

    @property
    def dataset_drift(self) -> bool:
        return bool(self.psi) and self.share >= self.drifted_share

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "psi",
            "psi": self.psi,
            "drifted_features": list(self.drifted),
            "share": self.share,
            "drifted_share": self.drifted_share,
            "dataset_drift": self.dataset_drift,
        }


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    path: Path,
    *,
    act_thresholds: Mapping[str, float],
    drifted_share: float,
    max_rows: int = 5000,
    seed: int = 0,
) -> EvidentlyDrift:
    """Write evidently's data-drift report comparing ``current`` with ``reference`` on ``columns``.

    :param act_thresholds: Feature -> the PSI at which our statistics call it drifted (``psi_act``).
    :param drifted_share: Dataset drift when at least this share of features drifted (as ours).
    :raises MissingExtraError: evidently is not installed (``pip install 'airflow-mlops[reports]'``); the
        caller skips the report and says so, our own statistics still decide.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")  # evidently's usage telemetry stays off
    purpose = "The evidently drift report (HTML)"
    Report = require("evidently", "reports", purpose=purpose).Report
    DataDriftPreset = require("evidently.presets", "reports", purpose=purpose).DataDriftPreset

    ref = reference[columns]
    cur = current[columns]
    if len(ref) > max_rows:
        ref = ref.sample(max_rows, random_state=seed)
    if len(cur) > max_rows:
        cur = cur.sample(max_rows, random_state=seed)
    preset = DataDriftPreset(
        method="psi",
        drift_share=drifted_share,
        per_column_threshold={name: float(act_thresholds[name]) for name in columns},
    )
    snapshot = Report([preset]).run(current_data=cur.reset_index(drop=True), reference_data=ref.reset_index(drop=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    psi = _column_psi(snapshot.dict(), columns)
    drifted = tuple(name for name, value in psi.items() if value >= act_thresholds[name])
    return EvidentlyDrift(
        html=path,
        psi=psi,
        drifted=drifted,
        share=len(drifted) / len(psi) if psi else 0.0,
        drifted_share=drifted_share,
    )


def _column_psi(snapshot: Mapping[str, Any], columns: list[str]) -> dict[str, float]:
    """The PSI evidently computed per column (its ``ValueDrift`` metrics), NaN ones left out."""
    found: dict[str, float] = {}
    for metric in snapshot.get("metrics", []):
        match = _VALUE_DRIFT.match(str(metric.get("metric_name", "")))
        value = metric.get("value")
        if match and match["column"] in columns and isinstance(value, int | float) and not math.isnan(value):
            found[match["column"]] = float(value)
    return {name: found[name] for name in columns if name in found}
