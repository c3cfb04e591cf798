"""``ModelAliasSensor``: wait until a registry alias points at a version that passed its gate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.sensors.base import MlflowSensor

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

__all__ = ["ModelAliasSensor"]


class ModelAliasSensor(MlflowSensor):
    """Wait until ``model_name@alias`` points at a version whose gate passed and that was not rejected or rolled back.

    Returns ``{"model", "alias", "version"}`` (the version that satisfied the wait) as its XCom value.

    .. code-block:: python

        champion = ModelAliasSensor(task_id="champion", model_name="fraud", alias=Alias.CHAMPION)
        use = score(version=champion.output["version"])

    :param model_name: Registered model name (templated).
    :param alias: Registry alias, e.g. ``Alias.CHAMPION`` (templated).
    :param version: Wait for this version only (templated); ``None``: any servable version.
    :param mlflow_conn_id: Airflow connection of type ``mlflow`` (templated).
    :param deferrable: Wait in the triggerer; default ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("model_name", "alias", "version", "mlflow_conn_id")

    def __init__(self, *, model_name: str, alias: str, version: str | int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.alias = alias
        self.version = None if version is None else str(version)

    def _wanted(self) -> str | None:
        return str(self.version) if self.version not in (None, "") else None

    def probe(self, context: Context) -> dict[str, Any] | None:
        from airflow_mlops.triggers.model_alias import probe_gated_alias

        return probe_gated_alias(self.hook.get_conn(), self.model_name, self.alias, self._wanted())

    def trigger(self) -> BaseTrigger:
        from airflow_mlops.triggers.model_alias import ModelAliasTrigger

        return ModelAliasTrigger(
            mlflow_conn_id=self.mlflow_conn_id,
            model=self.model_name,
            alias=self.alias,
            version=self._wanted(),
            poll_interval=self.poke_interval,
        )
