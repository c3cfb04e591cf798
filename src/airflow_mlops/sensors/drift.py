"""``DriftSensor``: wait until a model's latest drift verdict is at or above a level (``ok < warn < act``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.monitoring.verdicts import parse_level
from airflow_mlops.sensors.base import MlflowSensor, iso_timestamp

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

__all__ = ["DriftSensor"]


class DriftSensor(MlflowSensor):
    """Wait until the newest finished monitoring run of ``model_name`` has a drift verdict at ``level`` or above.

    Levels (see :mod:`airflow_mlops.monitoring.verdicts`): ``act`` when the monitor decided to act
    (``Tag.DRIFT_ACT``), ``warn`` when some feature's PSI reached its warn threshold, ``ok`` otherwise.
    Only monitoring runs started at or after ``since`` count; the newest of them is the verdict, so a
    later clean window supersedes an earlier drifted one.

    Returns ``{"model", "level", "run_id", "window_start", "window_end", "suppressed", "features"}``.

    :param model_name: Registered model name (templated).
    :param level: ``"warn"`` or ``"act"`` (``"ok"``: any verdict) (templated).
    :param since: Timezone-aware datetime or ISO timestamp (templated, e.g. ``"{{ dag_run.start_date }}"``);
        ``None``: any monitoring run.
    :param mlflow_conn_id: Airflow connection of type ``mlflow`` (templated).
    :param deferrable: Wait in the triggerer; default ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("model_name", "level", "since", "mlflow_conn_id")

    def __init__(
        self, *, model_name: str, level: str = "act", since: str | datetime | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if "{{" not in level:
            parse_level(level)  # fail at parse time, not hours later in the triggerer
        self.model_name = model_name
        self.level = level
        self.since = since

    def probe(self, context: Context) -> dict[str, Any] | None:
        from airflow_mlops.triggers.drift import probe_drift

        since = iso_timestamp(self.since, f"{self.task_id}: since")
        return probe_drift(self.hook.get_conn(), self.model_name, self.level, since)

    def trigger(self) -> BaseTrigger:
        from airflow_mlops.triggers.drift import DriftVerdictTrigger

        return DriftVerdictTrigger(
            mlflow_conn_id=self.mlflow_conn_id,
            model=self.model_name,
            level=self.level,
            since=iso_timestamp(self.since, f"{self.task_id}: since"),
            poll_interval=self.poke_interval,
        )
