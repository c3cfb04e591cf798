"""Operators called directly (``execute(context)``) against a real local MLflow store (SQLite in tmp).

The context is a small stand-in for Airflow's: the DAG run id, params, an XCom-pulling ti, and
outlet events — the only parts our operators read.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from airflow_mlops import settings
from airflow_mlops.deploy.audit import AuditTrail
from airflow_mlops.exceptions import DataError, DataValidationError, RegistryError
from airflow_mlops.hooks.mlflow import MlflowHook
from airflow_mlops.operators.gates import GateModelOperator
from airflow_mlops.operators.registry import RecordApprovalOperator, SetChallengerOperator
from airflow_mlops.operators.training import (
    FingerprintDataOperator,
    RegisterModelOperator,
    TrainModelOperator,
    ValidateDataOperator,
)
from support import context


def op(cls: type, config: Path, **kwargs: Any) -> Any:
    return cls(task_id=cls.__name__, config_path=str(config), **kwargs)


def test_fingerprint_is_idempotent_and_refuses_changed_data(
    workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_ROOTS", str(tmp_path))  # conf may point here
    data = tmp_path / "batch.csv"
    config = workspace.write_config("fraud")
    shutil.copy(Path(__file__).parents[2] / "dags/data/fraud/transactions_batch_001.csv", data)
    ctx = context(params={"data_uri": str(data)})

    first = op(FingerprintDataOperator, config).execute(ctx)
    second = op(FingerprintDataOperator, config).execute(ctx)

    assert first == second
    assert first["data_uri"] == str(data)
    tags = workspace.client().get_run(first["mlflow_run_id"]).data.tags
    assert tags["mlops.data_sha256"] == first["data_sha256"]
    assert tags["mlops.dag_run_id"] == "manual__op-test"
    data.write_text(data.read_text() + "1.0,1,1.0,1,1,1,grocery,0\n")
    with pytest.raises(DataError, match=r"content changed since this DAG run first read it"):
        op(FingerprintDataOperator, config).execute(ctx)


def test_validation_failure_lists_each_failing_expectation(workspace: Any) -> None:
    config = workspace.write_config(
        "fraud",
        replace={
            "expectations": [
                {"type": "expect_column_values_to_be_between", "kwargs": {"column": "hour", "max_value": 5}},
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount"}},
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": "merchant_category", "value_set": ["grocery"]},
                    "notes": "only groceries expected",
                },
            ]
        },
    )
    ctx = context()
    op(FingerprintDataOperator, config).execute(ctx)

    with pytest.raises(DataValidationError) as failure:
        op(ValidateDataOperator, config).execute(ctx)

    lines = str(failure.value).splitlines()
    assert lines[0].startswith("2 of 3 expectations failed on ") and lines[0].endswith("transactions_batch_001.csv:")
    assert lines[1].startswith("  - expect_column_values_to_be_between(column='hour', max_value=5): element_count=6000")
    assert lines[2].startswith(
        "  - expect_column_values_to_be_in_set(column='merchant_category', value_set=['grocery'])"
    )
    assert lines[2].endswith("(only groceries expected)")
    with pytest.raises(DataValidationError, match="data validation did not pass; refusing to train"):
        op(TrainModelOperator, config).execute(ctx)


def test_train_and_register_twice_create_one_model_and_one_version(workspace: Any) -> None:
    config = workspace.write_config("fraud")
    ctx = context()
    op(FingerprintDataOperator, config).execute(ctx)
    op(ValidateDataOperator, config).execute(ctx)

    trained = op(TrainModelOperator, config).execute(ctx)
    retrained = op(TrainModelOperator, config).execute(ctx)
    registered = op(RegisterModelOperator, config).execute(ctx)
    reregistered = op(RegisterModelOperator, config).execute(ctx)

    assert retrained["model_uri"] == trained["model_uri"]
    assert (registered["version"], registered["created"]) == ("1", True)
    assert (reregistered["version"], reregistered["created"]) == ("1", False)
    client = workspace.client()
    assert len(client.search_model_versions("name = 'fraud'")) == 1
    assert len(client.search_logged_models([client.get_run(trained["mlflow_run_id"]).info.experiment_id])) == 1


def test_challenger_refused_until_gate_passes_then_set_once_with_event(workspace: Any) -> None:
    config = workspace.write_config("fraud")
    ctx = context()
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        op(cls, config).execute(ctx)

    with pytest.raises(RegistryError, match=r"fraud v1: mlops.gate is None; only versions whose gate passed"):
        op(SetChallengerOperator, config).execute(ctx)

    gate = op(GateModelOperator, config).execute(ctx)
    assert gate["gate"] == "passed"
    challenger = SetChallengerOperator(task_id="c", config_path=str(config), outlets=[])
    first = challenger.execute(ctx)
    second = challenger.execute(ctx)
    assert (first["alias_moved"], second["alias_moved"]) == (True, False)
    assert workspace.client().get_model_version_by_alias("fraud", "challenger").version in ("1", 1)


def test_challenger_requires_recorded_approval_when_configured(
    workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime

    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{tmp_path / 'state.db'}")  # this test's own audit trail
    config = workspace.write_config("fraud")
    ctx = context()
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        op(cls, config).execute(ctx)
    op(GateModelOperator, config).execute(ctx)

    with pytest.raises(RegistryError, match="needs an approval"):
        op(SetChallengerOperator, config, require_approval=True).execute(ctx)
    with pytest.raises(RegistryError, match="expected an 'Approve' answer"):
        op(RecordApprovalOperator, config, answer={"chosen_options": ["Reject"]}).execute(ctx)

    answer = {
        "chosen_options": ["Approve"],
        "params_input": {"comment": "  slices look fine  "},
        "responded_at": datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        "responded_by_user": {"id": "ci", "name": "ci"},
    }
    recorded = op(RecordApprovalOperator, config, answer=answer).execute(ctx)
    assert op(RecordApprovalOperator, config, answer=answer).execute(ctx) == recorded  # a retry records nothing new
    assert recorded == {"version": "1", "approved_by": "ci", "approved_at": "2026-11-01T12:00:00+00:00"}
    tags = workspace.client().get_model_version("fraud", "1").tags
    assert (tags["mlops.approved_by"], tags["mlops.approved_at"]) == ("ci", "2026-11-01T12:00:00+00:00")
    assert tags["mlops.approved_comment"] == "slices look fine"
    assert json.loads(tags["mlops.decision.challenger"]) == {
        "decision": "approved",
        "by": "ci",
        "at": "2026-11-01T12:00:00+00:00",
        "comment": "slices look fine",
        "dag_run": "adhoc_airflow/manual__op-test",  # outside a DAG, Airflow names it adhoc_airflow
    }
    approvals = [e for e in AuditTrail(settings.state_db_url()).entries("fraud") if e.kind == "approval"]
    assert [(e.alias, e.to_version, e.actor, e.reason) for e in approvals] == [
        ("challenger", "1", "ci", "slices look fine")
    ]
    # a later approval without a comment (the task cleared, someone else answers) leaves no earlier comment behind
    later = {**answer, "params_input": {}, "responded_by_user": {"id": "bob", "name": "Bob"}}
    op(RecordApprovalOperator, config, answer=later).execute(ctx)
    tags = workspace.client().get_model_version("fraud", "1").tags
    assert tags["mlops.approved_by"] == "bob" and "mlops.approved_comment" not in tags  # the id, not the name
    for bad, match in [
        ({**answer, "chosen_options": ["Approve", "Reject"]}, "chosen_options: expected"),
        ({**answer, "responded_by_user": "ci"}, "responded_by_user: expected a mapping"),
        (["Approve"], "expected the approval task's answer"),
    ]:
        with pytest.raises(RegistryError, match=match):
            op(RecordApprovalOperator, config, answer=bad).execute(ctx)
    assert op(SetChallengerOperator, config, require_approval=True).execute(ctx)["alias_moved"] is True


def test_an_approval_comment_is_kept_whatever_a_rest_client_sends() -> None:
    """Airflow's REST API does not hold ``params_input`` to the form's schema: the person's answer is never lost
    over the comment; it is kept as printable text of bounded length."""
    from airflow_mlops.registry.approval import MAX_COMMENT, HumanAnswer

    def comment(value: Any) -> str:
        raw = {"chosen_options": ["Reject"], "params_input": {"comment": value}, "responded_by_user": {"id": "ci"}}
        return HumanAnswer.from_hitl(raw, where="t").comment

    assert comment(7) == "7" and comment(None) == "" and comment({"a": 1}) == '{"a": 1}'
    assert comment("line one\nline two\x1b[31m red") == "line one\nline two [31m red"
    long = comment("x" * 5000)
    assert len(long) == MAX_COMMENT and long.endswith(" [cut]")


def test_the_approval_form_keeps_its_comment_field_over_a_dag_param_of_that_name() -> None:
    from airflow.sdk import DAG, Param

    from airflow_mlops.operators.approval import ModelApprovalOperator

    with DAG("d", params={"comment": Param("dag-level", type="string")}):
        task = ModelApprovalOperator(task_id="approve", version="1", stage="canary", subject="s", model_name="m")
    assert list(task.params) == ["comment"] and task.params.get_param("comment").source == "task"
    assert task.serialized_params["comment"]["value"] == ""


def test_gate_error_fails_closed(workspace: Any, tmp_path: Path) -> None:
    """A behaviour-cases file that cannot be read is an error inside the gate: the gate fails."""
    config = workspace.write_config("fraud", {"gates": {"behaviour": {"cases": str(tmp_path / "missing.csv")}}})
    ctx = context()
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        op(cls, config).execute(ctx)

    with pytest.raises(Exception, match=r"fraud v1 failed its gate: behaviour \(error: "):
        op(GateModelOperator, config).execute(ctx)

    assert workspace.client().get_model_version("fraud", "1").tags["mlops.gate"] == "failed"


def registered_artifacts(client: Any, model: str, version: str) -> Path:
    from urllib.parse import urlparse

    uri = client.get_model_version_download_uri(model, version)
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)


@pytest.mark.integration  # trains three versions
def test_the_gate_loads_no_model_whose_artifacts_changed_since_registration(workspace: Any) -> None:
    """Candidate or champion swapped in the store after registration: the gate fails, nothing is unpickled."""
    client = workspace.client()
    config = workspace.write_config("fraud")
    ctx = context(run_id="manual__v1")
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        op(cls, config).execute(ctx)
    artifact = registered_artifacts(client, "fraud", "1") / "conda.yaml"
    genuine = artifact.read_bytes()
    artifact.write_bytes(genuine + b"tampered")

    with pytest.raises(Exception, match=r"fraud v1 failed its gate: gate \(error: .*ModelIntegrityError: fraud v1: "):
        op(GateModelOperator, config).execute(ctx)
    assert client.get_model_version("fraud", "1").tags["mlops.gate"] == "failed"

    artifact.write_bytes(genuine)  # restored: it verifies and passes, then becomes the champion
    assert op(GateModelOperator, config).execute(ctx)["gate"] == "passed"
    client.set_registered_model_alias("fraud", "champion", "1")
    client.delete_model_version_tag("fraud", "1", "mlops.model_sha256")  # an unverifiable champion
    ctx = context(run_id="manual__v2")
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        op(cls, config).execute(ctx)

    with pytest.raises(Exception, match=r"fraud v2 failed its gate: .*fraud v1 has no mlops.model_sha256 tag"):
        op(GateModelOperator, config).execute(ctx)
    assert client.get_model_version("fraud", "2").tags["mlops.gate"] == "failed"


def test_mlflow_hook_reads_uri_and_credentials_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from airflow_mlops.hooks import mlflow_auth

    conn = {"conn_type": "mlflow", "host": "mlflow.internal", "port": 5000, "login": "alice", "password": "s3cret"}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_REMOTE", json.dumps(conn))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    hook = MlflowHook(mlflow_conn_id="mlflow_remote")

    assert hook.tracking_uri == "http://mlflow.internal:5000"
    with hook.activate() as client:
        assert client.tracking_uri == "http://mlflow.internal:5000"
        # sent by MLflow's request-auth plugin to this server only (tests/unit/test_mlflow_credentials.py)
        assert mlflow_auth.authorization_for("http://mlflow.internal:5000/api") == "Basic YWxpY2U6czNjcmV0"
        assert "MLFLOW_TRACKING_USERNAME" not in os.environ
        assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ


@pytest.mark.parametrize(
    ("host", "extra", "tracking", "registry"),
    [
        ("databricks", {}, "databricks", "databricks"),
        (
            "databricks://ml-prod",
            {"registry_uri": "databricks-uc://ml-prod"},
            "databricks://ml-prod",
            "databricks-uc://ml-prod",
        ),
        ("databricks", {"registry_uri": "databricks-uc"}, "databricks", "databricks-uc"),
        ("mlflow.internal", {}, "http://mlflow.internal", "http://mlflow.internal"),
    ],
    ids=["databricks", "databricks-profile-uc", "databricks-uc", "bare-host-gets-http"],
)
def test_mlflow_hook_passes_mlflow_uris_through_unchanged(
    host: str, extra: dict[str, str], tracking: str, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's own ``databricks`` URIs reach the client as written (not ``http://databricks``)."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DBX", json.dumps({"conn_type": "mlflow", "host": host, "extra": extra}))
    hook = MlflowHook(mlflow_conn_id="mlflow_dbx")
    assert (hook.tracking_uri, hook._settings["registry_uri"]) == (tracking, registry)


def test_mlflow_hook_restores_global_state_it_found(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaving the block must not pin mlflow's default URI or export it to later subprocesses."""
    import os

    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    with MlflowHook().activate() as client:
        assert mlflow.get_tracking_uri() == client.tracking_uri == workspace.tracking_uri
        assert os.environ["MLFLOW_TRACKING_URI"] == workspace.tracking_uri
    assert tracking_utils._tracking_uri is None
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_mlflow_hook_rejects_empty_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_EMPTY", json.dumps({"conn_type": "mlflow"}))
    with pytest.raises(ValueError, match="connection 'mlflow_empty': host is empty"):
        _ = MlflowHook(mlflow_conn_id="mlflow_empty").tracking_uri


