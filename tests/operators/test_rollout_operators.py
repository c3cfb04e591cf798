"""Rollout operators called directly against a real local MLflow store and the local gateway target.

``execute()`` of the waiting operators must defer (``TaskDeferred``) with a trigger built from the config;
``execute_complete()`` is then called with the event a trigger would send. The deployment state
(aliases, ``mlops.canary_percent``) is read back from the registry through ``LocalGatewayTarget``.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_mlops import settings
from airflow_mlops.config.schema import CanaryConfig
from airflow_mlops.deploy.promotion import Deployments
from airflow_mlops.exceptions import ConfigError, GateFailedError, RegistryError
from airflow_mlops.factories.assets import candidate_asset
from airflow_mlops.operators.rollout import (
    CanaryStepOperator,
    PromoteOperator,
    ResolveCandidateOperator,
    RollbackOperator,
    ShadowOperator,
)
from airflow_mlops.triggers.rollout import CanaryStepTrigger, ShadowWindowTrigger
from airflow_mlops.vocabulary import Tag
from support import context, train_version

#: every test trains a champion and a candidate first (about 5 s of setup each): run by make test, not test-fast
pytestmark = pytest.mark.integration

MODEL = "fraud"
ROLLOUT = {
    "shadow": {
        "duration": 2,
        "min_requests": 5,
        "min_agreement": 0.9,
        "max_error_rate": 0.1,
        "max_latency_p95_ms": 100,
    },
    "canary": {"steps": [25, 100], "step_duration": 4, "check_interval": 1, "max_error_rate": 0.05, "min_requests": 3},
}
GOOD_SHADOW = {
    "pairs": 10,
    "agreement": 0.95,
    "mean_abs_delta": 0.01,
    "shadow_requests": 10,
    "shadow_error_rate": 0.0,
    "shadow_latency_p95_ms": 20.0,
}
BAD_SHADOW = {
    "pairs": 2,
    "agreement": 0.5,
    "mean_abs_delta": 0.3,
    "shadow_requests": 2,
    "shadow_error_rate": 0.0,
    "shadow_latency_p95_ms": 20.0,
}
CANARY_STATS = {"requests": 4, "errors": 2, "error_rate": 0.5, "latency_p95_ms": 5.0}


def op(cls: type, config: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("task_id", cls.__name__)
    return cls(config_path=str(config), **kwargs)


class Env(SimpleNamespace):
    config: Path
    log_root: Path
    v1: str
    v2: str
    target: Any
    client: Any

    def state(self) -> Any:
        return self.target.state(MODEL)

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(MODEL, version).tags)

    def ctx(self, **kwargs: Any) -> dict[str, Any]:
        return context(**kwargs)

    def op(self, cls: type, **kwargs: Any) -> Any:
        """A rollout operator for candidate v2 against champion v1, as the deploy DAG wires it."""
        candidate: dict[str, Any] = {"version": self.v2}
        if cls is not PromoteOperator:
            candidate["champion"] = self.v1
        return op(cls, self.config, **candidate, **kwargs)


@pytest.fixture
def env(workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Champion v1 and a gated v2 (not yet challenger), a private state DB and prediction-log root."""
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", state_url)
    monkeypatch.delenv(settings.OPTIONS["prediction_log"].env, raising=False)
    log_root = tmp_path / "prediction-log"
    config = workspace.write_config("fraud", {"rollout": ROLLOUT, "serving": {"prediction_log": str(log_root)}})
    v1 = train_version(config, "manual__v1")
    client = workspace.client()
    target = LocalGatewayTarget.from_options(client=client, state_url=state_url)
    target.promote(MODEL, v1, actor="test", reason="first champion")
    v2 = train_version(config, "manual__v2")
    return Env(config=config, log_root=log_root, v1=v1, v2=v2, target=target, client=client)


# --- resolve_candidate ---------------------------------------------------------------------------------------


