"""Operators of ``<model>__deploy`` and ``<model>__rollback``: thin wrappers over ``deploy`` targets.

Waiting (shadow window, canary steps) happens in triggers; these operators set traffic through the
deployment target, defer, and decide from the trigger's statistics with ``deploy.health``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_mlops import settings
from airflow_mlops.config.schema import parse_duration
from airflow_mlops.exceptions import GateFailedError, RegistryError
from airflow_mlops.operators.base import MlopsBaseOperator
from airflow_mlops.vocabulary import Alias, Tag

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.deploy.targets import DeploymentTarget

PARAM_VERSION = "version"


class RolloutBaseOperator(MlopsBaseOperator):
    """Adds the deployment target, the actor (this DAG run) and the prediction-log location."""

    def target(self, client: Any) -> DeploymentTarget:
        from airflow_mlops.deploy.audit import AuditTrail
        from airflow_mlops.deploy.targets import get_target

        kind = self.loaded.config.rollout.target
        return get_target(kind, client=client, audit=AuditTrail(settings.state_db_url()))

    def actor(self, context: Context) -> str:
        return f"{self.dag_id}/{context['dag_run'].run_id}"

    @cached_property
    def log_location(self) -> tuple[str, str | None]:
        root, conn_id = self.loaded.prediction_log()
        if not root:
            raise ValueError(
                f"{self.loaded.path}: serving.prediction_log is not set and neither is [mlops] prediction_log "
                f"(${settings.OPTIONS['prediction_log'].env}); "
                "the rollout reads the gateway's prediction log from there"
            )
        return root, conn_id

    def candidate(self, context: Context) -> str:
        version = context["ti"].xcom_pull(task_ids="resolve_candidate")
        if not isinstance(version, dict) or not version.get("version"):
            raise RegistryError(f"resolve_candidate returned {version!r}; expected a version")
        return str(version["version"])


class ResolveCandidateOperator(RolloutBaseOperator):
    """The version to roll out: the candidate Asset event's version, the ``version`` param, or ``challenger``."""

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.registry.versions import alias_version, require_gate_passed

        version = _version_from_events(context.get("triggering_asset_events"))
        params = context.get("params") or {}
        version = version or (str(params[PARAM_VERSION]) if params.get(PARAM_VERSION) else None)
        with self.hook.activate() as client:
            version = version or alias_version(client, self.model_name, Alias.CHALLENGER)
            if version is None:
                raise RegistryError(f"{self.model_name}: no candidate version (no event, no param, no challenger)")
            require_gate_passed(client, self.model_name, version)
            state = self.target(client).state(self.model_name)
        if state.champion is None:
            raise RegistryError(f"{self.model_name} has no champion to compare v{version} with; promote one first")
        self.log.info("Rolling out %s v%s against champion v%s", self.model_name, version, state.champion)
        return {"version": version, "champion": state.champion}


def _version_from_events(events: Any) -> str | None:
    if not events:
        return None
    found = None
    for asset_events in events.values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            if extra.get("version"):
                found = str(extra["version"])
    return found


