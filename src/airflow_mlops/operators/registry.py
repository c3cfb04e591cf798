"""Operators that move a gated version forward: record the human approval, make it the ``challenger``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops import settings
from airflow_mlops.exceptions import RegistryError
from airflow_mlops.operators.base import MlopsBaseOperator
from airflow_mlops.vocabulary import Alias, AssetKind, Tag, asset_uri

if TYPE_CHECKING:
    from airflow.sdk import Context


def candidate_asset_uri(model: str) -> str:
    return asset_uri(model, AssetKind.CANDIDATE)


class RecordApprovalOperator(MlopsBaseOperator):
    """Record the answer of a plain ``ApprovalOperator`` before ``challenger`` on this DAG run's version.

    For DAGs composed by hand around Airflow's own ``ApprovalOperator`` (our DAGs use
    :class:`~airflow_mlops.operators.approval.ModelApprovalOperator`, which records its answer itself).
    Writes what :func:`~airflow_mlops.registry.approval.record_answer` writes: approver, time and comment
    as version tags and one ``approval`` entry in the audit chain (once, however often it runs).

    :param answer: The ``ApprovalOperator``'s result (``approve.output``; templated).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "answer")

    def __init__(self, *, answer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answer = answer

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.deploy.audit import AuditTrail
        from airflow_mlops.registry.approval import HumanAnswer, record_answer
        from airflow_mlops.registry.versions import version_for_run

        answer = HumanAnswer.from_hitl(self.answer, where=f"{self.task_id}: answer")
        if not answer.approved:
            raise RegistryError(f"{self.task_id}: answer: expected an 'Approve' answer, got a rejection")
        with self.hook.activate() as client:
            version = version_for_run(client, self.model, self.run_id(client, context))
            if version is None:
                raise RegistryError(f"no registered version of {self.model} for this DAG run")
            record_answer(
                client,
                AuditTrail(settings.state_db_url()),
                self.model,
                version.version,
                stage=Alias.CHALLENGER,
                answer=answer,
                dag_run=f"{self.dag_id}/{context['dag_run'].run_id}",
            )
            self.write_card(client, version.version)
        self.log.info("%s v%s approved by %s at %s", self.model, version.version, answer.approver, answer.responded_at)
        return {"version": str(version.version), "approved_by": answer.approver, "approved_at": answer.responded_at}


class SetChallengerOperator(MlopsBaseOperator):
    """Point the ``challenger`` alias at this DAG run's gated version and announce it as an Asset event.

    Refuses a version whose gate did not pass (or that still awaits a required approval). Moving
    the alias is idempotent; the event (``mlops://<model>/candidate``) carries the version.

    :param require_approval: Refuse unless the version carries an approval tag.
    """

    def __init__(self, *, require_approval: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.require_approval = require_approval

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.deploy.audit import AuditTrail
        from airflow_mlops.deploy.promotion import Deployments
        from airflow_mlops.registry.versions import require_gate_passed, version_for_run

        name = self.model
        with self.hook.activate() as client:
            run_id = self.run_id(client, context)
            registered = version_for_run(client, name, run_id)
            if registered is None:
                raise RegistryError(f"no registered version of {name} for MLflow run {run_id}")
            version = str(registered.version)
            require_gate_passed(client, name, version)
            if self.require_approval and Tag.APPROVED_BY not in client.get_model_version(name, version).tags:
                raise RegistryError(f"{name} v{version} needs an approval before it can become challenger")
            moved = (
                Deployments(client, AuditTrail(settings.state_db_url()))
                .set_challenger(
                    name,
                    version,
                    actor=f"{self.dag_id}/{context['dag_run'].run_id}",
                    reason="gate passed" + (" and approved" if self.require_approval else ""),
                )
                .changed
            )
        self.log.info("%s@%s -> v%s (%s)", name, Alias.CHALLENGER, version, "moved" if moved else "already there")
        payload: dict[str, Any] = {
            "model": name,
            "version": version,
            "mlflow_run_id": run_id,
            "alias": Alias.CHALLENGER,
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = payload
        return {**payload, "alias_moved": moved}
