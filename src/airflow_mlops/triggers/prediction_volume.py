"""Wait, in the triggerer, until a version served enough live predictions and labels (``PredictionVolumeSensor``)."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_mlops.triggers.polling import PollingTrigger

if TYPE_CHECKING:
    from airflow_mlops.prediction_log import Storage

__all__ = ["PredictionVolumeTrigger", "probe_prediction_volume"]


def probe_prediction_volume(
    storage: Storage,
    model: str,
    version: str,
    min_predictions: int,
    min_labels: int,
    since: str | None,
    until: str | None,
) -> dict[str, Any] | None:
    """The counts (``predictions``, ``labelled`` ...) once they reach the minimums, else ``None``.

    :param since: ISO timestamp with a timezone (or ``None``): count from there; ``until`` likewise, exclusive.
    """
    from airflow_mlops.monitoring.volume import prediction_volume

    volume = prediction_volume(
        storage,
        model,
        version,
        datetime.fromisoformat(since) if since else None,
        datetime.fromisoformat(until) if until else None,
        count_labels=min_labels > 0,
    )
    return volume.to_dict() if volume.enough(min_predictions, min_labels) else None


class PredictionVolumeTrigger(PollingTrigger):
    """Fire once ``model`` v``version`` has ``min_predictions`` served predictions (``min_labels`` of them labelled).

    :param log_root: The prediction log's root (local path or object-store URI).
    :param log_conn_id: Airflow connection for an object-store root (``None``: local root or the default).
    """

    def __init__(
        self,
        *,
        log_root: str,
        log_conn_id: str | None,
        model: str,
        version: str,
        min_predictions: int,
        min_labels: int = 0,
        since: str | None = None,
        until: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.log_root, self.log_conn_id = log_root, log_conn_id
        self.model, self.version = model, version
        self.min_predictions, self.min_labels = int(min_predictions), int(min_labels)
        self.since, self.until = since, until

    def probe_kwargs(self) -> dict[str, Any]:
        return {
            "log_root": self.log_root,
            "log_conn_id": self.log_conn_id,
            "model": self.model,
            "version": self.version,
            "min_predictions": self.min_predictions,
            "min_labels": self.min_labels,
            "since": self.since,
            "until": self.until,
        }

    @cached_property
    def storage(self) -> Storage:
        """Built on the first probe, in its thread (an object-store connection may block); one per trigger."""
        from airflow_mlops.hooks.object_storage import prediction_log_storage

        return prediction_log_storage(self.log_root, self.log_conn_id)

    def probe(self) -> dict[str, Any] | None:
        return probe_prediction_volume(
            self.storage, self.model, self.version, self.min_predictions, self.min_labels, self.since, self.until
        )
