"""The waiting loop our sensors' triggers share: call a blocking probe in a thread until it finds its answer.

A probe returns ``None`` while the condition does not hold and a small JSON-safe dict once it does; the
trigger then fires :class:`SensorSuccessEvent` with that dict. A probe that raises (registry or storage
unreachable) is retried at the next poll; after ``max_errors`` consecutive failures the trigger fires
:class:`SensorErrorEvent` and the sensor fails with the message. How long to wait is not the trigger's
business: the sensor defers with its ``timeout`` and Airflow ends the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["MlflowPollingTrigger", "PollingTrigger", "SensorErrorEvent", "SensorEvent", "SensorSuccessEvent"]


class SensorSuccessEvent(TypedDict):
    status: Literal["success"]
    result: dict[str, Any]


class SensorErrorEvent(TypedDict):
    status: Literal["error"]
    message: str


SensorEvent = SensorSuccessEvent | SensorErrorEvent


class PollingTrigger(BaseTrigger):
    """Base of the sensor triggers: subclasses give :meth:`probe` and :meth:`probe_kwargs`.

    :param poll_interval: Seconds between probes.
    :param max_errors: Consecutive probe failures tolerated before the trigger reports an error.
    """

    def __init__(self, *, poll_interval: float = 60.0, max_errors: int = 3) -> None:
        super().__init__()
        if poll_interval <= 0 or max_errors < 1:
            raise ValueError(
                f"{type(self).__name__}: poll_interval={poll_interval}, max_errors={max_errors}; "
                "expected poll_interval > 0 and max_errors >= 1"
            )
        self.poll_interval, self.max_errors = float(poll_interval), int(max_errors)

    def probe_kwargs(self) -> dict[str, Any]:
        """The subclass's own constructor arguments (primitives only)."""
        raise NotImplementedError

    def probe(self) -> dict[str, Any] | None:
        """Blocking check, run in a worker thread: the result once the condition holds, else ``None``."""
        raise NotImplementedError

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {**self.probe_kwargs(), "poll_interval": self.poll_interval, "max_errors": self.max_errors},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        while True:
            try:
                result = await asyncio.to_thread(self.probe)
            except Exception as exc:
                errors += 1
                message = f"{type(exc).__name__}: {exc}"
                if errors >= self.max_errors:
                    failed: SensorErrorEvent = {
                        "status": "error",
                        "message": f"{errors} consecutive failed checks; last: {message}",
                    }
                    yield TriggerEvent(failed)
                    return
                self.log.warning("Check %d/%d failed (trying again): %s", errors, self.max_errors, message)
            else:
                errors = 0
                if result is not None:
                    done: SensorSuccessEvent = {"status": "success", "result": result}
                    yield TriggerEvent(done)
                    return
            await asyncio.sleep(self.poll_interval)


class MlflowPollingTrigger(PollingTrigger):
    """A :class:`PollingTrigger` whose probe reads the MLflow registry through ``mlflow_conn_id``."""

    def __init__(self, *, mlflow_conn_id: str, poll_interval: float = 60.0, max_errors: int = 3) -> None:
        super().__init__(poll_interval=poll_interval, max_errors=max_errors)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def client(self) -> MlflowClient:
        """Built on the first probe (in the probe's thread: resolving the connection may block)."""
        from airflow_mlops.hooks.mlflow import MlflowHook

        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id).get_conn()