def test_resolve_candidate_from_event_then_param_then_challenger(env: Env) -> None:
    resolve = op(ResolveCandidateOperator, env.config)
    events = {
        candidate_asset(MODEL): [
            SimpleNamespace(extra={"version": "999"}),  # an older event: the newest one wins
            SimpleNamespace(extra=None),
            SimpleNamespace(extra={"version": env.v2}),
        ]
    }

    from_event = op(ResolveCandidateOperator, env.config, version=env.v1).execute(
        {**context(), "triggering_asset_events": events}
    )
    from_param = op(ResolveCandidateOperator, env.config, version=env.v2).execute(context())
    assert from_event == {"version": env.v2, "champion": env.v1}
    assert from_param == {"version": env.v2, "champion": env.v1}

    with pytest.raises(RegistryError) as nothing:
        resolve.execute({**context(), "triggering_asset_events": {candidate_asset(MODEL): []}})
    assert str(nothing.value) == "fraud: no candidate version (no event, no param, no challenger)"

    Deployments(env.client, env.target.audit).set_challenger(MODEL, env.v2, actor="test", reason="gated")
    assert resolve.execute(context()) == {"version": env.v2, "champion": env.v1}
    for unset in (None, "", "None"):  # "{{ params.version }}" renders an unset param as "" or "None"
        assert op(ResolveCandidateOperator, env.config, version=unset).execute(context()) == {
            "version": env.v2,
            "champion": env.v1,
        }
    with pytest.raises(RegistryError, match=r"resolve_candidate: version: got '1; drop table'; expected a version"):
        op(ResolveCandidateOperator, env.config, version="1; drop table", task_id="resolve_candidate").execute(
            context()
        )


def test_resolve_candidate_refuses_a_version_whose_gate_failed(env: Env) -> None:
    env.client.set_model_version_tag(MODEL, env.v2, "mlops.gate", "failed")

    with pytest.raises(RegistryError) as refused:
        op(ResolveCandidateOperator, env.config, version=env.v2).execute(context())

    assert str(refused.value) == (
        f"fraud v{env.v2}: mlops.gate is 'failed'; only versions whose gate passed can move to challenger or champion"
    )


def test_resolve_candidate_refuses_a_model_without_champion(env: Env) -> None:
    env.client.delete_registered_model_alias(MODEL, "champion")

    with pytest.raises(RegistryError) as refused:
        op(ResolveCandidateOperator, env.config, version=env.v2).execute(context())

    assert str(refused.value) == f"fraud has no champion to compare v{env.v2} with; promote one first"


# --- shadow --------------------------------------------------------------------------------------------------


def test_shadow_execute_sets_the_alias_and_defers_with_the_configured_window(env: Env) -> None:
    before = time.time()

    with pytest.raises(TaskDeferred) as deferred:
        env.op(ShadowOperator).execute(env.ctx())

    after = time.time()
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, ShadowWindowTrigger)
    _, kwargs = trigger.serialize()
    start = kwargs.pop("start")
    assert before <= start <= after
    assert kwargs == {
        "log_root": str(env.log_root),
        "log_conn_id": None,
        "model": MODEL,
        "champion": env.v1,
        "shadow": env.v2,
        "duration": 2.0,
        "min_requests": 5,
        "deadline": start + 62.0,  # max(3 x duration, duration + 60 s)
        "check_interval": 0.5,  # duration / 10, at least 0.5 s
        "cloudwatch": None,  # the local target: the prediction log is read
    }
    state = env.state()
    assert (state.champion, state.shadow, state.canary) == (env.v1, env.v2, None)
    last = env.target.audit.history(MODEL)[-1]
    assert (last.alias, last.from_version, last.to_version, last.reason) == ("shadow", None, env.v2, "shadow phase")
    assert last.actor.endswith("/manual__op-test")


