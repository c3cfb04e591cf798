"""What every airflow-mlops sensor does the same way: check, then defer (or poke), then validate the event.

A subclass gives :meth:`MlopsSensor.probe` (a blocking check returning a small JSON-safe dict once the
condition holds, ``None`` before) and :meth:`MlopsSensor.trigger` (the trigger running the same check in
the triggerer). Then:

- ``deferrable=True``: ``execute`` probes once and returns at once if the condition already holds;
  otherwise it defers with ``timeout`` seconds, and ``execute_complete`` validates the trigger's event.
- ``deferrable=False``: Airflow's sensor loop calls :meth:`poke` (``mode="poke"`` or ``"reschedule"``),
  with ``timeout`` measured from the first poke as usual.

Either way the task returns :meth:`MlopsSensor.finish` of the probe's result, which is its XCom value.
Nothing heavy is imported at module level: sensors are constructed at DAG-parse time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from airflow_mlops.hooks.mlflow import MlflowHook

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

__all__ = ["MlflowSensor", "MlopsSensor", "iso_timestamp"]


def iso_timestamp(value: str | datetime | None, what: str) -> str | None:
    """A rendered ``since``/``until`` argument as an ISO timestamp with a timezone; ``None``/``""`` -> ``None``.

    :param what: ``"<task_id>: <argument>"`` for the error message.
    """
    if value is None or value == "":
        return None
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{what}: got {value!r}; expected an ISO timestamp with a timezone") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{what}: got {value!r} without a timezone; expected e.g. '2026-12-01T00:00:00+00:00'")
    return parsed.isoformat()


class MlopsSensor(BaseSensorOperator):
    """Base of our sensors (see the module docstring).

    :param deferrable: Wait in the triggerer instead of a worker slot; default from
        ``[operators] default_deferrable``.
    """

    ui_color = "#d8ecf3"

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def probe(self, context: Context) -> dict[str, Any] | None:
        """The result once the condition holds, ``None`` before (blocking; the sensor's only check)."""
        raise NotImplementedError

    def trigger(self) -> BaseTrigger:
        """The trigger that runs the same check in the triggerer."""
        raise NotImplementedError

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """The task's return value for a probe result (a subclass may fail here instead)."""
        return result

    def poke(self, context: Context) -> bool | PokeReturnValue:
        result = self.probe(context)
        if result is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.finish(result))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        result = self.probe(context)
        if result is not None:
            self.log.info("Condition already holds; not deferring: %s", result)
            return self.finish(result)
        self.defer(trigger=self.trigger(), method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Validate the trigger's event (``{"status": "success", "result": {...}}`` or an error) and finish."""
        if not isinstance(event, dict) or event.get("status") not in ("success", "error"):
            raise AirflowException(f"{self.task_id}: malformed trigger event {event!r}; expected a dict with a status")
        if event["status"] == "error":
            raise AirflowException(f"{self.task_id}: the trigger failed: {event.get('message')!r} (event {event!r})")
        result = event.get("result")
        if not isinstance(result, dict):
            raise AirflowException(f"{self.task_id}: trigger event without a result dict: {event!r}")
        self.log.info("Condition met in the triggerer: %s", result)
        return self.finish(result)


class MlflowSensor(MlopsSensor):
    """A sensor whose check reads the MLflow registry.

    :param mlflow_conn_id: Airflow connection of type ``mlflow`` (templated).
    """

    def __init__(self, *, mlflow_conn_id: str = "mlflow_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
