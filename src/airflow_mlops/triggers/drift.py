"""Wait, in the triggerer, until a model's latest drift verdict reaches a level (``DriftSensor``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.triggers.polling import MlflowPollingTrigger

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["DriftVerdictTrigger", "probe_drift"]


def probe_drift(client: MlflowClient, model: str, level: str, since: str | None) -> dict[str, Any] | None:
    """The latest verdict (``level``, run id, window, features) once it is at ``level`` or above, else ``None``.

    :param since: ISO timestamp with a timezone; only monitoring runs started at or after it count.
    """
    from airflow_mlops.monitoring.verdicts import at_least, latest_verdict, parse_level

    floor = parse_level(level)
    verdict = latest_verdict(client, model, datetime.fromisoformat(since) if since else None)
    if verdict is None or not at_least(verdict.level, floor):
        return None
    return verdict.to_dict()


class DriftVerdictTrigger(MlflowPollingTrigger):
    """Fire once the newest finished monitoring run of ``model`` (since ``since``) has a verdict at ``level`` or above.

    :param level: ``"ok"``, ``"warn"`` or ``"act"``.
    :param since: ISO timestamp with a timezone, or ``None`` for any monitoring run.
    """

    def __init__(self, *, model: str, level: str, since: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.level, self.since = model, level, since

    def probe_kwargs(self) -> dict[str, Any]:
        return {"mlflow_conn_id": self.mlflow_conn_id, "model": self.model, "level": self.level, "since": self.since}

    def probe(self) -> dict[str, Any] | None:
        return probe_drift(self.client, self.model, self.level, self.since)