def test_shadow_failing_stats_reject_the_candidate(env: Env) -> None:
    Deployments(env.client, env.target.audit).set_challenger(MODEL, env.v2, actor="test", reason="gated")
    shadow = env.op(ShadowOperator)
    with pytest.raises(TaskDeferred):
        shadow.execute(env.ctx())

    event = {"status": "success", "stats": BAD_SHADOW, "timed_out": True}
    with pytest.raises(GateFailedError) as failed:
        shadow.execute_complete(env.ctx(), event)

    reason = "shadow gate failed: only 2 shadow requests (< min_requests 5); agreement with champion 0.5000 < 0.9"
    assert str(failed.value) == f"fraud v{env.v2} rejected: {reason}"
    state = env.state()
    assert (state.champion, state.shadow, state.challenger, state.canary) == (env.v1, None, None, None)
    tags = env.tags(env.v2)
    assert tags[Tag.REJECTED_REASON] == reason
    assert tags[Tag.REJECTED_BY].endswith("/manual__op-test")
    with pytest.raises(RegistryError, match=r"was rejected"):
        env.target.promote(MODEL, env.v2, actor="test", reason="must not")


@pytest.mark.parametrize(
    "event",
    [
        {"status": "error", "message": "DataError: Cannot parse prediction-log part file 'x' as Parquet: bad"},
        None,
    ],
)
def test_shadow_unevaluable_window_rejects(env: Env, event: dict[str, Any] | None) -> None:
    env.target.start_shadow(MODEL, env.v2, actor="test", reason="shadow phase")

    with pytest.raises(GateFailedError) as failed:
        env.op(ShadowOperator).execute_complete(env.ctx(), event)

    reason = f"shadow gate failed: shadow window could not be evaluated: {event!r}"
    assert str(failed.value) == f"fraud v{env.v2} rejected: {reason}"
    assert env.state().shadow is None
    assert env.tags(env.v2)[Tag.REJECTED_REASON] == reason


def test_shadow_passing_stats_stop_the_shadow_and_return(env: Env) -> None:
    Deployments(env.client, env.target.audit).set_challenger(MODEL, env.v2, actor="test", reason="gated")
    env.target.start_shadow(MODEL, env.v2, actor="test", reason="shadow phase")

    result = env.op(ShadowOperator).execute_complete(
        env.ctx(), {"status": "success", "stats": GOOD_SHADOW, "timed_out": False}
    )

    assert result == {"version": env.v2, "stats": GOOD_SHADOW}
    state = env.state()
    assert (state.champion, state.shadow, state.challenger) == (env.v1, None, env.v2)
    assert Tag.REJECTED_REASON not in env.tags(env.v2)
    last = env.target.audit.history(MODEL)[-1]
    assert (last.alias, last.from_version, last.to_version, last.reason) == (
        "shadow",
        env.v2,
        None,
        "shadow phase over",
    )


# --- canary --------------------------------------------------------------------------------------------------


def test_canary_execute_sets_traffic_and_defers(env: Env) -> None:
    before = time.time()

    with pytest.raises(TaskDeferred) as deferred:
        env.op(CanaryStepOperator, percent=25).execute(env.ctx())

    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, CanaryStepTrigger)
    _, kwargs = trigger.serialize()
    assert before <= kwargs.pop("start") <= time.time()
    assert kwargs == {
        "log_root": str(env.log_root),
        "log_conn_id": None,
        "model": MODEL,
        "champion": env.v1,
        "canary": env.v2,
        "duration": 4.0,
        "check_interval": 1.0,
        "limits": CanaryConfig.model_validate(ROLLOUT["canary"]).model_dump(mode="json"),
        "metric": "roc_auc",
        "classes": {env.v2: '{"classes":[0,1],"positive":1}', env.v1: '{"classes":[0,1],"positive":1}'},
        "cloudwatch": None,
    }
    state = env.state()
    assert (state.champion, state.canary, state.canary_percent) == (env.v1, env.v2, 25.0)
    assert env.client.get_registered_model(MODEL).tags[Tag.CANARY_PERCENT] == "25"


def test_canary_templated_percent_is_used_as_a_number(env: Env) -> None:
    assert "percent" in CanaryStepOperator.template_fields
    assert {"config_path", "mlflow_conn_id"} <= set(CanaryStepOperator.template_fields)

    with pytest.raises(TaskDeferred):
        env.op(CanaryStepOperator, percent="12.5").execute(env.ctx())  # a rendered template is text

    assert env.state().canary_percent == 12.5


