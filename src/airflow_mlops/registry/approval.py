"""The approval answer a model version carries in the registry: approved, rejected, or still pending.

An approval is recorded on the version as ``Tag.APPROVED_BY`` / ``Tag.APPROVED_AT`` (written by
``RecordApprovalOperator`` from the answer to Airflow's ``ApprovalOperator``); a rejection as
``Tag.REJECTED_REASON`` / ``Tag.REJECTED_BY`` (written by the promotion protocol's ``reject``). A
rejection wins over an approval, as everywhere in the registry: a version approved and later
rejected is rejected. Plain Python over an ``MlflowClient``; no Airflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ApprovalAnswer", "Decision", "approval_answer"]

Decision = Literal["approved", "rejected"]


@dataclass(frozen=True)
class ApprovalAnswer:
    """The recorded answer. ``by``/``at`` come from the approval tags, ``reason``/``by`` from the rejection tags."""

    model: str
    version: str
    decision: Decision
    by: str | None
    at: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def approval_answer(client: MlflowClient, model: str, version: str | int) -> ApprovalAnswer | None:
    """The answer recorded on ``model`` v``version``, or ``None`` while the approval is pending.

    :raises MlflowException: when the version does not exist or the registry is unreachable.
    """
    version = str(version)
    tags = dict(client.get_model_version(model, version).tags or {})
    if Tag.REJECTED_REASON in tags:
        return ApprovalAnswer(
            model, version, "rejected", by=tags.get(Tag.REJECTED_BY), reason=tags[Tag.REJECTED_REASON]
        )
    if tags.get(Tag.APPROVED_BY):
        return ApprovalAnswer(model, version, "approved", by=tags[Tag.APPROVED_BY], at=tags.get(Tag.APPROVED_AT))
    return None
