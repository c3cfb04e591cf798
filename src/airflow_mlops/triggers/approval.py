"""Wait, in the triggerer, until a model version's approval is answered in the registry (``ApprovalAnsweredSensor``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.triggers.polling import MlflowPollingTrigger

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ApprovalAnsweredTrigger", "probe_approval"]


def probe_approval(client: MlflowClient, model: str, version: str) -> dict[str, Any] | None:
    """The recorded answer (``decision`` ``"approved"`` or ``"rejected"``, by, at, reason), ``None`` while pending."""
    from airflow_mlops.registry.approval import approval_answer

    answer = approval_answer(client, model, version)
    return answer.to_dict() if answer is not None else None


class ApprovalAnsweredTrigger(MlflowPollingTrigger):
    """Fire once ``model`` v``version`` carries an approval or a rejection; the event says which."""

    def __init__(self, *, model: str, version: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.version = model, version

    def probe_kwargs(self) -> dict[str, Any]:
        return {"mlflow_conn_id": self.mlflow_conn_id, "model": self.model, "version": self.version}

    def probe(self) -> dict[str, Any] | None:
        return probe_approval(self.client, self.model, self.version)
