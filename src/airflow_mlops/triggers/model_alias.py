"""Wait, in the triggerer, until a registry alias points at a version that passed its gate (``ModelAliasSensor``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.triggers.polling import MlflowPollingTrigger

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ModelAliasTrigger", "probe_gated_alias"]


def probe_gated_alias(client: MlflowClient, model: str, alias: str, version: str | None) -> dict[str, Any] | None:
    """``{"model", "alias", "version"}`` once ``model@alias`` is a servable version (``version``, if given)."""
    from airflow_mlops.registry.gated_alias import check_gated_alias

    check = check_gated_alias(client, model, alias, version)
    return check.to_dict() if check.satisfied else None


class ModelAliasTrigger(MlflowPollingTrigger):
    """Fire once ``model@alias`` points at a version whose gate passed and that was neither rejected nor rolled back.

    :param version: Only this version satisfies the wait (``None``: any servable version).
    """

    def __init__(self, *, model: str, alias: str, version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.alias, self.version = model, alias, version

    def probe_kwargs(self) -> dict[str, Any]:
        return {
            "mlflow_conn_id": self.mlflow_conn_id,
            "model": self.model,
            "alias": self.alias,
            "version": self.version,
        }

    def probe(self) -> dict[str, Any] | None:
        return probe_gated_alias(self.client, self.model, self.alias, self.version)
