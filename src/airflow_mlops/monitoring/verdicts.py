"""The latest drift verdict of a model, read back from its MLflow monitoring runs, as a level ``ok < warn < act``.

What a monitoring run records (``EvaluateDriftOperator``, experiment ``airflow-mlops/<model>/monitoring``):
the tags ``Tag.MODEL``, ``Tag.CHAMPION``, ``Tag.WINDOW_START``, ``Tag.WINDOW_END`` and ``Tag.DRIFT_ACT``
(``"true"``/``"false"``; ``Tag.DRIFT_SUPPRESSED`` when the cooldown held the event back), metrics per
feature (``psi.<feature>``, ...) and ``drift/statistics.json``, whose ``scores`` give every feature's
status (``ok``/``warn``/``act``/``no_data``) under the thresholds of the model's config.

Levels:

- ``act``: ``Tag.DRIFT_ACT == "true"`` (dataset drift, prediction drift at act level, or a performance
  breach — whatever made the monitor want a retrain, emitted or held back by the cooldown).
- ``warn``: not ``act``, but at least one feature's status in ``drift/statistics.json`` is ``warn`` or
  ``act`` (some shift, not enough for the dataset verdict). The run records no warn flag and no thresholds
  in tags or params, so the feature statuses in the artifact are the one place the warn level can be read.
- ``ok``: neither.

The verdict is the newest *finished* monitoring run (optionally only runs started at or after ``since``),
so a later clean window supersedes an earlier drifted one. Plain Python over an ``MlflowClient``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from airflow_mlops.exceptions import DataError
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "LEVELS",
    "STATISTICS_ARTIFACT",
    "DriftVerdict",
    "Level",
    "at_least",
    "latest_verdict",
    "monitoring_experiment",
    "parse_level",
]

Level = Literal["ok", "warn", "act"]
LEVELS: Final[tuple[Level, ...]] = ("ok", "warn", "act")
STATISTICS_ARTIFACT: Final = "drift/statistics.json"
_SHIFTED: Final = frozenset({"warn", "act"})


def monitoring_experiment(model: str) -> str:
    """The MLflow experiment of a model's monitoring runs (the name ``EvaluateDriftOperator`` writes to)."""
    return f"airflow-mlops/{model}/monitoring"


def parse_level(value: str) -> Level:
    """``value`` as a :data:`Level`; ``ValueError`` naming the allowed levels otherwise."""
    if value not in LEVELS:
        raise ValueError(f"drift level: got {value!r}; expected one of {list(LEVELS)}")
    return value


def at_least(level: Level, floor: Level) -> bool:
    """``level >= floor`` in the order ``ok < warn < act``."""
    return LEVELS.index(level) >= LEVELS.index(floor)


@dataclass(frozen=True)
class DriftVerdict:
    """One monitoring run's verdict. ``features``: those at ``warn`` or ``act`` (empty when unknown)."""

    model: str
    level: Level
    run_id: str
    window_start: str | None
    window_end: str | None
    suppressed: bool = False
    features: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: what a sensor returns as its XCom value."""
        return {
            "model": self.model,
            "level": self.level,
            "run_id": self.run_id,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "suppressed": self.suppressed,
            "features": list(self.features),
        }


def _shifted_features(client: MlflowClient, run_id: str) -> tuple[str, ...] | None:
    """Features at warn or act in the run's statistics artifact; ``None`` when the run has no such artifact."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, STATISTICS_ARTIFACT, dst_path=tmp)
        except (MlflowException, OSError):
            return None
        try:
            statistics = json.loads(Path(path).read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"monitoring run {run_id}: {STATISTICS_ARTIFACT} is not JSON: {exc}") from exc
    scores = statistics.get("scores") if isinstance(statistics, dict) else None
    if not isinstance(scores, dict) or not all(isinstance(score, dict) for score in scores.values()):
        raise DataError(f"monitoring run {run_id}: {STATISTICS_ARTIFACT} has no 'scores' mapping of feature -> score")
    return tuple(sorted(name for name, score in scores.items() if score.get("status") in _SHIFTED))


def _latest_run(client: MlflowClient, model: str, since: datetime | None) -> Any | None:
    experiment = client.get_experiment_by_name(monitoring_experiment(model))
    if experiment is None:
        return None
    query = "attributes.status = 'FINISHED'"
    if since is not None:
        query += f" and attributes.start_time >= {int(since.timestamp() * 1000)}"
    for run in client.search_runs(
        [experiment.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=20
    ):
        if Tag.DRIFT_ACT in run.data.tags:  # a monitoring run that reached its decision
            return run
    return None


def latest_verdict(client: MlflowClient, model: str, since: datetime | None = None) -> DriftVerdict | None:
    """The newest finished monitoring run's verdict (started at or after ``since``), or ``None`` if there is none.

    ``since`` must be timezone-aware. A run without the statistics artifact is ``act`` or ``ok`` by its tag.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError(f"since: got the naive datetime {since.isoformat()!r}; give a timezone-aware one")
    run = _latest_run(client, model, since)
    if run is None:
        return None
    tags = run.data.tags
    act = tags.get(Tag.DRIFT_ACT) == "true"
    shifted = _shifted_features(client, run.info.run_id)
    level: Level = "act" if act else ("warn" if shifted else "ok")
    return DriftVerdict(
        model=model,
        level=level,
        run_id=str(run.info.run_id),
        window_start=tags.get(Tag.WINDOW_START),
        window_end=tags.get(Tag.WINDOW_END),
        suppressed=Tag.DRIFT_SUPPRESSED in tags,
        features=shifted or (),
    )