def test_canary_breach_rolls_the_candidate_back(env: Env) -> None:
    canary = env.op(CanaryStepOperator, percent=25)
    with pytest.raises(TaskDeferred):
        canary.execute(env.ctx())
    event = {"status": "breach", "reasons": ["canary error rate 0.5000 > 0.05 (2 errors)"], "stats": CANARY_STATS}

    with pytest.raises(GateFailedError) as failed:
        canary.execute_complete(env.ctx(), event)

    reason = "canary step 25%: canary error rate 0.5000 > 0.05 (2 errors)"
    assert str(failed.value) == f"fraud v{env.v2} rolled back: {reason}"
    state = env.state()
    assert (state.champion, state.canary, state.canary_percent, state.challenger) == (env.v1, None, 0.0, None)
    assert env.client.get_registered_model(MODEL).tags[Tag.CANARY_PERCENT] == "0"
    tags = env.tags(env.v2)
    assert tags[Tag.ROLLBACK_REASON] == reason
    assert tags[Tag.REJECTED_REASON] == reason
    last = env.target.audit.history(MODEL)[-1]
    assert (last.alias, last.from_version, last.to_version) == ("canary", env.v2, None)
    assert last.reason.startswith(reason)


def test_canary_error_event_rolls_back_too(env: Env) -> None:
    canary = env.op(CanaryStepOperator, percent=25)
    with pytest.raises(TaskDeferred):
        canary.execute(env.ctx())
    event = {"status": "error", "message": "DataError: unreadable"}

    with pytest.raises(GateFailedError) as failed:
        canary.execute_complete(env.ctx(), event)

    reason = f"canary step 25%: health check error: {event!r}"
    assert str(failed.value) == f"fraud v{env.v2} rolled back: {reason}"
    assert (env.state().canary, env.state().canary_percent) == (None, 0.0)
    assert env.tags(env.v2)[Tag.ROLLBACK_REASON] == reason


def test_canary_healthy_step_returns_and_keeps_traffic(env: Env) -> None:
    canary = env.op(CanaryStepOperator, percent=25)
    with pytest.raises(TaskDeferred):
        canary.execute(env.ctx())
    stats = {**CANARY_STATS, "errors": 0, "error_rate": 0.0}

    result = canary.execute_complete(env.ctx(), {"status": "success", "stats": stats})

    assert result == {"version": env.v2, "percent": 25, "stats": stats}
    assert (env.state().canary, env.state().canary_percent) == (env.v2, 25.0)
    assert Tag.ROLLBACK_REASON not in env.tags(env.v2)


# --- promote and rollback ------------------------------------------------------------------------------------


def test_promote_keeps_the_old_champion_as_previous(env: Env) -> None:
    with pytest.raises(TaskDeferred):
        env.op(CanaryStepOperator, percent=100).execute(env.ctx())

    result = env.op(PromoteOperator).execute(env.ctx())

    assert result == {"version": env.v2, "changed": True}
    state = env.state()
    assert (state.champion, state.previous, state.canary, state.canary_percent, state.shadow, state.challenger) == (
        env.v2,
        env.v1,
        None,
        0.0,
        None,
        None,
    )
    assert env.tags(env.v2)["mlops.promoted_by"].endswith("/manual__op-test")
    assert env.op(PromoteOperator).execute(env.ctx()) == {"version": env.v2, "changed": False}


