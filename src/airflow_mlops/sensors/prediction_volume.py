"""``PredictionVolumeSensor``: wait until a model version has served enough live predictions (and labels)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_mlops.sensors.base import MlopsSensor, iso_timestamp

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from airflow_mlops.prediction_log import Storage

__all__ = ["PredictionVolumeSensor"]


def _count(value: int | str, what: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: got {value!r}; expected a whole number >= 0") from exc
    if count < 0:
        raise ValueError(f"{what}: got {value!r}; expected a whole number >= 0")
    return count


class PredictionVolumeSensor(MlopsSensor):
    """Wait until ``model_name`` v``version`` has served ``min_predictions`` live predictions, ``min_labels`` labelled.

    Counted from the prediction log (see :mod:`airflow_mlops.monitoring.volume`): rows answered by the
    version as champion or canary without error, at ``since <= ts < until``; a prediction is labelled once
    feedback with its request id arrived. Returns ``{"model", "version", "predictions", "labelled", "since",
    "until"}``.

    :param model_name: Registered model name (templated).
    :param version: The version whose traffic to count (templated).
    :param min_predictions: Served predictions needed (templated; a rendered string is read as a number).
    :param min_labels: Of those, labelled ones needed (templated); 0 reads no feedback.
    :param since: Count from this timezone-aware datetime / ISO timestamp (templated); ``None``: the whole log.
    :param until: Count before this one (templated); ``None``: no upper bound.
    :param log_root: The prediction log's root (templated): local path, ``s3://...``, ``wasbs://...``;
        ``None``: the ``[mlops] prediction_log`` setting.
    :param log_conn_id: Airflow connection for an object-store root (templated); ``None``: the default one.
    :param deferrable: Wait in the triggerer; default ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "version",
        "min_predictions",
        "min_labels",
        "since",
        "until",
        "log_root",
        "log_conn_id",
    )

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        min_predictions: int | str,
        min_labels: int | str = 0,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        log_root: str | None = None,
        log_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version if not isinstance(version, int) else str(version)
        self.min_predictions = min_predictions
        self.min_labels = min_labels
        self.since, self.until = since, until
        self.log_root, self.log_conn_id = log_root, log_conn_id
        for name in ("min_predictions", "min_labels"):
            value = getattr(self, name)
            if not (isinstance(value, str) and "{{" in value):
                _count(value, f"{self.task_id}: {name}")  # fail at parse time, not in the triggerer

    def _arguments(self) -> dict[str, Any]:
        """The rendered arguments, checked: what the probe and the trigger take."""
        root = self.log_root
        if not root:
            from airflow_mlops import settings

            root = settings.prediction_log_root()
        if not root:
            raise ValueError(f"{self.task_id}: log_root is not set and neither is the [mlops] prediction_log setting")
        return {
            "log_root": str(root),
            "log_conn_id": self.log_conn_id or None,
            "model": self.model_name,
            "version": str(self.version),
            "min_predictions": _count(self.min_predictions, f"{self.task_id}: min_predictions"),
            "min_labels": _count(self.min_labels, f"{self.task_id}: min_labels"),
            "since": iso_timestamp(self.since, f"{self.task_id}: since"),
            "until": iso_timestamp(self.until, f"{self.task_id}: until"),
        }

    @cached_property
    def storage(self) -> Storage:
        from airflow_mlops.hooks.object_storage import prediction_log_storage

        args = self._arguments()
        return prediction_log_storage(args["log_root"], args["log_conn_id"])

    def probe(self, context: Context) -> dict[str, Any] | None:
        from airflow_mlops.triggers.prediction_volume import probe_prediction_volume

        args = self._arguments()
        return probe_prediction_volume(
            self.storage,
            args["model"],
            args["version"],
            args["min_predictions"],
            args["min_labels"],
            args["since"],
            args["until"],
        )

    def trigger(self) -> BaseTrigger:
        from airflow_mlops.triggers.prediction_volume import PredictionVolumeTrigger

        return PredictionVolumeTrigger(**self._arguments(), poll_interval=self.poke_interval)
