"""The Assets that connect a model's DAGs: candidate (train -> deploy), drift (monitor -> train), new data."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

from airflow_mlops.vocabulary import AssetKind, asset_uri

GROUP = "airflow-mlops"


def _asset(model: str, kind: str) -> Asset:
    uri = asset_uri(model, kind)
    return Asset(name=uri, uri=uri, group=GROUP)


def candidate_asset(model: str) -> Asset:
    """A version passed its gate and became ``challenger``; extra: model, version, mlflow_run_id."""
    return _asset(model, AssetKind.CANDIDATE)


def drift_asset(model: str) -> Asset:
    """The monitor found act-level drift or a performance breach; extra: features, scores, window."""
    return _asset(model, AssetKind.DRIFT)


def data_asset(model: str) -> Asset:
    """New training data is available (any system can announce it: ``POST /api/v2/assets/events``).

    An event's extra may carry ``data_uri`` (and ``data_conn_id``) for the retrain to use.
    """
    return _asset(model, AssetKind.DATA)


def cron_or_assets(cron: str | None, assets: list[Asset]) -> Any:
    """A DAG schedule that fires on ``cron`` OR any of ``assets`` (either may be absent)."""
    from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronTriggerTimetable

    if not assets:
        return cron
    if cron is None:
        return AssetAny(*assets)
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=AssetAny(*assets))