def test_rollback_to_previous_and_to_a_number(env: Env) -> None:
    env.target.promote(MODEL, env.v2, actor="test", reason="setup")

    def rollback(version: str | None = None) -> Any:
        return op(RollbackOperator, env.config, **({"version": version} if version else {}))

    assert rollback("previous").execute(context()) == {"version": env.v1}
    state = env.state()
    assert (state.champion, state.previous) == (env.v1, env.v2)
    last = env.target.audit.history(MODEL)[-1]
    assert (last.alias, last.to_version, last.reason) == ("champion", env.v1, "manual rollback to previous")

    assert rollback(env.v2).execute(context()) == {"version": env.v2}
    assert (env.state().champion, env.state().previous) == (env.v2, env.v1)

    assert rollback().execute(context()) == {"version": env.v1}  # default: previous
    assert (env.state().champion, env.state().previous) == (env.v1, env.v2)

    with pytest.raises(RegistryError) as missing:
        rollback("canary").execute(context())
    assert str(missing.value) == "fraud: no version under alias 'canary' to roll back to"


# --- prediction-log location ---------------------------------------------------------------------------------


def test_missing_prediction_log_is_a_clear_error(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.OPTIONS["prediction_log"].env, raising=False)
    config = workspace.write_config("fraud", {"rollout": ROLLOUT})

    candidate = {"version": "2", "champion": "1"}
    for cls, kwargs in ((ShadowOperator, candidate), (CanaryStepOperator, {**candidate, "percent": 5})):
        with pytest.raises(ValueError) as missing:
            _ = op(cls, config, **kwargs).log_location
        assert str(missing.value) == (
            f"{config}: serving.prediction_log is not set and neither is [mlops] prediction_log "
            "($AIRFLOW_MLOPS_PREDICTION_LOG); the rollout reads the gateway's prediction log from there"
        )


def test_prediction_log_from_airflows_variable(workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.OPTIONS["prediction_log"].env, raising=False)
    monkeypatch.setenv("AIRFLOW__MLOPS__PREDICTION_LOG", str(tmp_path / "from-airflow"))
    config = workspace.write_config("fraud", {"rollout": ROLLOUT})
    assert op(ShadowOperator, config, version="2", champion="1").log_location == (str(tmp_path / "from-airflow"), None)


def test_prediction_log_from_env_or_relative_to_the_config(
    workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.OPTIONS["prediction_log"].env, str(tmp_path / "from-env"))
    config = workspace.write_config("fraud", {"rollout": ROLLOUT})
    assert op(ShadowOperator, config, version="2", champion="1").log_location == (str(tmp_path / "from-env"), None)

    config = workspace.write_config(
        "fraud", {"serving": {"prediction_log": "logs/plog", "prediction_log_conn_id": "x"}}
    )
    assert op(ShadowOperator, config, version="2", champion="1").log_location == (
        str(config.parent.resolve() / "logs" / "plog"),
        "x",
    )

    config = workspace.write_config("fraud", {"serving": {"prediction_log": "s3://bucket/plog"}})
    assert op(ShadowOperator, config, version="2", champion="1").log_location == ("s3://bucket/plog", None)


