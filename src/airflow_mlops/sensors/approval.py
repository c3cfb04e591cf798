"""``ApprovalAnsweredSensor``: wait until a model version's pending approval is answered in the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.sensors.base import MlflowSensor

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

__all__ = ["ApprovalAnsweredSensor"]


class ApprovalAnsweredSensor(MlflowSensor):
    """Wait until ``model_name`` v``version`` is approved or rejected, as recorded on the version in MLflow.

    An approval is the tag ``Tag.APPROVED_BY`` (with ``Tag.APPROVED_AT``), written by
    ``RecordApprovalOperator`` from the answer to Airflow's ``ApprovalOperator``; a rejection is
    ``Tag.REJECTED_REASON`` (with ``Tag.REJECTED_BY``), written by the promotion protocol's ``reject``.
    A rejection wins over an approval.

    On approval the sensor succeeds and returns ``{"model", "version", "decision": "approved", "by", "at",
    "reason": None}``. On rejection it fails (``AirflowFailException``, no retries) with the reason and who
    rejected — unless ``fail_on_reject=False``, when it succeeds and returns the same dict with
    ``"decision": "rejected"`` so a downstream branch can act on it (like ``ApprovalOperator(fail_on_reject=...)``).

    :param model_name: Registered model name (templated).
    :param version: The version awaiting approval (templated), e.g. an upstream ``XComArg``.
    :param fail_on_reject: Fail the task when the answer is a rejection (default) instead of returning it.
    :param mlflow_conn_id: Airflow connection of type ``mlflow`` (templated).
    :param deferrable: Wait in the triggerer; default ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("model_name", "version", "mlflow_conn_id")

    def __init__(self, *, model_name: str, version: str | int, fail_on_reject: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version if not isinstance(version, int) else str(version)
        self.fail_on_reject = fail_on_reject

    def probe(self, context: Context) -> dict[str, Any] | None:
        from airflow_mlops.triggers.approval import probe_approval

        return probe_approval(self.hook.get_conn(), self.model_name, str(self.version))

    def trigger(self) -> BaseTrigger:
        from airflow_mlops.triggers.approval import ApprovalAnsweredTrigger

        return ApprovalAnsweredTrigger(
            mlflow_conn_id=self.mlflow_conn_id,
            model=self.model_name,
            version=str(self.version),
            poll_interval=self.poke_interval,
        )

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        if result.get("decision") == "rejected" and self.fail_on_reject:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(
                f"{result.get('model')} v{result.get('version')} was rejected by {result.get('by') or 'unknown'}: "
                f"{result.get('reason')}"
            )
        self.log.info(
            "%s v%s: %s by %s", result.get("model"), result.get("version"), result.get("decision"), result.get("by")
        )
        return result
