"""Operators of ``<model>__deploy`` and ``<model>__rollback``: thin wrappers over ``deploy`` targets.

Waiting (shadow window, canary steps) happens in triggers; these operators set traffic through the
deployment target, defer, and decide from the trigger's statistics with ``deploy.health``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_mlops import settings
from airflow_mlops.config.schema import parse_duration
from airflow_mlops.exceptions import GateFailedError, RegistryError
from airflow_mlops.operators.base import MlopsBaseOperator, given
from airflow_mlops.vocabulary import Alias, Tag

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pydantic import BaseModel

    from airflow_mlops.config.schema import CanaryConfig, ShadowConfig
    from airflow_mlops.deploy.targets import DeploymentTarget
    from airflow_mlops.training.classes import ClassSet

    M = TypeVar("M", bound=BaseModel)

PARAM_VERSION = "version"


class RolloutBaseOperator(MlopsBaseOperator):
    """Adds the deployment target, the actor (this DAG run) and the prediction-log location.

    :param target: Deployment target kind (``local``, ...); default: the config's ``rollout.target``.
    :param log_root: Prediction-log root the gateway writes (templated); default: the config's
        ``serving.prediction_log``, else the ``[mlops] prediction_log`` setting.
    :param log_conn_id: Airflow connection for an object-store ``log_root`` (templated).
    :param target_options: The target's options (``rollout.target_options`` fields, e.g. ``endpoint_name`` for
        ``sagemaker``); default: the config's.
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "target",
        "log_root",
        "log_conn_id",
        "target_options",
    )

    def __init__(
        self,
        *,
        target: str | None = None,
        log_root: str | None = None,
        log_conn_id: str | None = None,
        target_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.log_root = log_root
        self.log_conn_id = log_conn_id
        self.target_options = target_options

    @property
    def target_kind(self) -> str:
        from airflow_mlops.deploy.targets import TARGET_KINDS

        kind = self.from_config(self.target or None, lambda loaded: loaded.config.rollout.target, "target")
        if kind not in TARGET_KINDS:
            raise ValueError(f"{self.task_id}: target: got {kind!r}; expected one of {list(TARGET_KINDS)}")
        return str(kind)

    def target_settings(self) -> BaseModel:
        """The target's options: ``target_options`` checked against the target's model, else the config's."""
        from airflow_mlops.config.schema import TARGET_OPTIONS

        kind = self.target_kind
        if self.target_options is not None:
            return _validated(TARGET_OPTIONS[kind], self.target_options, f"{self.task_id}: target_options")
        if self.has_config and self.loaded.config.rollout.target == kind:
            return self.loaded.config.rollout.target_options
        return _validated(TARGET_OPTIONS[kind], {}, f"{self.task_id}: target_options")

    def deployment_target(self, client: Any) -> DeploymentTarget:
        from airflow_mlops.deploy.audit import AuditTrail
        from airflow_mlops.deploy.targets import get_target

        kind = self.target_kind
        return get_target(
            kind,  # type: ignore[arg-type]
            client=client,
            audit=AuditTrail(settings.state_db_url()),
            target_options=self.target_settings(),
        )

    def cloudwatch_source(self) -> dict[str, Any] | None:
        """For a SageMaker target, its options (JSON): health is read from the endpoint's CloudWatch metrics;
        ``None`` for the local gateway, whose prediction log is read."""
        if self.target_kind != "sagemaker":
            return None
        return dict(self.target_settings().model_dump(mode="json"))

    def health_inputs(self) -> tuple[dict[str, Any] | None, str, str | None]:
        """The CloudWatch source (SageMaker) or the prediction log's root and connection (local), checked
        before traffic moves: no rollout without evidence to judge it by."""
        cloudwatch = self.cloudwatch_source()
        if cloudwatch is not None:
            return cloudwatch, "", None
        root, conn_id = self.log_location
        return None, root, conn_id

    def actor(self, context: Context) -> str:
        return f"{self.dag_id}/{context['dag_run'].run_id}"

    @cached_property
    def log_location(self) -> tuple[str, str | None]:
        if self.log_root:
            return str(self.log_root), (str(self.log_conn_id) if self.log_conn_id else None)
        if not self.has_config:
            root: str | None = settings.prediction_log_root()
            conn_id = str(self.log_conn_id) if self.log_conn_id else None
            where = "log_root is not given"
        else:
            root, conn_id = self.loaded.prediction_log()
            where = f"{self.loaded.path}: serving.prediction_log is not set"
        if not root:
            raise ValueError(
                f"{where} and neither is [mlops] prediction_log (${settings.OPTIONS['prediction_log'].env}); "
                "the rollout reads the gateway's prediction log from there"
            )
        return root, conn_id


def version_classes(client: Any, model: str, version: str) -> ClassSet | None:
    """``version``'s classes (its ``mlops.classes`` tag); ``None`` for a regressor or a 0/1 classifier trained
    before classes were recorded.

    :raises DataError: the tag is not a class set (edited by hand): its answers cannot be scored safely.
    """
    from airflow_mlops.monitoring.window import recorded_classes

    tags = client.get_model_version(model, version).tags or {}
    return recorded_classes(dict(tags), f"{model} v{version}")


def _required_version(task_id: str, field: str, value: Any) -> str:
    """A version argument as a string; a clear error for an unresolved or empty value."""
    text = given(value)
    if text is None or isinstance(value, bool):
        raise RegistryError(f"{task_id}: {field}: got {value!r}; expected a model version (e.g. the output of resolve)")
    if not text.isdigit():
        raise RegistryError(f"{task_id}: {field}: got {value!r}; expected a version number")
    return text


class ResolveCandidateOperator(RolloutBaseOperator):
    """The version to roll out and the champion it is judged against.

    In order: the newest triggering candidate Asset event's ``version``, then ``version``, then the
    ``challenger`` alias. The version must have passed its gate; the model must have a champion.

    :param version: A version to roll out when no candidate event triggered the run (templated).
    :return: ``{"version": str, "champion": str}`` — wire it with ``.output["version"]``.
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "version")

    def __init__(self, *, version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.registry.versions import alias_version, require_gate_passed

        version = _version_from_events(context.get("triggering_asset_events"))
        version = version or given(self.version)
        if version is not None:
            version = _required_version(self.task_id, "version", version)
        with self.hook.activate() as client:
            version = version or alias_version(client, self.model, Alias.CHALLENGER)
            if version is None:
                raise RegistryError(f"{self.model}: no candidate version (no event, no param, no challenger)")
            require_gate_passed(client, self.model, version)
            target = self.deployment_target(client)
            check_in_sync = getattr(target, "check_in_sync", None)
            if check_in_sync is not None:  # a cloud endpoint changed by hand: stop before anything moves
                check_in_sync(self.model)
            state = target.state(self.model)
        if state.champion is None:
            raise RegistryError(f"{self.model} has no champion to compare v{version} with; promote one first")
        self.log.info("Rolling out %s v%s against champion v%s", self.model, version, state.champion)
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
    """Mirror traffic to ``version`` for the policy's window (deferred), then gate the comparison.

    Failing the comparison rejects the candidate: its aliases are cleaned and the reason recorded.

    :param version: The candidate (templated; e.g. ``resolve.output["version"]``).
    :param champion: The champion it is compared with (templated).
    :param policy: Shadow policy (``duration``, ``min_requests``, ``min_agreement``, ``max_error_rate``,
        ``max_latency_p95_ms``; see the config's ``rollout.shadow``); default: the config's.
    :return: ``{"version": str, "stats": {...}}``.
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "version", "champion", "policy")

    def __init__(self, *, version: Any, champion: Any, policy: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.champion = champion
        self.policy = policy

    @property
    def shadow_policy(self) -> ShadowConfig:
        from airflow_mlops.config.schema import ShadowConfig

        if self.policy is not None:
            return _validated(ShadowConfig, self.policy, f"{self.task_id}: policy")
        return self.from_config(None, lambda loaded: loaded.config.rollout.shadow, "policy")

    def execute(self, context: Context) -> None:
        from airflow_mlops.triggers.rollout import ShadowWindowTrigger

        policy = self.shadow_policy
        version = _required_version(self.task_id, "version", self.version)
        champion = _required_version(self.task_id, "champion", self.champion)
        cloudwatch, root, conn_id = self.health_inputs()
        with self.hook.activate() as client:
            target = self.deployment_target(client)
            _moved_or_rejected(
                target,
                lambda: target.start_shadow(self.model, version, actor=self.actor(context), reason="shadow phase"),
                self.model,
                version,
                self.actor(context),
            )
        duration = parse_duration(policy.duration).total_seconds()
        start = time.time()
        self.defer(
            trigger=ShadowWindowTrigger(
                log_root=root,
                log_conn_id=conn_id,
                model=self.model,
                champion=champion,
                shadow=version,
                start=start,
                duration=duration,
                min_requests=policy.min_requests,
                deadline=start + max(3 * duration, duration + 60),
                check_interval=min(5.0, max(duration / 10, 0.5)),
                cloudwatch=cloudwatch,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_mlops.deploy.health import ShadowStats, decide_shadow

        version = _required_version(self.task_id, "version", self.version)
        with self.hook.activate() as client:
            target = self.deployment_target(client)
            if not event or event.get("status") != "success":
                reasons = [f"shadow window could not be evaluated: {event!r}"]
            else:
                decision = decide_shadow(ShadowStats(**event["stats"]), self.shadow_policy)
                reasons = decision.reasons
            target.stop_shadow(self.model, actor=self.actor(context), reason="shadow phase over")
            if reasons:
                reason = "shadow gate failed: " + "; ".join(reasons)
                target.reject(self.model, version, actor=self.actor(context), reason=reason)
                raise GateFailedError(f"{self.model} v{version} rejected: {reason}")
        self.log.info("Shadow gate passed for %s v%s: %s", self.model, version, event)
        return {"version": version, "stats": (event or {}).get("stats")}


class CanaryStepOperator(RolloutBaseOperator):
    """Give ``version`` ``percent`` % of traffic, watch it for a step (deferred); roll back on a breach.

    :param version: The candidate (templated; e.g. ``resolve.output["version"]``).
    :param champion: The champion it is compared with (templated).
    :param percent: This step's canary share (templated).
    :param policy: Canary policy (``step_duration``, ``check_interval``, ``max_error_rate``,
        ``max_latency_p95_ms``, ``min_requests``, ``max_metric_regression``, ``min_labels``; see the
        config's ``rollout.canary``); default: the config's.
    :param metric: The metric judged on labelled answers; default: the config's ``primary_metric``.
    :return: ``{"version": str, "percent": float, "stats": {...}}``.
    """

    template_fields: Sequence[str] = (
        *RolloutBaseOperator.template_fields,
        "version",
        "champion",
        "percent",
        "policy",
        "metric",
    )

    def __init__(
        self,
        *,
        version: Any,
        champion: Any,
        percent: float | str,
        policy: Mapping[str, Any] | None = None,
        metric: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.champion = champion
        self.percent = percent
        self.policy = policy
        self.metric = metric

    @property
    def canary_policy(self) -> CanaryConfig:
        from airflow_mlops.config.schema import CanaryConfig

        if self.policy is not None:
            return _validated(CanaryConfig, self.policy, f"{self.task_id}: policy")
        return self.from_config(None, lambda loaded: loaded.config.rollout.canary, "policy")

    def _percent(self) -> float:
        try:
            value = float(self.percent)
        except (TypeError, ValueError):
            value = float("nan")
        if not 0.0 < value <= 100.0:
            raise ValueError(f"{self.task_id}: percent: got {self.percent!r}; expected a number in (0, 100]")
        return value

    def execute(self, context: Context) -> None:
        from airflow_mlops.triggers.rollout import CanaryStepTrigger

        policy = self.canary_policy
        metric = self.from_config(self.metric or None, lambda loaded: loaded.config.primary_metric, "metric")
        percent = self._percent()
        version = _required_version(self.task_id, "version", self.version)
        champion = _required_version(self.task_id, "champion", self.champion)
        cloudwatch, root, conn_id = self.health_inputs()
        with self.hook.activate() as client:
            classes = self._classes(client, metric, version, champion)  # a bad tag fails before traffic moves
            target = self.deployment_target(client)
            _moved_or_rejected(
                target,
                lambda: target.set_traffic(
                    self.model, version, percent, actor=self.actor(context), reason=f"canary step {percent:g}%"
                ),
                self.model,
                version,
                self.actor(context),
            )
        if classes:
            self.log.info("Labelled answers of v%s and v%s are scored with classes %s", version, champion, classes)
        self.defer(
            trigger=CanaryStepTrigger(
                log_root=root,
                log_conn_id=conn_id,
                model=self.model,
                champion=champion,
                canary=version,
                start=time.time(),
                duration=parse_duration(policy.step_duration).total_seconds(),
                check_interval=parse_duration(policy.check_interval).total_seconds(),
                limits=policy.model_dump(mode="json"),
                metric=metric,
                classes=classes,
                cloudwatch=cloudwatch,
            ),
            method_name="execute_complete",
        )

    def _classes(self, client: Any, metric: str | None, *versions: str) -> dict[str, str | None]:
        """Each version's ``mlops.classes`` (JSON, ``None`` without one) when ``metric`` scores classes: how the
        health check reads their answers and which labels it accepts."""
        from airflow_mlops.monitoring.labels import task_of_metric

        if metric is None or task_of_metric(metric) != "classification":
            return {}
        found = {version: version_classes(client, self.model, version) for version in versions}
        return {version: c.to_json() if c is not None else None for version, c in found.items()}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        version = _required_version(self.task_id, "version", self.version)
        percent = self._percent()
        if event and event.get("status") == "success":
            self.log.info("Canary step %s%% healthy for %s v%s: %s", percent, self.model, version, event)
            return {"version": version, "percent": percent, "stats": event.get("stats")}
        reasons = (
            event.get("reasons") if event and event.get("status") == "breach" else [f"health check error: {event!r}"]
        )
        reason = f"canary step {percent:g}%: " + "; ".join(reasons or [])
        try:
            with self.hook.activate() as client:
                # champion-only traffic at once, and the candidate loses its aliases (reason recorded on it)
                self.deployment_target(client).reject(self.model, version, actor=self.actor(context), reason=reason)
                client.set_model_version_tag(self.model, version, Tag.ROLLBACK_REASON, reason)
        except Exception as exc:  # e.g. MLflow down: the breach must not be lost in a bare client error
            raise RegistryError(
                f"{self.model} v{version}: {reason}; but the rollback could not be written "
                f"({type(exc).__name__}: {exc}): v{version} may still get its canary share. Clear this task to "
                "check again and roll back, or run the model's rollback DAG"
            ) from exc
        self.log.error("Rolled back %s to champion-only traffic: %s", self.model, reason)
        raise GateFailedError(f"{self.model} v{version} rolled back: {reason}")


class PromoteOperator(RolloutBaseOperator):
    """Make ``version`` the champion (old champion kept as ``previous``) in one guarded operation.

    :param version: The version to promote (templated; e.g. ``resolve.output["version"]``).
    :return: ``{"version": str, "changed": bool}``.
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "version")

    def __init__(self, *, version: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    def execute(self, context: Context) -> dict[str, Any]:
        version = _required_version(self.task_id, "version", self.version)
        with self.hook.activate() as client:
            result = self.deployment_target(client).promote(
                self.model, version, actor=self.actor(context), reason="canary completed"
            )
        self.log.info("Promoted %s v%s: %s", self.model, version, result)
        return {"version": version, "changed": bool(getattr(result, "changed", True))}


class RollbackOperator(RolloutBaseOperator):
    """Serve ``version`` (a number or an alias such as ``previous``) to all traffic.

    :param version: Version number or alias (templated); default ``previous``.
    :param gateway_url: When given (default: the config's ``serving.gateway_url``, else ``[mlops] gateway_url``),
        wait until the gateway's ``/ready`` reports the version as champion.
    :return: ``{"version": str}``.
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "version", "gateway_url")

    def __init__(self, *, version: str | None = Alias.PREVIOUS, gateway_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.gateway_url = gateway_url

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.registry.versions import alias_version

        wanted = given(self.version) or Alias.PREVIOUS
        with self.hook.activate() as client:
            version = alias_version(client, self.model, wanted) if not wanted.isdigit() else wanted
            if version is None:
                raise RegistryError(f"{self.model}: no version under alias {wanted!r} to roll back to")
            self.deployment_target(client).rollback(
                self.model, version, actor=self.actor(context), reason=f"manual rollback to {wanted}"
            )
        url = (
            self.gateway_url
            or (self.loaded.config.serving.gateway_url if self.has_config else None)
            or settings.gateway_url()
        )
        if url and self.target_kind == "local":  # a cloud endpoint is confirmed by its target, not the gateway
            self._confirm_served(str(url), version)
        return {"version": version}

    def _confirm_served(self, url: str, version: str, timeout: float = 30.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{url.rstrip('/')}/ready", timeout=2.0).json()
                if ready["models"].get(self.model, {}).get("champion") == version:
                    self.log.info("Gateway %s serves %s v%s", url, self.model, version)
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise RegistryError(f"gateway {url} did not serve {self.model} v{version} within {timeout:.0f}s")


def _moved_or_rejected(target: Any, move: Any, model: str, version: str, actor: str) -> None:
    """Run ``move`` (a traffic change); if the endpoint refused it (not an endpoint changed by hand, which is
    left for a person), reject the candidate, so the registry does not claim traffic it never got."""
    from airflow_mlops.exceptions import TargetDriftError, TargetError

    try:
        move()
    except TargetDriftError:
        raise
    except TargetError as exc:
        reason = f"the endpoint refused v{version}: {exc}"
        target.reject(model, version, actor=actor, reason=reason)
        raise GateFailedError(f"{model} v{version} rejected: {reason}") from exc


def _validated(model: type[M], raw: Mapping[str, Any], where: str) -> M:
    """A policy mapping checked against the config schema's section, with the config loader's messages."""
    from pathlib import Path

    from pydantic import ValidationError

    from airflow_mlops.config.loader import problems_from_validation

    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: got {type(raw).__name__}; expected a mapping of {model.__name__} fields")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ValueError("\n".join(str(p) for p in problems_from_validation(Path(where), exc, model))) from exc
