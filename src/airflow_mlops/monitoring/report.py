"""The human-readable drift report: evidently's DataDriftPreset as HTML, next to our own statistics.

Our statistics make the decision; the evidently report is for people. It runs on a bounded sample
(``max_rows`` per side) so a monitoring run stays cheap however large the window is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

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
    """Write evidently's data-drift report comparing ``current`` with ``reference`` on ``columns``."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # evidently's usage telemetry stays off
    from evidently import Report
    from evidently.presets import DataDriftPreset

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
