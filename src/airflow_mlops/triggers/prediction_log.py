"""An event trigger for Asset watchers: a new hour partition appeared in a model's prediction log.

``<model>__monitor`` is scheduled on ``mlops://<model>/predictions``, whose watcher runs this trigger
in the triggerer: when the gateway starts writing a new hour, the previous hour is complete and a
monitoring run is due. Partitions present when the trigger starts are the baseline (the cron
schedule covers any hour that completed while no triggerer was watching). Several hours appearing
between two polls (a store back from an outage, a backfill) make one event, for the newest hour.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

_HOUR = re.compile(r"date=(\d{4}-\d{2}-\d{2})[/\\]hour=(\d{2})")


def _hours(root: str, model: str, conn_id: str | None) -> set[str]:
    from airflow_mlops.hooks.object_storage import prediction_log_storage
    from airflow_mlops.prediction_log import hour_partitions

    found = set()
    for group in hour_partitions(prediction_log_storage(root, conn_id), model):
        match = _HOUR.search(group[0])
        if match:
            found.add(f"{match.group(1)}T{match.group(2)}")
    return found


class NewPredictionHourTrigger(BaseEventTrigger):
    def __init__(self, *, log_root: str, log_conn_id: str | None, model: str, poll_interval: float = 30.0) -> None:
        super().__init__()
        self.log_root, self.log_conn_id, self.model, self.poll_interval = log_root, log_conn_id, model, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "log_root": self.log_root,
                "log_conn_id": self.log_conn_id,
                "model": self.model,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """One event per poll that finds new hours, for the newest of them (one monitoring run covers the
        window); the first *successful* listing is the baseline, so a store that was down at start does not
        make every past hour look new."""
        seen: set[str] | None = None
        while True:
            try:
                hours = await asyncio.to_thread(_hours, self.log_root, self.model, self.log_conn_id)
            except Exception as exc:  # a flaky store must not kill the watcher; try again next poll
                self.log.warning("Cannot list the prediction log of %s: %s", self.model, exc)
                await asyncio.sleep(self.poll_interval)
                continue
            if seen is not None:
                new = sorted(hours - seen)
                if new:
                    newest = new[-1]
                    before = sorted(h for h in seen | hours if h < newest)
                    yield TriggerEvent(
                        {
                            "model": self.model,
                            "new_hour": newest,
                            "completed_hour": before[-1] if before else None,
                            "also_new": len(new) - 1,
                        }
                    )
            seen = (seen or set()) | hours
            await asyncio.sleep(self.poll_interval)
