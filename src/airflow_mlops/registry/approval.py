"""Approval answers on a model version: recorded from a person's answer, read back as approved, rejected or pending.

A person answers Airflow's ``ApprovalOperator`` (``ModelApprovalOperator`` in our DAGs). :func:`record_answer`
keeps that answer as evidence: the version tag ``mlops.decision.<stage>`` (decision, by, at, comment, DAG
run) for every stage, ``Tag.APPROVED_BY`` / ``Tag.APPROVED_AT`` / ``Tag.APPROVED_COMMENT`` for an approval
before ``challenger`` (what training approvals always wrote), and one ``approval`` or ``rejection`` entry in
the hash-chained audit trail. A rejection is recorded on the version as ``Tag.REJECTED_REASON`` /
``Tag.REJECTED_BY`` (written by the promotion protocol's ``reject``). A rejection wins over an approval, as
everywhere in the registry: a version approved and later rejected is rejected. Plain Python over an
``MlflowClient``; no Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_mlops.exceptions import RegistryError
from airflow_mlops.vocabulary import Alias, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops.deploy.audit import AliasEvent, AuditTrail

__all__ = [
    "COMMENT_PARAM",
    "MAX_COMMENT",
    "ApprovalAnswer",
    "Decision",
    "HumanAnswer",
    "approval_answer",
    "record_answer",
]

#: The approval form's free-text field (a task param of the HITL form).
COMMENT_PARAM = "comment"
#: Longest comment kept (characters); a longer one is cut, so a person's answer is never lost over it.
MAX_COMMENT = 2000
#: Who answered when nobody did: the approval timed out and took its default answer.
TIMED_OUT = "nobody (timed out: default answer)"

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


@dataclass(frozen=True)
class HumanAnswer:
    """A person's answer to an approval, checked: which option, who, when, and their comment."""

    approved: bool
    approver: str
    responded_at: str
    comment: str

    @property
    def decision(self) -> Decision:
        return "approved" if self.approved else "rejected"

    @classmethod
    def from_hitl(cls, answer: Any, *, where: str) -> HumanAnswer:
        """Read the result of Airflow's ``ApprovalOperator`` (``chosen_options``, ``responded_by_user``,
        ``responded_at``, ``params_input``); anything else is refused with ``where`` named."""
        if not isinstance(answer, Mapping):
            raise RegistryError(f"{where}: expected the approval task's answer (a mapping), got {answer!r}")
        chosen = answer.get("chosen_options")
        if chosen not in (["Approve"], ["Reject"]):
            raise RegistryError(f"{where}: chosen_options: expected ['Approve'] or ['Reject'], got {chosen!r}")
        user = answer.get("responded_by_user") or {}
        if not isinstance(user, Mapping):
            raise RegistryError(f"{where}: responded_by_user: expected a mapping, got {user!r}")
        # the user id, unique in Airflow's auth manager (a display name need not be)
        approver = _printable(str(user.get("id") or user.get("name") or ""), one_line=True)[:256] or TIMED_OUT
        responded = answer.get("responded_at")
        responded_at = responded.isoformat() if isinstance(responded, datetime) else str(responded or "")
        params = answer.get("params_input") or {}
        return cls(chosen == ["Approve"], approver, responded_at, clean_comment(params.get(COMMENT_PARAM)))


def _printable(text: str, *, one_line: bool = False) -> str:
    """``text`` without control characters (no terminal escapes, no forged lines); newlines and tabs kept
    unless ``one_line``."""
    kept = "" if one_line else "\n\t"
    cleaned = "".join(c if c.isprintable() or c in kept else " " for c in text)
    return " ".join(cleaned.split()) if one_line else cleaned.strip()


def clean_comment(raw: Any) -> str:
    """The approval form's comment as kept: text (a number or other JSON value as its JSON text), printable,
    at most :data:`MAX_COMMENT` characters (cut and marked). The REST API does not hold ``params_input`` to the
    form's schema, so nothing about it is assumed; refusing it would lose the person's answer."""
    if raw is None:
        return ""
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    text = _printable(text)
    if len(text) > MAX_COMMENT:
        marker = " [cut]"
        text = text[: MAX_COMMENT - len(marker)] + marker
    return text


def record_answer(
    client: MlflowClient,
    audit: AuditTrail,
    model: str,
    version: str | int,
    *,
    stage: str,
    answer: HumanAnswer,
    dag_run: str,
) -> AliasEvent:
    """Keep ``answer`` (given at the approval before ``stage``) on the version and in the audit trail.

    Safe to repeat: the same answer in the same DAG run is one audit entry, however often it is recorded.
    """
    version = str(version)
    record = {
        "decision": answer.decision,
        "by": answer.approver,
        "at": answer.responded_at,
        "comment": answer.comment,
        "dag_run": dag_run,
    }
    client.set_model_version_tag(model, version, Tag.decision(stage), json.dumps(record, sort_keys=True))
    if stage == Alias.CHALLENGER and answer.approved:
        client.set_model_version_tag(model, version, Tag.APPROVED_BY, answer.approver)
        client.set_model_version_tag(model, version, Tag.APPROVED_AT, answer.responded_at)
        if answer.comment:
            client.set_model_version_tag(model, version, Tag.APPROVED_COMMENT, answer.comment)
        elif Tag.APPROVED_COMMENT in (client.get_model_version(model, version).tags or {}):
            client.delete_model_version_tag(model, version, Tag.APPROVED_COMMENT)  # not an earlier answer's
    audit.mirror_heads_to(client)
    return audit.record_decision(
        model,
        version,
        approved=answer.approved,
        stage=stage,
        approver=answer.approver,
        responded_at=answer.responded_at,
        comment=answer.comment,
        dag_run=dag_run,
    )
