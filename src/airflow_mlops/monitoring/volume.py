"""How much live traffic a model version has served, and how much of it has received its delayed label.

Counted from the prediction log (:mod:`airflow_mlops.prediction_log`), the way monitoring and canary
health count it: a *prediction* is one logged row answered by ``version`` in a served role
(``SERVED_ROLES``: champion or canary; shadow answers never reached a client) with no error and an output,
at ``since <= ts < until``; it is *labelled* when a feedback row with its ``request_id`` exists (labels
arrive later, so feedback is read from ``since`` on, without an upper bound). Plain Python over a
:class:`~airflow_mlops.prediction_log.Storage`; no Airflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.vocabulary import SERVED_ROLES

if TYPE_CHECKING:
    from airflow_mlops.prediction_log import Storage

__all__ = ["PredictionVolume", "prediction_volume"]


@dataclass(frozen=True)
class PredictionVolume:
    """Served predictions of one version and how many of them are labelled (``since``/``until``: ISO or None)."""

    model: str
    version: str
    predictions: int
    labelled: int
    since: str | None = None
    until: str | None = None

    def enough(self, min_predictions: int, min_labels: int = 0) -> bool:
        """At least ``min_predictions`` served predictions, of which at least ``min_labels`` are labelled."""
        return self.predictions >= min_predictions and self.labelled >= min_labels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prediction_volume(
    storage: Storage,
    model: str,
    version: str | int,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    count_labels: bool = True,
) -> PredictionVolume:
    """Count ``version``'s served predictions in ``[since, until)`` and (``count_labels``) the labelled ones.

    :raises DataError: the log cannot be listed or a part file cannot be read.
    """
    from airflow_mlops.prediction_log import read_feedback, read_predictions

    version = str(version)
    rows = read_predictions(storage, model, since, until)
    served = rows[
        (rows["version"].astype(str) == version)
        & rows["role"].isin(SERVED_ROLES)
        & rows["error"].isna()
        & rows["output"].notna()
    ]
    labelled = 0
    if count_labels and not served.empty:
        feedback = read_feedback(storage, model, since, None)
        labelled = int(served["request_id"].isin(set(feedback["request_id"])).sum())
    return PredictionVolume(
        model=model,
        version=version,
        predictions=len(served),
        labelled=labelled,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
    )
