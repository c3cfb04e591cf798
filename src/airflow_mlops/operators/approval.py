"""``ModelApprovalOperator``: Airflow's approval form for one model version, whose answer becomes evidence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from airflow_mlops import settings
from airflow_mlops.exceptions import RegistryError
from airflow_mlops.operators.base import given
from airflow_mlops.operators.rollout import RolloutBaseOperator
from airflow_mlops.registry.approval import COMMENT_PARAM, MAX_COMMENT, HumanAnswer, record_answer
from airflow_mlops.vocabulary import Alias

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["APPROVAL_STAGES", "ModelApprovalOperator"]

#: The aliases an approval can stand before: training's ``challenger``, the rollout's ``canary`` and ``champion``.
APPROVAL_STAGES = (Alias.CHALLENGER, Alias.CANARY, Alias.CHAMPION)


class ModelApprovalOperator(RolloutBaseOperator, ApprovalOperator):
    """Ask a person to approve ``version`` of the model before it reaches ``stage``; keep their answer.

    Airflow's ``ApprovalOperator`` (Approve / Reject, assigned users, response timeout, Reject by default)
    with a ``comment`` field on the form, whose body gets the evidence on the version appended
    (:func:`airflow_mlops.gates.evidence.approval_body`: every gate check with value, threshold and status —
    vs the champion where there is one —, failures and slice gaps, the drift runs that started its training,
    lineage, a link to the version in the MLflow UI); a version without a readable gate report fails the task
    (nothing to approve on). Whatever the answer, it is recorded before anything downstream runs
    (:func:`airflow_mlops.registry.approval.record_answer`): the version tag ``mlops.decision.<stage>``
    (decision, who, when, comment, DAG run), the approval tags before ``challenger``, and an ``approval`` or
    ``rejection`` entry in the audit chain. A Reject then takes the version out of the rollout through the
    deployment target (its ``challenger``/``canary``/``shadow`` aliases go, it is tagged rejected, so no
    traffic stays on it) and downstream tasks are skipped, as with ``ApprovalOperator``. A recording that
    fails fails the task (closed): nothing downstream runs on an answer that left no evidence.

    :param version: The version asked about (templated; e.g. an upstream ``XComArg``).
    :param stage: The alias the version reaches once approved: ``challenger``, ``canary`` or ``champion``.
    """

    template_fields: Sequence[str] = tuple(
        dict.fromkeys((*RolloutBaseOperator.template_fields, *ApprovalOperator.template_fields, "version"))
    )

    def __init__(self, *, version: Any, stage: str, **kwargs: Any) -> None:
        if stage not in APPROVAL_STAGES:
            raise ValueError(f"stage: got {stage!r}; expected one of {', '.join(APPROVAL_STAGES)}")
        # Airflow has already merged the DAG's params in here; the form shows the task's own (source "task")
        given_params = kwargs.pop("params", None)
        params = {k: given_params.get_param(k) for k in given_params} if isinstance(given_params, ParamsDict) else {}
        if isinstance(given_params, dict):
            params = dict(given_params)
        if COMMENT_PARAM not in params or getattr(params[COMMENT_PARAM], "source", None) != "task":
            params[COMMENT_PARAM] = Param(
                "",
                type=["null", "string"],
                maxLength=MAX_COMMENT,
                title="Comment",
                description="Why you approve or reject (kept with your answer in the audit trail)",
                source="task",
            )  # also over a DAG param of that name, which the form would not show
        kwargs["params"] = params
        kwargs.setdefault("defaults", ["Reject"])
        super().__init__(**kwargs)
        self.version = version
        self.stage = stage

    def execute(self, context: Context) -> Any:
        """Put the evidence on the form (gate verdicts, drift that retrained it, lineage, MLflow link), then ask."""
        from airflow_mlops.gates.evidence import approval_body, read_evidence

        version = given(self.version)
        if version is None:
            raise RegistryError(f"{self.dag_id}.{self.task_id}: no version to ask about (version rendered empty)")
        with self.hook.activate() as client:
            evidence = read_evidence(client, self.model, version, stage=self.stage, ui_url=self.hook.ui_url)
        self.body = "\n\n".join(part for part in (self.body, approval_body(evidence)) if part)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airflow_mlops.deploy.audit import AuditTrail
        from airflow_mlops.deploy.promotion import Deployments

        # the answer, checked (ApprovalOperator's own completion ends a Reject by raising to skip downstream,
        # so the evidence is written first and the skip comes last)
        result = HITLOperator.execute_complete(self, context, event)
        where = f"{self.dag_id}.{self.task_id}"
        answer = HumanAnswer.from_hitl(result, where=where)
        version = given(self.version)
        if version is None:
            raise RegistryError(f"{where}: no version to record the answer on (version rendered empty)")
        with self.hook.activate() as client:
            audit = AuditTrail(settings.state_db_url())
            record_answer(
                client, audit, self.model, version, stage=self.stage, answer=answer, dag_run=self.actor(context)
            )
            self.log.info(
                "%s v%s %s by %s before %s", self.model, version, answer.decision, answer.approver, self.stage
            )
            if not answer.approved:
                reason = f"rejected at {self.task_id} by {answer.approver}"
                reason += f": {answer.comment}" if answer.comment else ""
                if self.stage == Alias.CHALLENGER:  # not deployed yet: the registry is all there is to change
                    Deployments(client, audit).reject(self.model, version, actor=answer.approver, reason=reason)
                else:
                    self.deployment_target(client).reject(self.model, version, actor=answer.approver, reason=reason)
            self.write_card(client, version)  # last, and best effort: the decision has taken effect
        return super().execute_complete(context, event)
