"""The SageMaker deployment target against moto's SageMaker and S3 (server mode), through Airflow's AWS hook.

moto does not implement ``UpdateEndpoint`` and drops shadow variants; the server here is moto with the
test-only extension in ``tests/moto_sagemaker.py`` that adds both (per the SageMaker API reference). Every
request is still built and validated by boto3 against AWS's own service model. The registry is a real MLflow
store with versions trained, registered and gated by the real operators.

At every step the registry's aliases, the endpoint's variants and weights, and the audit trail must agree.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import emulators
from airflow_mlops.config.schema import SageMakerOptions
from airflow_mlops.deploy.audit import AuditTrail
from airflow_mlops.deploy.sagemaker import EndpointLayout, SageMakerTarget
from airflow_mlops.exceptions import TargetDriftError, TargetError
from airflow_mlops.registry.checksum import ModelIntegrityError
from airflow_mlops.vocabulary import Alias, Tag
from support import trained_registry

pytestmark = pytest.mark.emulator

MODEL = "fraud"
CONN_ID = "aws_moto_sagemaker"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.1"


@dataclass
class Cloud:
    endpoint_url: str
    bucket: str

    def client(self, service: str) -> Any:
        return emulators.moto_client(self.endpoint_url, service)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with (
        pytest.MonkeyPatch.context() as mp,
        emulators.run_moto_sagemaker_server(tmp_path_factory.mktemp("moto-sagemaker")) as url,
    ):
        mp.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", emulators.aws_connection_json(url))
        cloud = Cloud(url, f"models-{uuid.uuid4().hex[:10]}")
        cloud.client("s3").create_bucket(Bucket=cloud.bucket)
        yield cloud


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cloud: Cloud) -> Iterator[Any]:
    trainings = [(None, "manual__sm_v1"), (None, "manual__sm_v2"), (None, "manual__sm_v3")]
    with trained_registry(request.config, tmp_path_factory.mktemp("sagemaker-registry"), trainings) as trained:
        assert trained.versions == ["1", "2", "3"]
        trained.target.promote(MODEL, "1", actor="test", reason="first champion")
        yield trained


def options(cloud: Cloud, **overrides: Any) -> SageMakerOptions:
    return SageMakerOptions(
        aws_conn_id=CONN_ID,
        endpoint_name=overrides.pop("endpoint_name", f"fraud-{uuid.uuid4().hex[:8]}"),
        execution_role_arn=ROLE,
        image_uri=IMAGE,
        model_data_s3_uri=f"s3://{cloud.bucket}/packages",
        update_timeout="20s",
        **overrides,
    )


@pytest.fixture
def target(registry: Any, cloud: Cloud) -> Iterator[SageMakerTarget]:
    """A target on a new endpoint; the registry starts (and is left) with v1 as the only champion."""
    registry.target.rollback(MODEL, to_version="1", actor="test", reason="reset")
    _clear_rejections(registry.client)
    registry.client.delete_registered_model_tag(MODEL, Tag.TARGET_APPLIED) if Tag.TARGET_APPLIED in (
        registry.client.get_registered_model(MODEL).tags or {}
    ) else None
    yield SageMakerTarget.from_options(
        options(cloud), client=registry.client, audit=AuditTrail(registry.state_url), poll_seconds=0.05
    )
    registry.target.rollback(MODEL, to_version="1", actor="test", reason="reset")
    _clear_rejections(registry.client)


def _clear_rejections(client: Any) -> None:
    for version in ("1", "2", "3"):
        tags = client.get_model_version(MODEL, version).tags
        for key in (Tag.REJECTED_REASON, Tag.REJECTED_BY):
            if key in tags:
                client.delete_model_version_tag(MODEL, version, key)


def endpoint(cloud: Cloud, target: SageMakerTarget) -> dict[str, Any]:
    described = cloud.client("sagemaker").describe_endpoint(EndpointName=target.endpoint.name)
    weights = {v["VariantName"]: v.get("CurrentWeight") for v in described["ProductionVariants"]}
    shadows = [v["VariantName"] for v in described.get("ShadowProductionVariants") or []]
    return {"weights": weights, "shadows": shadows, "config": described["EndpointConfigName"]}


def endpoint_rows(target: SageMakerTarget, after: int = 0) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.alias, e.from_version, e.to_version)
        for e in target.audit.history(MODEL)
        if e.alias.startswith("endpoint") and e.id > after
    ]


def last_id(target: SageMakerTarget) -> int:
    events = target.audit.history(MODEL)
    return max((e.id for e in events), default=0)


def test_a_rollout_moves_registry_endpoint_and_audit_together(target: SageMakerTarget, cloud: Cloud) -> None:
    start = last_id(target)
    target.start_shadow(MODEL, "2", actor="run_1", reason="shadow phase")
    assert target.state(MODEL).shadow == "2"
    assert endpoint(cloud, target) | {"config": None} == {"weights": {"v1": 100.0}, "shadows": ["v2"], "config": None}
    assert endpoint_rows(target, start) == [("endpoint:v1", None, "100%"), ("endpoint:shadow", None, "2")]

    target.stop_shadow(MODEL, actor="run_1", reason="shadow over")
    assert endpoint(cloud, target)["shadows"] == []

    target.set_traffic(MODEL, "2", 5, actor="run_1", reason="canary step 5%")
    five = endpoint(cloud, target)
    assert five["weights"] == {"v1": 95.0, "v2": 5.0}
    assert (target.state(MODEL).canary, target.state(MODEL).canary_percent) == ("2", 5.0)

    mark = last_id(target)
    target.set_traffic(MODEL, "2", 50, actor="run_1", reason="canary step 50%")
    fifty = endpoint(cloud, target)
    assert fifty["weights"] == {"v1": 50.0, "v2": 50.0}
    assert fifty["config"] == five["config"], "a change of weights alone must not replace the endpoint config"
    assert endpoint_rows(target, mark) == [("endpoint:v1", "95%", "50%"), ("endpoint:v2", "5%", "50%")]

    target.promote(MODEL, "2", actor="run_1", reason="canary completed")
    assert target.state(MODEL).aliases() == {Alias.CHAMPION: "2", Alias.PREVIOUS: "1"}
    assert endpoint(cloud, target)["weights"] == {"v2": 100.0}

    target.rollback(MODEL, to_version="previous", actor="oncall", reason="manual rollback")
    assert target.state(MODEL).champion == "1"
    assert endpoint(cloud, target)["weights"] == {"v1": 100.0}
    view = target.view(MODEL)
    assert view.in_sync and not view.changed_by_hand
    assert view.applied == EndpointLayout({"1": 100.0})


def test_a_reject_during_the_canary_leaves_the_champion_alone(target: SageMakerTarget, cloud: Cloud) -> None:
    target.set_traffic(MODEL, "3", 25, actor="run_2", reason="canary step 25%")
    assert endpoint(cloud, target)["weights"] == {"v1": 75.0, "v3": 25.0}
    target.reject(MODEL, "3", actor="run_2", reason="canary breach")
    assert endpoint(cloud, target)["weights"] == {"v1": 100.0}
    assert Tag.REJECTED_REASON in target.client.get_model_version(MODEL, "3").tags


def test_each_version_is_packaged_once_and_checked_before_use(target: SageMakerTarget, cloud: Cloud) -> None:
    sagemaker, s3 = cloud.client("sagemaker"), cloud.client("s3")
    first = target.endpoint.package(target.client, MODEL, "1")
    tags = target.client.get_model_version(MODEL, "1").tags
    assert tags[Tag.SAGEMAKER_MODEL_DATA] == first.model_data
    body = s3.get_object(Bucket=cloud.bucket, Key=first.model_data.split("/", 3)[3])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == tags[Tag.SAGEMAKER_SHA256] == first.sha256
    assert sagemaker.describe_model(ModelName=first.model_name)["PrimaryContainer"]["ModelDataUrl"] == first.model_data
    models_before = len(sagemaker.list_models(MaxResults=100)["Models"])

    again = target.endpoint.package(target.client, MODEL, "1")  # a retried task: found and reused
    assert again == first
    assert len(sagemaker.list_models(MaxResults=100)["Models"]) == models_before

    # the archive in S3 replaced by someone else: refused before any model is created from it
    key = first.model_data.split("/", 3)[3]
    s3.put_object(Bucket=cloud.bucket, Key=key, Body=b"not the model")
    with pytest.raises(ModelIntegrityError, match="was changed or written by someone else"):
        target.endpoint.package(target.client, MODEL, "1")
    s3.put_object(Bucket=cloud.bucket, Key=key, Body=body)


def test_a_package_is_rebuilt_byte_for_byte_when_its_archive_is_gone(target: SageMakerTarget, cloud: Cloud) -> None:
    s3 = cloud.client("s3")
    first = target.endpoint.package(target.client, MODEL, "2")
    s3.delete_object(Bucket=cloud.bucket, Key=first.model_data.split("/", 3)[3])
    assert target.endpoint.package(target.client, MODEL, "2") == first


def test_an_endpoint_changed_by_hand_stops_the_rollout(target: SageMakerTarget, cloud: Cloud) -> None:
    target.set_traffic(MODEL, "2", 5, actor="run_3", reason="canary step 5%")
    cloud.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=target.endpoint.name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "v1", "DesiredWeight": 50},
            {"VariantName": "v2", "DesiredWeight": 50},
        ],
    )
    view = target.view(MODEL)
    assert view.changed_by_hand and "DRIFT" in view.describe()
    with pytest.raises(TargetDriftError, match=r"changed outside airflow-mlops.*fraud__rollback"):
        target.set_traffic(MODEL, "2", 25, actor="run_3", reason="canary step 25%")
    assert target.state(MODEL).canary_percent == 5.0, "the registry must not move when the endpoint drifted"

    mark = last_id(target)
    target.rollback(MODEL, to_version="1", actor="oncall", reason="put the registry back")  # goes through
    assert endpoint(cloud, target)["weights"] == {"v1": 100.0}
    overriding = [e for e in target.audit.history(MODEL) if e.id > mark and e.alias == "endpoint"]
    assert overriding and "overriding a change made by hand" in overriding[0].reason


def test_an_update_of_ours_that_did_not_finish_is_finished_by_the_next_operation(
    target: SageMakerTarget, cloud: Cloud
) -> None:
    target.set_traffic(MODEL, "2", 5, actor="run_4", reason="canary step 5%")
    target.deployments.set_canary(MODEL, "2", 25, actor="run_4", reason="registry moved, endpoint call lost")
    view = target.view(MODEL)
    assert not view.in_sync and not view.changed_by_hand and "pending" in view.describe()
    target.set_traffic(MODEL, "2", 25, actor="run_4", reason="retry")
    assert endpoint(cloud, target)["weights"] == {"v1": 75.0, "v2": 25.0}


def test_a_shadow_and_a_canary_share_cannot_be_served_together(target: SageMakerTarget, cloud: Cloud) -> None:
    target.start_shadow(MODEL, "2", actor="run_5", reason="shadow phase")
    with pytest.raises(TargetError, match="mirrors only next to one production variant"):
        target.set_traffic(MODEL, "3", 5, actor="run_5", reason="canary step 5%")
    assert target.state(MODEL).canary is None
    assert endpoint(cloud, target)["shadows"] == ["v2"]
    target.stop_shadow(MODEL, actor="run_5", reason="done")


def test_data_capture_is_configured_when_asked(registry: Any, cloud: Cloud) -> None:
    capture = f"s3://{cloud.bucket}/capture"
    sm = SageMakerTarget.from_options(
        options(cloud, data_capture_s3_uri=capture), client=registry.client, audit=AuditTrail(registry.state_url)
    )
    sm.endpoint.poll_seconds = 0.05
    sm.reconcile(MODEL, actor="test", reason="first deployment")
    described = cloud.client("sagemaker").describe_endpoint(EndpointName=sm.endpoint.name)
    config = cloud.client("sagemaker").describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == capture
    assert json.loads(registry.client.get_registered_model(MODEL).tags[Tag.TARGET_APPLIED]) == {
        "weights": {"1": 100.0},
        "shadow": None,
    }


def test_status_shows_the_endpoint_next_to_the_registry_and_flags_drift(
    target: SageMakerTarget, cloud: Cloud, registry: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    import yaml

    from airflow_mlops.cli import main

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "dags" / "configs" / "fraud.yaml").read_text())
    raw["data"]["uri"] = "data.csv"
    raw["gates"].pop("behaviour", None)
    raw["rollout"] = {
        "target": "sagemaker",
        "target_options": target.endpoint.options.model_dump(mode="json"),
        "shadow": {"enabled": False},
    }
    (tmp_path / "fraud.yaml").write_text(yaml.safe_dump(raw))
    args = ["status", "fraud", "--config-dir", str(tmp_path), "--tracking-uri", registry.tracking_uri]
    args += ["--state-db", registry.state_url]

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "aliases:  champion v1" in out and "endpoint " + target.endpoint.name + ": absent" in out

    target.set_traffic(MODEL, "2", 5, actor="run_6", reason="canary step 5%")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "serves:   v1 95%, v2 5%" in out and "registry: v1 95%, v2 5%" in out and "DRIFT" not in out

    cloud.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=target.endpoint.name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "v1", "DesiredWeight": 0},
            {"VariantName": "v2", "DesiredWeight": 100},
        ],
    )
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "serves:   v1 0%, v2 100%" in out and "DRIFT" in out


def test_a_lost_tag_is_recovered_and_a_forged_archive_with_its_tag_is_refused(
    target: SageMakerTarget, cloud: Cloud, tmp_path: Any
) -> None:
    from airflow_mlops.deploy.sagemaker import _deterministic_tar_gz

    s3 = cloud.client("s3")
    first = target.endpoint.package(target.client, MODEL, "3")
    key = first.model_data.split("/", 3)[3]
    genuine = s3.get_object(Bucket=cloud.bucket, Key=key)["Body"].read()

    # an earlier try uploaded the archive and died before tagging: the next one checks it and tags it
    target.client.delete_model_version_tag(MODEL, "3", Tag.SAGEMAKER_SHA256)
    assert target.endpoint.package(target.client, MODEL, "3") == first
    assert target.client.get_model_version(MODEL, "3").tags[Tag.SAGEMAKER_SHA256] == first.sha256

    # someone with S3 and registry access replaces the archive with a well-formed one and edits the tag to match
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / "MLmodel").write_text("flavors: {python_function: {loader_module: evil}}\n")
    forged = _deterministic_tar_gz(str(tmp_path / "forged"))
    s3.put_object(Bucket=cloud.bucket, Key=key, Body=forged)
    target.client.set_model_version_tag(MODEL, "3", Tag.SAGEMAKER_SHA256, hashlib.sha256(forged).hexdigest())
    with pytest.raises(ModelIntegrityError, match="recorded at registration; the archive was changed"):
        target.endpoint.package(target.client, MODEL, "3")
    s3.put_object(Bucket=cloud.bucket, Key=key, Body=genuine)
    target.client.set_model_version_tag(MODEL, "3", Tag.SAGEMAKER_SHA256, first.sha256)


def test_a_variant_added_by_hand_is_drift_and_a_rollback_removes_it(target: SageMakerTarget, cloud: Cloud) -> None:
    sagemaker = cloud.client("sagemaker")
    target.set_traffic(MODEL, "2", 5, actor="run_7", reason="canary step 5%")
    model = target.endpoint.package(target.client, MODEL, "1").model_name
    hand = f"{target.endpoint.name}-by-hand"
    sagemaker.create_endpoint_config(
        EndpointConfigName=hand,
        ProductionVariants=[
            {
                "VariantName": "v1",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 50.0,
            },
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 50.0,
            },
        ],
    )
    sagemaker.update_endpoint(EndpointName=target.endpoint.name, EndpointConfigName=hand)

    view = target.view(MODEL)
    assert view.changed_by_hand
    assert "serves:   v1 50%, variant 'AllTraffic' 50%" in view.describe()
    with pytest.raises(TargetDriftError, match="variant 'AllTraffic' 50%"):
        target.set_traffic(MODEL, "2", 25, actor="run_7", reason="canary step 25%")

    target.rollback(MODEL, to_version="1", actor="oncall", reason="put the registry back")
    assert endpoint(cloud, target)["weights"] == {"v1": 100.0}


def test_the_deploy_dag_stops_at_resolve_when_the_endpoint_was_changed_by_hand(
    target: SageMakerTarget, cloud: Cloud
) -> None:
    from airflow_mlops.operators.rollout import ResolveCandidateOperator
    from support import context

    resolve = ResolveCandidateOperator(
        task_id="resolve_candidate",
        model_name=MODEL,
        version="2",
        target="sagemaker",
        target_options=target.endpoint.options.model_dump(mode="json"),
    )
    assert resolve.execute(context()) == {"version": "2", "champion": "1"}  # in sync (no endpoint yet)

    target.set_traffic(MODEL, "3", 5, actor="run_8", reason="canary step 5%")
    target.set_traffic(MODEL, None, 0, actor="run_8", reason="canary over")
    cloud.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=target.endpoint.name,
        DesiredWeightsAndCapacities=[{"VariantName": "v1", "DesiredWeight": 100}],
    )
    assert target.view(MODEL).in_sync  # 100 % on v1 is what the registry says: not drift

    target.set_traffic(MODEL, "3", 5, actor="run_8", reason="canary step 5%")
    cloud.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=target.endpoint.name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "v1", "DesiredWeight": 10},
            {"VariantName": "v3", "DesiredWeight": 90},
        ],
    )
    with pytest.raises(TargetDriftError, match="changed outside airflow-mlops"):
        resolve.execute(context())