def test_missing_prediction_log_moves_no_traffic(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    config = env.config.read_text().replace(f"prediction_log: {env.log_root}", "prediction_log: null")
    env.config.write_text(config)

    with pytest.raises(ValueError, match=r"serving.prediction_log is not set"):
        env.op(ShadowOperator).execute(env.ctx())
    with pytest.raises(ValueError, match=r"serving.prediction_log is not set"):
        env.op(CanaryStepOperator, percent=25).execute(env.ctx())

    state = env.state()
    assert (state.shadow, state.canary, state.canary_percent) == (None, None, 0.0)


# --- explicit arguments, no model config ---------------------------------------------------------------------


def test_rollout_operators_run_without_a_model_config(env: Env) -> None:
    """A hand-written DAG gives every argument explicitly; no YAML is read."""
    common = {"model_name": MODEL, "log_root": str(env.log_root), "target": "local"}
    shadow = ShadowOperator(
        task_id="shadow",
        version=env.v2,
        champion=env.v1,
        policy={"duration": "3s", "min_requests": 7, "min_agreement": 0.8},
        **common,
    )
    with pytest.raises(TaskDeferred) as deferred:
        shadow.execute(env.ctx())
    _, kwargs = deferred.value.trigger.serialize()
    assert (kwargs["duration"], kwargs["min_requests"], kwargs["shadow"], kwargs["log_root"]) == (
        3.0,
        7,
        env.v2,
        str(env.log_root),
    )
    shadow.execute_complete(env.ctx(), {"status": "success", "stats": {**GOOD_SHADOW, "pairs": 10}})

    canary = CanaryStepOperator(
        task_id="canary",
        version=env.v2,
        champion=env.v1,
        percent=40,
        policy={"step_duration": "2s", "check_interval": "1s"},
        metric="accuracy",
        **common,
    )
    with pytest.raises(TaskDeferred) as deferred:
        canary.execute(env.ctx())
    _, kwargs = deferred.value.trigger.serialize()
    assert (kwargs["metric"], kwargs["duration"], env.state().canary_percent) == ("accuracy", 2.0, 40.0)

    promoted = PromoteOperator(task_id="promote", version=env.v2, **common).execute(env.ctx())
    assert promoted == {"version": env.v2, "changed": True}
    assert RollbackOperator(task_id="rollback", **common).execute(env.ctx()) == {"version": env.v1}


BAD_ARGUMENTS = [
    ({"percent": 0}, r"canary: percent: got 0; expected a number in \(0, 100\]"),
    ({"percent": "half"}, r"canary: percent: got 'half'; expected a number in \(0, 100\]"),
    (
        {"percent": 10, "policy": {"step_duration": "soon"}},
        r"canary: policy: step_duration: got 'soon'; expected a dur",
    ),
    ({"percent": 10, "policy": {"max_error_rate": 2}}, r"canary: policy: max_error_rate: got 2; expected: input sho"),
    ({"percent": 10, "policy": {"surprise": 1}}, r"canary: policy: surprise: got 1; unknown field; allowed fields"),
    ({"percent": 10, "policy": ["steps"]}, r"canary: policy: got list; expected a mapping of CanaryConfig fields"),
    ({"percent": 10, "version": None}, r"canary: version: got None; expected a model version"),
    ({"percent": 10, "version": "../2"}, r"canary: version: got '../2'; expected a version number"),
    ({"percent": 10, "target": "cloud9"}, r"canary: target: got 'cloud9'; expected one of"),
]


def test_bad_explicit_arguments_fail_before_traffic_moves(env: Env) -> None:
    """Each bad value (percent, policy field, version, target) fails naming it; no traffic ever moves."""
    for kwargs, message in BAD_ARGUMENTS:
        arguments = {
            "version": env.v2,
            "champion": env.v1,
            "log_root": str(env.log_root),
            "model_name": MODEL,
            "policy": {},  # the schema's defaults
            "metric": "roc_auc",
            **kwargs,
        }
        with pytest.raises((ValueError, RegistryError), match=message):
            CanaryStepOperator(task_id="canary", **arguments).execute(env.ctx())
        assert (env.state().canary, env.state().canary_percent) == (None, 0.0), kwargs


def test_an_operator_needs_a_model_name_or_a_config() -> None:
    needs = r"promote: give model_name \(and the operator's arguments\) or a config_path"
    with pytest.raises(ValueError, match=needs):
        PromoteOperator(task_id="promote", version="1")
    shadow = ShadowOperator(task_id="shadow", model_name=MODEL, version="2", champion="1", log_root="/tmp/x")
    with pytest.raises(
        ConfigError, match=r"^shadow: policy is not given, and there is no config_path to take it from$"
    ):
        _ = shadow.shadow_policy


def test_explicit_target_options_are_checked_like_the_config() -> None:
    op = PromoteOperator(
        task_id="promote",
        model_name=MODEL,
        version="1",
        target="sagemaker",
        target_options={"endpoint_name": "bad_name", "aws_secret_access_key": "x"},
    )
    with pytest.raises(ValueError) as raised:
        op.target_settings()
    message = str(raised.value)
    assert "promote: target_options: endpoint_name: got 'bad_name'; expected: string should match pattern" in message
    assert "aws_secret_access_key: got 'x'; unknown field" in message
    assert "execution_role_arn: this field is required" in message