def test_provider_metadata_declares_the_mlflow_connection_type() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_mlops")]
    info = entry.load()()
    assert info["package-name"] == "airflow-mlops"
    assert info["connection-types"] == [
        {"hook-class-name": "airflow_mlops.hooks.mlflow.MlflowHook", "connection-type": "mlflow"}
    ]
    assert (MlflowHook.conn_type, MlflowHook.default_conn_name) == ("mlflow", "mlflow_default")
    assert set(info["config"]["mlops"]["options"]) == {
        "config_dir",
        "state_db",
        "state_db_conn_id",
        "gateway_url",
        "prediction_log",
        "estimator_allowlist",
        "data_roots",
        "data_conn_ids",
        "strict",
        "model_signing_conn_id",
        "ui_mlflow_deadline",
        "code_version",
    }
    assert "hook-class-names" not in info, "deprecated since Airflow 2.2 in favour of connection-types"


def test_provider_metadata_matches_airflows_schema() -> None:
    import airflow
    import jsonschema

    from airflow_mlops import get_provider_info

    schema_path = Path(airflow.__file__).with_name("provider_info.schema.json")
    schema = json.loads(schema_path.read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    deprecated = {key for key, spec in schema["properties"].items() if "deprecated" in spec}
    assert deprecated >= {"hook-class-names", "dataset-uris"}, "the schema's deprecated keys moved"
    assert not deprecated & set(info), f"deprecated keys: {sorted(deprecated & set(info))}"
    assert {"operators", "hooks", "triggers", "plugins", "asset-uris", "extra-links", "config"} <= set(info)
    # the schema does not enforce it: every integration-name used is declared under "integrations"
    declared = {i["integration-name"] for i in info["integrations"]}
    used = {e["integration-name"] for key in ("operators", "sensors", "hooks", "triggers") for e in info.get(key, [])}
    assert used == declared == {"airflow-mlops"}


def _provider_paths(info: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(modules, dotted attributes) named by the provider metadata."""
    modules = [
        m
        for key in ("operators", "sensors", "hooks", "triggers")
        for e in info.get(key, [])
        for m in e["python-modules"]
    ]
    attributes = [c["hook-class-name"] for c in info["connection-types"]]
    attributes += info["extra-links"]
    attributes += [p["plugin-class"] for p in info["plugins"]]
    attributes += [a["handler"] for a in info["asset-uris"] if a.get("handler")]
    return modules, attributes


def test_every_path_in_the_provider_metadata_imports() -> None:
    """A renamed module or class must fail here, not in a deployment's ``airflow providers`` output."""
    import importlib
    import inspect
    import pkgutil

    import airflow_mlops
    from airflow_mlops import get_provider_info

    info = get_provider_info()
    modules, attributes = _provider_paths(info)
    for module in modules:
        importlib.import_module(module)
    for path in attributes:
        module, _, name = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), path

    # and nothing is left out: each module of ours that defines an operator / hook / trigger is listed
    from airflow.models import BaseOperator
    from airflow.sdk import BaseSensorOperator
    from airflow.sdk.bases.hook import BaseHook
    from airflow.triggers.base import BaseTrigger

    kinds = {"operators": BaseOperator, "sensors": BaseSensorOperator, "hooks": BaseHook, "triggers": BaseTrigger}
    for key, base in kinds.items():
        package = importlib.import_module(f"airflow_mlops.{key}")
        defining = {
            f"{package.__name__}.{sub.name}"
            for sub in pkgutil.iter_modules(package.__path__)
            for obj in vars(importlib.import_module(f"{package.__name__}.{sub.name}")).values()
            if inspect.isclass(obj) and issubclass(obj, base) and obj.__module__ == f"{package.__name__}.{sub.name}"
        }
        listed = {m for e in info[key] for m in e["python-modules"]}
        assert defining == listed, key
    assert airflow_mlops.SENSOR_MODULES


def test_sensors_are_listed_only_when_the_static_list_names_some(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow_mlops

    monkeypatch.setattr(airflow_mlops, "SENSOR_MODULES", [])
    assert "sensors" not in airflow_mlops.get_provider_info()
    monkeypatch.setattr(airflow_mlops, "SENSOR_MODULES", ["airflow_mlops.sensors.example"])
    assert airflow_mlops.get_provider_info()["sensors"] == [
        {"integration-name": "airflow-mlops", "python-modules": ["airflow_mlops.sensors.example"]}
    ]


def test_the_asset_uri_scheme_is_ours_and_normalised_by_airflow() -> None:
    """Airflow applies the provider's handler to every ``mlops://`` Asset: typos fail where declared."""
    from airflow.sdk import Asset

    from airflow_mlops import get_provider_info
    from airflow_mlops.vocabulary import ASSET_SCHEME

    assert get_provider_info()["asset-uris"] == [
        {"schemes": [ASSET_SCHEME], "handler": "airflow_mlops.vocabulary.normalize_asset_uri"}
    ]
    assert Asset(name="fraud_drift", uri=f"{ASSET_SCHEME}://Fraud/drift/").uri == f"{ASSET_SCHEME}://fraud/drift"
    with pytest.raises(ValueError, match=r"kind 'drfit' is unknown; expected .*'drift'"):
        Asset(name="typo", uri=f"{ASSET_SCHEME}://fraud/drfit")


@pytest.mark.integration  # the airflow CLI in subprocesses (≈ 11 s): part of make test, not the fast layer
def test_airflow_lists_the_provider_and_its_connection_type() -> None:
    import subprocess
    import sys

    airflow = str(Path(sys.executable).with_name("airflow"))
    providers = subprocess.run([airflow, "providers", "list"], capture_output=True, text=True, check=True).stdout
    hooks = subprocess.run([airflow, "providers", "hooks"], capture_output=True, text=True, check=True).stdout

    assert any(line.startswith("airflow-mlops ") and "0.1.0" in line for line in providers.splitlines())
    assert any(
        line.startswith("mlflow ") and "airflow_mlops.hooks.mlflow.MlflowHook" in line for line in hooks.splitlines()
    )
    # the provider's [mlops] section is part of Airflow's configuration, with its defaults
    strict = subprocess.run(
        [airflow, "config", "get-value", "mlops", "strict"], capture_output=True, text=True, check=True
    ).stdout
    assert strict.strip() == "false"


def test_new_data_event_and_conf_choose_the_training_data(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``mlops://<model>/data`` event's data_uri wins, then conf/params, then the config."""
    from airflow_mlops.factories.assets import data_asset

    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_ROOTS", "s3://bucket/, s3://b")
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_CONN_IDS", "aws_x")
    config = workspace.write_config("fraud")
    operator = op(FingerprintDataOperator, config)
    event = SimpleNamespace(extra={"data_uri": "s3://bucket/new.csv", "data_conn_id": "aws_x"})
    announced = {**context(), "triggering_asset_events": {data_asset("fraud"): [event]}}

    assert operator.data_location(announced) == ("s3://bucket/new.csv", "aws_x")
    assert operator.data_location(context(params={"data_uri": "s3://b/k.csv"})) == ("s3://b/k.csv", None)
    default_uri, default_conn = operator.data_location(context())
    assert default_uri.endswith("dags/data/fraud/transactions_batch_001.csv") and default_conn is None


HOSTILE_LOCATIONS = [
    ({"data_uri": "/etc/passwd"}, "expected a location under one of"),
    ({"data_uri": "../../../../etc/passwd"}, "'~' and '..' are not allowed"),
    ({"data_uri": "{data}/../../../../etc/passwd"}, "'~' and '..' are not allowed"),
    ({"data_uri": "~/.ssh/id_rsa"}, "'~' and '..' are not allowed"),
    ({"data_uri": "file:///etc/passwd"}, "expected a location under one of"),
    ({"data_uri": "s3://someone-elses-bucket/x.csv"}, "expected a location under one of"),
    ({"data_uri": "http://169.254.169.254/latest/meta-data"}, "scheme 'http' is not one of"),
    ({"data_uri": "{data}/ok.csv\n/etc/passwd"}, "control characters are not allowed"),
    ({"data_uri": "{data}/transactions_batch_001.csv", "data_conn_id": "aws_prod_admin"}, "data_conn_id: got"),
]


@pytest.fixture(scope="module")
def fraud_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fraud example with its data path made absolute (no MLflow store: nothing here reaches MLflow)."""
    source = Path(__file__).parents[2] / "dags" / "configs" / "fraud.yaml"
    raw = yaml.safe_load(source.read_text())
    raw["data"]["uri"] = str((source.parent / raw["data"]["uri"]).resolve())
    raw["gates"].pop("behaviour", None)
    path = tmp_path_factory.mktemp("configs") / "fraud.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(("extra", "refusal"), HOSTILE_LOCATIONS)
@pytest.mark.parametrize("via", ["conf", "asset event"])
def test_hostile_data_locations_from_conf_or_asset_events_are_refused(
    fraud_config_file: Path, extra: dict[str, str], refusal: str, via: str
) -> None:
    """REST ``conf`` and Asset-event extras are hostile: nothing outside the config's data folder (or
    ``[mlops] data_roots``) and no connection besides the config's (or ``[mlops] data_conn_ids``) is read."""
    from airflow_mlops.factories.assets import data_asset

    data = str(Path(__file__).parents[2] / "dags" / "data" / "fraud")
    values = {key: value.replace("{data}", data) for key, value in extra.items()}
    operator = op(FingerprintDataOperator, fraud_config_file)
    if via == "conf":
        ctx = context(params=values)
    else:
        event = SimpleNamespace(extra=values)
        ctx = {**context(), "triggering_asset_events": {data_asset("fraud"): [event]}}

    with pytest.raises(DataError, match=re.escape(refusal)) as refused:
        operator.data_location(ctx)

    source = "the DAG run's conf" if via == "conf" else "the triggering Asset event's extra"
    assert str(refused.value).startswith(f"FingerprintDataOperator: {source}: data_")


def test_a_refused_location_fails_the_task_before_mlflow(workspace: Any) -> None:
    config = workspace.write_config("fraud")
    with pytest.raises(DataError, match="expected a location under one of"):
        op(FingerprintDataOperator, config).execute(context(params={"data_uri": "/etc/passwd"}))
    assert workspace.client().get_experiment_by_name("airflow-mlops/fraud") is None


def test_conf_may_point_inside_the_data_folder_and_the_configured_roots(
    workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = workspace.write_config("fraud")
    operator = op(FingerprintDataOperator, config)
    data = Path(__file__).parents[2] / "dags" / "data" / "fraud"
    inside = str(data / "transactions_batch_002.csv")
    assert operator.data_location(context(params={"data_uri": inside})) == (inside, None)
    elsewhere = tmp_path / "landing" / "batch.csv"
    with pytest.raises(DataError, match="expected a location under one of"):
        operator.data_location(context(params={"data_uri": str(elsewhere)}))
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_ROOTS", str(tmp_path / "landing"))
    assert operator.data_location(context(params={"data_uri": str(elsewhere)})) == (str(elsewhere), None)
    sibling = tmp_path / "landing-evil" / "batch.csv"  # a prefix of the root's name is not inside it
    with pytest.raises(DataError, match="expected a location under one of"):
        operator.data_location(context(params={"data_uri": str(sibling)}))


def test_train_dag_runs_on_cron_or_drift_or_new_data(workspace: Any) -> None:
    from airflow_mlops.factories import build_dags

    workspace.write_config("fraud")
    dag = build_dags(None, workspace.config_dir)["fraud__train"]
    uris = sorted(asset.uri for asset in dag.timetable.asset_condition.objects)
    assert uris == ["mlops://fraud/data", "mlops://fraud/drift"]
    assert dag.timetable.timetable.expression == "0 0 * * *"  # "@daily" from the config

    workspace.write_config("fraud", {"schedule": None, "retraining": {"on_drift": True, "on_new_data": False}})
    dag = build_dags(None, workspace.config_dir)["fraud__train"]
    assert [asset.uri for asset in dag.timetable.asset_condition.objects] == ["mlops://fraud/drift"]


def test_a_data_folder_trains_on_its_newest_window_and_retries_reuse_the_choice(workspace: Any, tmp_path: Path) -> None:
    """``data.uri`` may be a folder where batches land: the newest file (or files within the window)."""
    import os
    import time

    import pandas as pd

    from airflow_mlops.examples.datasets import fraud_batch

    folder = tmp_path / "batches"
    folder.mkdir()
    old, new = folder / "batch_001.csv", folder / "batch_002.csv"
    fraud_batch(1).to_csv(old, index=False)
    fraud_batch(2).to_csv(new, index=False)
    past = time.time() - 3 * 86400
    os.utime(old, (past, past))
    config = workspace.write_config("fraud", {"data": {"uri": str(folder)}})

    first = op(FingerprintDataOperator, config).execute(context(run_id="manual__newest"))
    assert first["data_files"] == [str(new)] and first["rows"] == 6000

    fraud_batch(3).to_csv(folder / "batch_003.csv", index=False)  # lands after the run started
    retry = op(FingerprintDataOperator, config).execute(context(run_id="manual__newest"))
    assert retry["data_files"] == [str(new)] and retry["data_sha256"] == first["data_sha256"]

    windowed = workspace.write_config("fraud", {"data": {"uri": str(folder)}, "retraining": {"window": "2d"}})
    both = op(FingerprintDataOperator, windowed).execute(context(run_id="manual__window"))
    assert sorted(both["data_files"]) == [str(new), str(folder / "batch_003.csv")] and both["rows"] == 12000
    ctx = context(run_id="manual__window")
    assert op(ValidateDataOperator, windowed).execute(ctx)["rows"] == 12000
    assert isinstance(pd.read_csv(new), pd.DataFrame)


def test_a_config_edited_mid_run_stops_every_later_task(workspace: Any) -> None:
    """The run recorded the config's hash at fingerprint time; an edited YAML fails each later task and
    a retried fingerprint, naming the file and both hashes, instead of training on a config that differs
    from the run's lineage."""
    from airflow_mlops.exceptions import ConfigError

    config = workspace.write_config("fraud")
    ctx = context(run_id="manual__edited")
    fingerprint = op(FingerprintDataOperator, config).execute(ctx)
    recorded = workspace.client().get_run(fingerprint["mlflow_run_id"]).data.tags["mlops.config_sha256"]

    raw = yaml.safe_load(config.read_text())
    raw["estimator"]["params"]["C"] = 0.01
    config.write_text(yaml.safe_dump(raw))
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        with pytest.raises(ConfigError) as edited:
            op(cls, config).execute(ctx)
        message = str(edited.value)
        assert message.startswith(f"{config}: changed during DAG run 'manual__edited': the run recorded config sha256 ")
        assert recorded in message and "start a new DAG run" in message

    # a new DAG run takes the edited config
    assert op(FingerprintDataOperator, config).execute(context(run_id="manual__fresh"))["mlflow_run_id"]
