"""Deployment targets behind one interface, so the deploy DAG does not care where a model serves.

A target moves traffic (canary percentage, shadow mirroring), promotes, rolls back, rejects and
reports its current state. ``LocalGatewayTarget`` is the bundled gateway: it follows the MLflow
registry, so the target only moves aliases and tags (through :mod:`airflow_mlops.deploy.promotion`,
guarded and audited). ``SageMakerTarget`` (:mod:`airflow_mlops.deploy.sagemaker`) moves the same aliases and
then reconciles its endpoint's variants with them. Azure ML is planned behind the same methods.

.. code-block:: python

    target = get_target("local", tracking_uri="sqlite:///mlflow.db", state_url=settings.state_db_url())
    target.set_traffic("fraud", "7", 5, actor="fraud__deploy/run_3", reason="canary step 1")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from airflow_mlops import settings
from airflow_mlops.config.schema import TARGET_KINDS, TargetKind
from airflow_mlops.deploy import promotion
from airflow_mlops.deploy.audit import AuditTrail

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops.deploy.promotion import DeploymentState, PromotionResult

__all__ = ["TARGET_KINDS", "DeploymentTarget", "LocalGatewayTarget", "RegistryTarget", "TargetKind", "get_target"]


@runtime_checkable
class DeploymentTarget(Protocol):
    """Where a model serves. Every method is idempotent and leaves an audit row per alias it moves.

    ``actor`` is who acts (DAG run id or approver) and ``reason`` why; both go to the audit trail.
    """

    def state(self, model: str) -> DeploymentState:
        """Champion, challenger, canary (and its percentage), shadow and previous, as the target serves them."""
        ...

    def set_traffic(
        self, model: str, canary_version: str | None, percent: float, *, actor: str, reason: str
    ) -> PromotionResult:
        """Send ``percent`` % of live traffic to ``canary_version``, the rest to the champion.

        ``canary_version=None`` or ``percent=0``: champion-only traffic (shadowing continues).
        """
        ...

    def start_shadow(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        """Mirror live traffic to ``version`` (its answers are logged, never returned)."""
        ...

    def stop_shadow(self, model: str, *, actor: str, reason: str) -> PromotionResult:
        """Stop mirroring."""
        ...

    def promote(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        """``version`` serves all traffic; the old champion is kept as ``previous``; rollout state cleared."""
        ...

    def rollback(self, model: str, to_version: str | None = None, *, actor: str, reason: str) -> PromotionResult:
        """Champion-only traffic; with ``to_version`` (or ``"previous"``) that version becomes the champion."""
        ...

    def reject(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        """Take ``version`` out of the rollout and mark it rejected."""
        ...


class RegistryTarget:
    """What every target shares: the guarded, audited alias moves of the registry, the source of truth."""

    def __init__(
        self, client: MlflowClient, audit: AuditTrail, *, lock_timeout: float = promotion.DEFAULT_LOCK_TIMEOUT
    ) -> None:
        self.deployments = promotion.Deployments(client, audit, lock_timeout=lock_timeout)
        self.lock_timeout = lock_timeout

    @property
    def client(self) -> MlflowClient:
        return self.deployments.client

    @property
    def audit(self) -> AuditTrail:
        return self.deployments.audit

    def state(self, model: str) -> DeploymentState:
        return self.deployments.state(model)


class LocalGatewayTarget(RegistryTarget):
    """The bundled serving gateway: it polls the registry, so changing the registry is the deployment.

    Every method is the matching guarded operation of :class:`~airflow_mlops.deploy.promotion.Deployments`.

    :param client: MLflow client of the registry the gateway reads.
    :param audit: Audit trail (and lock database) for the alias moves.
    :param lock_timeout: Seconds to wait for a concurrent operation on the same model.
    """

    kind: TargetKind = "local"

    @classmethod
    def from_options(
        cls,
        *,
        client: MlflowClient | None = None,
        audit: AuditTrail | None = None,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        state_url: str | None = None,
        lock_timeout: float = promotion.DEFAULT_LOCK_TIMEOUT,
    ) -> LocalGatewayTarget:
        """Build from ready objects (``client``, ``audit``) or from URIs (``tracking_uri``, ``state_url``)."""
        if client is None:
            import mlflow

            client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
        if audit is None:
            audit = AuditTrail(state_url or settings.state_db_url())
        return cls(client, audit, lock_timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"LocalGatewayTarget(tracking_uri={self.client.tracking_uri!r}, audit={self.audit!r})"

    def set_traffic(
        self, model: str, canary_version: str | None, percent: float, *, actor: str, reason: str
    ) -> PromotionResult:
        percent = percent if canary_version is not None else 0
        return self.deployments.set_canary(model, canary_version, percent, actor=actor, reason=reason)

    def start_shadow(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        return self.deployments.set_shadow(model, version, actor=actor, reason=reason)

    def stop_shadow(self, model: str, *, actor: str, reason: str) -> PromotionResult:
        return self.deployments.set_shadow(model, None, actor=actor, reason=reason)

    def promote(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        return self.deployments.promote(model, version, actor=actor, reason=reason)

    def rollback(self, model: str, to_version: str | None = None, *, actor: str, reason: str) -> PromotionResult:
        return self.deployments.rollback(model, to_version=to_version, actor=actor, reason=reason)

    def reject(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        return self.deployments.reject(model, version, actor=actor, reason=reason)


def get_target(kind: TargetKind, **options: Any) -> DeploymentTarget:
    """The deployment target of ``kind`` (the model config's ``rollout.target``).

    ``"local"`` takes the options of :meth:`LocalGatewayTarget.from_options` (``client``/``audit``
    or ``tracking_uri``/``state_url``). ``"sagemaker"`` takes ``client``, ``audit`` and ``target_options``
    (the config's ``rollout.target_options``, a :class:`~airflow_mlops.config.schema.SageMakerOptions`).
    """
    if kind == "local":
        options.pop("target_options", None)
        return LocalGatewayTarget.from_options(**options)
    if kind == "sagemaker":
        from airflow_mlops.config.schema import SageMakerOptions
        from airflow_mlops.deploy.sagemaker import SageMakerTarget

        target_options = options.pop("target_options", None)
        if not isinstance(target_options, SageMakerOptions):
            raise ValueError(
                f"deployment target 'sagemaker': got options {target_options!r}; expected SageMakerOptions"
            )
        if options.get("audit") is None:
            options["audit"] = AuditTrail(options.pop("state_url", None) or settings.state_db_url())
        options.pop("state_url", None)
        return SageMakerTarget.from_options(target_options, **options)
    if kind == "azureml":
        raise NotImplementedError(
            "deployment target 'azureml' is not implemented yet (planned: a target that reconciles the Azure ML "
            "endpoint's traffic with the registry); use 'local' for the bundled gateway or 'sagemaker'"
        )
    raise ValueError(f"deployment target: got {kind!r}; expected one of {list(TARGET_KINDS)}")