class ShadowOperator(RolloutBaseOperator):
    """Mirror traffic to the candidate for the configured window (deferred), then gate the comparison.

    Failing the comparison rejects the candidate: its aliases are cleaned and the reason recorded.
    """

    def execute(self, context: Context) -> None:
        from airflow_mlops.triggers.rollout import ShadowWindowTrigger

        cfg = self.loaded.config.rollout.shadow
        version = self.candidate(context)
        champion = context["ti"].xcom_pull(task_ids="resolve_candidate")["champion"]
        root, conn_id = self.log_location  # before traffic moves: no shadow without a log to judge it by
        with self.hook.activate() as client:
            self.target(client).start_shadow(self.model_name, version, actor=self.actor(context), reason="shadow phase")
        duration = parse_duration(cfg.duration).total_seconds()
        start = time.time()
        self.defer(
            trigger=ShadowWindowTrigger(
                log_root=root,
                log_conn_id=conn_id,
                model=self.model_name,
                champion=str(champion),
                shadow=version,
                start=start,
                duration=duration,
                min_requests=cfg.min_requests,
                deadline=start + max(3 * duration, duration + 60),
                check_interval=min(5.0, max(duration / 10, 0.5)),
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_mlops.deploy.health import ShadowStats, decide_shadow

        version = self.candidate(context)
        with self.hook.activate() as client:
            target = self.target(client)
            if not event or event.get("status") != "success":
                reasons = [f"shadow window could not be evaluated: {event!r}"]
            else:
                decision = decide_shadow(ShadowStats(**event["stats"]), self.loaded.config.rollout.shadow)
                reasons = decision.reasons
            target.stop_shadow(self.model_name, actor=self.actor(context), reason="shadow phase over")
            if reasons:
                reason = "shadow gate failed: " + "; ".join(reasons)
                target.reject(self.model_name, version, actor=self.actor(context), reason=reason)
                raise GateFailedError(f"{self.model_name} v{version} rejected: {reason}")
        self.log.info("Shadow gate passed for %s v%s: %s", self.model_name, version, event)
        return {"version": version, "stats": (event or {}).get("stats")}


class CanaryStepOperator(RolloutBaseOperator):
    """Give the candidate ``percent`` % of traffic, watch it for a step (deferred); roll back on a breach.

    :param percent: This step's canary share.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "percent")

    def __init__(self, *, percent: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.percent = percent

    def execute(self, context: Context) -> None:
        from airflow_mlops.triggers.rollout import CanaryStepTrigger

        cfg = self.loaded.config
        version = self.candidate(context)
        champion = context["ti"].xcom_pull(task_ids="resolve_candidate")["champion"]
        root, conn_id = self.log_location  # before traffic moves: no canary without a log to judge it by
        with self.hook.activate() as client:
            self.target(client).set_traffic(
                self.model_name,
                version,
                float(self.percent),
                actor=self.actor(context),
                reason=f"canary step {self.percent}%",
            )
        self.defer(
            trigger=CanaryStepTrigger(
                log_root=root,
                log_conn_id=conn_id,
                model=self.model_name,
                champion=str(champion),
                canary=version,
                start=time.time(),
                duration=parse_duration(cfg.rollout.canary.step_duration).total_seconds(),
                check_interval=parse_duration(cfg.rollout.canary.check_interval).total_seconds(),
                limits=cfg.rollout.canary.model_dump(mode="json"),
                metric=cfg.primary_metric,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        version = self.candidate(context)
        if event and event.get("status") == "success":
            self.log.info("Canary step %s%% healthy for %s v%s: %s", self.percent, self.model_name, version, event)
            return {"version": version, "percent": self.percent, "stats": event.get("stats")}
        reasons = (
            event.get("reasons") if event and event.get("status") == "breach" else [f"health check error: {event!r}"]
        )
        reason = f"canary step {self.percent}%: " + "; ".join(reasons or [])
        with self.hook.activate() as client:
            # champion-only traffic at once, and the candidate loses its aliases (reason recorded on it)
            self.target(client).reject(self.model_name, version, actor=self.actor(context), reason=reason)
            client.set_model_version_tag(self.model_name, version, Tag.ROLLBACK_REASON, reason)
        self.log.error("Rolled back %s to champion-only traffic: %s", self.model_name, reason)
        raise GateFailedError(f"{self.model_name} v{version} rolled back: {reason}")


class PromoteOperator(RolloutBaseOperator):
    """Make the candidate the champion (old champion kept as ``previous``) in one guarded operation."""

    def execute(self, context: Context) -> dict[str, Any]:
        version = self.candidate(context)
        with self.hook.activate() as client:
            result = self.target(client).promote(
                self.model_name, version, actor=self.actor(context), reason="canary completed"
            )
        self.log.info("Promoted %s v%s: %s", self.model_name, version, result)
        return {"version": version, "changed": bool(getattr(result, "changed", True))}


class RollbackOperator(RolloutBaseOperator):
    """Serve ``version`` (default: ``previous``) to all traffic; confirm on the gateway when configured."""

    def execute(self, context: Context) -> dict[str, Any]:
        params = context.get("params") or {}
        wanted = str(params.get(PARAM_VERSION) or Alias.PREVIOUS)
        with self.hook.activate() as client:
            from airflow_mlops.registry.versions import alias_version

            version = alias_version(client, self.model_name, wanted) if not wanted.isdigit() else wanted
            if version is None:
                raise RegistryError(f"{self.model_name}: no version under alias {wanted!r} to roll back to")
            self.target(client).rollback(
                self.model_name, version, actor=self.actor(context), reason=f"manual rollback to {wanted}"
            )
        self._confirm_served(version)
        return {"version": version}

    def _confirm_served(self, version: str, timeout: float = 30.0) -> None:
        url = self.loaded.config.serving.gateway_url
        if not url:
            return
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{url.rstrip('/')}/ready", timeout=2.0).json()
                if ready["models"].get(self.model_name, {}).get("champion") == version:
                    self.log.info("Gateway %s serves %s v%s", url, self.model_name, version)
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise RegistryError(f"gateway {url} did not serve {self.model_name} v{version} within {timeout:.0f}s")
