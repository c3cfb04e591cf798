"""The human-readable drift report: evidently's DataDriftPreset as HTML, next to our own statistics.

Our statistics make the decision; the evidently report is for people. It runs on a bounded sample
(``max_rows`` per side) so a monitoring run stays cheap however large the window is. It is optional:
without the ``[reports]`` extra :func:`evidently_drift_html` raises
:class:`~airflow_mlops.exceptions.MissingExtraError` and the monitor records why the report is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_mlops._optional import require

if TYPE_CHECKING:
    import pandas as pd


def evidently_drift_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    path: Path,
    *,
    max_rows: int = 5000,
    seed: int = 0,
) -> Path:
    """Write evidently's data-drift report comparing ``current`` with ``reference`` on ``columns``.

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
    snapshot = Report([DataDriftPreset()]).run(
        current_data=cur.reset_index(drop=True), reference_data=ref.reset_index(drop=True)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path
