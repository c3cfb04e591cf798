"""The requests the SageMaker target sends, checked against AWS's own service model, and its pure helpers.

The system tests (``tests/system/test_sagemaker_target.py``) drive a moto server, but moto does not implement
``UpdateEndpoint`` and drops ``ShadowProductionVariants``. The calls for those are checked here with a stub,
because no emulator implements UpdateEndpoint/shadow variants; botocore's Stubber checks each request against
AWS's service model (every parameter's shape, type and required members) and lets us assert the exact
parameters and the order of the calls. Every stubbed response is validated against the model too, so the
answers below are ones SageMaker could give. No network: the client has dummy credentials and every call is
answered by the stub (an unexpected call fails the test).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from airflow_mlops.config.schema import SageMakerOptions
from airflow_mlops.deploy.promotion import DeploymentState
from airflow_mlops.deploy.sagemaker import (
    MAX_NAME,
    EndpointLayout,
    PackagedModel,
    SageMakerEndpoint,
    _deterministic_tar_gz,
    desired_layout,
)
from airflow_mlops.exceptions import TargetError

ENDPOINT = "fraud-prod"
ACCOUNT = "123456789012"
ENDPOINT_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{ENDPOINT}"
OLD_CONFIG = "fraud-prod-old"
WHEN = datetime(2025, 1, 1, tzinfo=UTC)
SHA = {"1": hashlib.sha256(b"v1").hexdigest(), "2": hashlib.sha256(b"v2").hexdigest()}


def make_options(**overrides: Any) -> SageMakerOptions:
    values: dict[str, Any] = {
        "endpoint_name": ENDPOINT,
        "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole",
        "image_uri": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.1",
        "model_data_s3_uri": "s3://bucket/models",
    }
    return SageMakerOptions(**(values | overrides))


def sagemaker_client() -> Any:
    return boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def client() -> Iterator[Any]:
    yield sagemaker_client()


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub


def endpoint_for(client: Any, *, poll_seconds: float = 0, **overrides: Any) -> SageMakerEndpoint:
    return SageMakerEndpoint(make_options(**overrides), client, s3=None, poll_seconds=poll_seconds)


def packages_for(endpoint: SageMakerEndpoint, *versions: str) -> dict[str, PackagedModel]:
    return {
        v: PackagedModel(v, f"s3://bucket/models/fraud/v{v}/model.tar.gz", SHA[v], endpoint.model_name(v, SHA[v]))
        for v in versions
    }


# --- stubbed answers (each one valid per the service model: Stubber checks them) -------------------------------


def described(
    status: str,
    weights: dict[str, float],
    *,
    config: str = OLD_CONFIG,
    shadow: str | None = None,
    failure: str | None = None,
) -> dict[str, Any]:
    """A ``DescribeEndpoint`` answer: production variants ``v<version>`` with their current weights."""
    answer: dict[str, Any] = {
        "EndpointName": ENDPOINT,
        "EndpointArn": ENDPOINT_ARN,
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": WHEN,
        "LastModifiedTime": WHEN,
    }
    if weights:  # the model wants at least one variant when the list is there (a Creating endpoint has none yet)
        answer["ProductionVariants"] = [
            {
                "VariantName": f"v{v}",
                "CurrentWeight": w,
                "DesiredWeight": w,
                "CurrentInstanceCount": 1,
                "DesiredInstanceCount": 1,
            }
            for v, w in weights.items()
        ]
    if shadow is not None:
        answer["ShadowProductionVariants"] = [{"VariantName": f"v{shadow}", "CurrentWeight": 100.0}]
    if failure is not None:
        answer["FailureReason"] = failure
    return answer


def config_described(name: str, packages: dict[str, PackagedModel], weights: dict[str, float]) -> dict[str, Any]:
    """A ``DescribeEndpointConfig`` answer whose production variants are ``weights``' versions."""
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{name}",
        "CreationTime": WHEN,
        "ProductionVariants": [
            {
                "VariantName": f"v{v}",
                "ModelName": packages[v].model_name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": w,
            }
            for v, w in weights.items()
        ],
    }


def variant(package: PackagedModel, weight: float) -> dict[str, Any]:
    """A ``ProductionVariant`` as the request must hold it (options' defaults: one ml.m5.large)."""
    return {
        "VariantName": f"v{package.version}",
        "ModelName": package.model_name,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": weight,
    }


def expect_describe(stubber: Stubber, answer: dict[str, Any]) -> None:
    stubber.add_response("describe_endpoint", answer, {"EndpointName": ENDPOINT})


def expect_config(stubber: Stubber, answer: dict[str, Any]) -> None:
    stubber.add_response("describe_endpoint_config", answer, {"EndpointConfigName": answer["EndpointConfigName"]})


def expect_missing_config(stubber: Stubber, name: str) -> None:
    stubber.add_client_error(
        "describe_endpoint_config",
        service_error_code="ValidationException",
        service_message="Could not find endpoint configuration",
        expected_params={"EndpointConfigName": name},
    )


def expect_weights_update(stubber: Stubber, weights: dict[str, float]) -> None:
    stubber.add_response(
        "update_endpoint_weights_and_capacities",
        {"EndpointArn": ENDPOINT_ARN},
        {
            "EndpointName": ENDPOINT,
            "DesiredWeightsAndCapacities": [{"VariantName": f"v{v}", "DesiredWeight": w} for v, w in weights.items()],
        },
    )


# --- apply: the calls, in order, with their exact parameters ----------------------------------------------------


def test_apply_adds_a_shadow_with_a_new_config_and_update_endpoint(client: Any, stubber: Stubber) -> None:
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    layout = EndpointLayout({"1": 100.0}, shadow="2")
    new_config = endpoint.config_request(layout, packages)["EndpointConfigName"]
    assert new_config != OLD_CONFIG

    expect_describe(stubber, described("InService", {"1": 100.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 100.0}))
    expect_missing_config(stubber, new_config)
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{new_config}"},
        {
            "EndpointConfigName": new_config,
            "ProductionVariants": [variant(packages["1"], 100.0)],
            "ShadowProductionVariants": [variant(packages["2"], 100.0)],
        },
    )
    stubber.add_response(
        "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": new_config}
    )
    expect_describe(stubber, described("Updating", {"1": 100.0}))
    expect_describe(stubber, described("InService", {"1": 100.0}, config=new_config, shadow="2"))

    assert endpoint.apply(layout, packages) == "updated"
    stubber.assert_no_pending_responses()


def test_apply_changes_weights_alone_in_place(client: Any, stubber: Stubber) -> None:
    """Same variants on the same models: ``UpdateEndpointWeightsAndCapacities``, no new config, no UpdateEndpoint."""
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    expect_describe(stubber, described("InService", {"1": 50.0, "2": 50.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 50.0, "2": 50.0}))
    expect_weights_update(stubber, {"1": 75.0, "2": 25.0})
    expect_describe(stubber, described("Updating", {"1": 50.0, "2": 50.0}))
    expect_describe(stubber, described("InService", {"1": 75.0, "2": 25.0}))

    assert endpoint.apply(EndpointLayout({"1": 75.0, "2": 25.0}), packages) == "weights"
    stubber.assert_no_pending_responses()


def test_apply_creates_a_missing_endpoint(client: Any, stubber: Stubber) -> None:
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1")
    layout = EndpointLayout({"1": 100.0})
    new_config = endpoint.config_request(layout, packages)["EndpointConfigName"]

    stubber.add_client_error(
        "describe_endpoint",
        service_error_code="ValidationException",
        service_message=f'Could not find endpoint "{ENDPOINT_ARN}".',
        expected_params={"EndpointName": ENDPOINT},
    )
    expect_missing_config(stubber, new_config)
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{new_config}"},
        {"EndpointConfigName": new_config, "ProductionVariants": [variant(packages["1"], 100.0)]},
    )
    stubber.add_response(
        "create_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": new_config}
    )
    expect_describe(stubber, described("Creating", {}, config=new_config))
    expect_describe(stubber, described("InService", {"1": 100.0}, config=new_config))

    assert endpoint.apply(layout, packages) == "created"
    stubber.assert_no_pending_responses()


def test_apply_reuses_an_existing_config_on_a_retry(client: Any, stubber: Stubber) -> None:
    """The config is named by its content: when an earlier try created it, it is not created again."""
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    layout = EndpointLayout({"1": 100.0}, shadow="2")
    new_config = endpoint.config_request(layout, packages)["EndpointConfigName"]

    expect_describe(stubber, described("InService", {"1": 100.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 100.0}))
    expect_config(stubber, config_described(new_config, packages, {"1": 100.0}))
    stubber.add_response(
        "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": new_config}
    )
    expect_describe(stubber, described("InService", {"1": 100.0}, config=new_config, shadow="2"))

    assert endpoint.apply(layout, packages) == "updated"
    stubber.assert_no_pending_responses()


def test_apply_leaves_an_endpoint_that_already_serves_the_layout(client: Any, stubber: Stubber) -> None:
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    expect_describe(stubber, described("InService", {"1": 3.0, "2": 1.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 3.0, "2": 1.0}))

    assert endpoint.apply(EndpointLayout({"1": 75.0, "2": 25.0}), packages) == "unchanged"
    stubber.assert_no_pending_responses()


# --- apply: an endpoint that does not come back ---------------------------------------------------------------


def test_apply_gives_up_on_an_endpoint_that_stays_updating(client: Any, stubber: Stubber) -> None:
    endpoint = endpoint_for(client, poll_seconds=0.05, update_timeout="1s")
    packages = packages_for(endpoint, "1", "2")
    expect_describe(stubber, described("InService", {"1": 50.0, "2": 50.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 50.0, "2": 50.0}))
    expect_weights_update(stubber, {"1": 75.0, "2": 25.0})
    for _ in range(200):  # ~20 reads fit in 1 s at 0.05 s apart; the rest stay unused
        expect_describe(stubber, described("Updating", {"1": 50.0, "2": 50.0}))

    started = time.monotonic()
    with pytest.raises(TargetError) as raised:
        endpoint.apply(EndpointLayout({"1": 75.0, "2": 25.0}), packages)
    assert time.monotonic() - started >= 1.0
    message = str(raised.value)
    assert "stayed Updating" in message
    assert "SageMaker keeps the previous config serving" in message
    assert "1s" in message


def test_apply_names_the_reason_an_endpoint_failed(client: Any, stubber: Stubber) -> None:
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    layout = EndpointLayout({"1": 100.0}, shadow="2")
    new_config = endpoint.config_request(layout, packages)["EndpointConfigName"]
    reason = "The primary container for production variant v2 did not pass the ping health check."

    expect_describe(stubber, described("InService", {"1": 100.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 100.0}))
    expect_config(stubber, config_described(new_config, packages, {"1": 100.0}))
    stubber.add_response(
        "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": new_config}
    )
    expect_describe(stubber, described("Updating", {"1": 100.0}))
    expect_describe(stubber, described("Failed", {"1": 100.0}, failure=reason))

    with pytest.raises(TargetError, match="is Failed") as raised:
        endpoint.apply(layout, packages)
    assert reason in str(raised.value)
    stubber.assert_no_pending_responses()


def test_apply_refuses_an_update_that_sagemaker_rolled_back(client: Any, stubber: Stubber) -> None:
    """SageMaker: "If the status of the endpoint is Failed, or the status is InService but update operation fails,
    [FailureReason] provides the reason why it failed": a failed update ends InService on the previous config."""
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    layout = EndpointLayout({"1": 100.0}, shadow="2")
    new_config = endpoint.config_request(layout, packages)["EndpointConfigName"]
    reason = "The primary container for production variant v2 did not pass the ping health check."

    expect_describe(stubber, described("InService", {"1": 100.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 100.0}))
    expect_config(stubber, config_described(new_config, packages, {"1": 100.0}))
    stubber.add_response(
        "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": new_config}
    )
    expect_describe(stubber, described("Updating", {"1": 100.0}))
    expect_describe(stubber, described("InService", {"1": 100.0}, config=OLD_CONFIG, failure=reason))

    with pytest.raises(TargetError, match=re.escape(reason)):
        endpoint.apply(layout, packages)
    stubber.assert_no_pending_responses()


def test_apply_stops_at_a_failed_rollback(client: Any, stubber: Stubber) -> None:
    """SageMaker: UpdateRollbackFailed: "Both the rolling deployment and auto-rollback failed. Your endpoint is in
    service with a mix of the old and new endpoint configurations": nothing to wait for."""
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    layout = EndpointLayout({"1": 100.0}, shadow="2")
    new_config = endpoint.config_request(layout, packages)["EndpointConfigName"]

    expect_describe(stubber, described("InService", {"1": 100.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 100.0}))
    expect_config(stubber, config_described(new_config, packages, {"1": 100.0}))
    stubber.add_response(
        "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": new_config}
    )
    expect_describe(stubber, described("UpdateRollbackFailed", {"1": 100.0}, failure="rollback failed"))

    with pytest.raises(TargetError, match="UpdateRollbackFailed") as raised:
        endpoint.apply(layout, packages)
    assert "keeps the previous config serving" not in str(raised.value)


# --- the layout the registry describes ------------------------------------------------------------------------


def test_desired_layout_champion_and_canary() -> None:
    state = DeploymentState(champion="3", canary="4", canary_percent=25.0)
    assert desired_layout(state) == EndpointLayout({"3": 75.0, "4": 25.0})


def test_desired_layout_champion_and_shadow() -> None:
    assert desired_layout(DeploymentState(champion="3", shadow="4")) == EndpointLayout({"3": 100.0}, shadow="4")


def test_desired_layout_refuses_a_shadow_next_to_a_canary() -> None:
    state = DeploymentState(champion="3", canary="4", canary_percent=10.0, shadow="5")
    with pytest.raises(TargetError, match=r"shadow \(v5\).*canary \(v4\)"):
        desired_layout(state)


def test_desired_layout_without_a_champion_is_empty() -> None:
    layout = desired_layout(DeploymentState(canary="4", canary_percent=10.0, shadow="5"))
    assert layout == EndpointLayout()
    assert layout.weights == {} and layout.shadow is None


def test_desired_layout_canary_on_the_champion_is_the_champion_alone() -> None:
    state = DeploymentState(champion="3", canary="3", canary_percent=40.0, shadow="3")
    assert desired_layout(state) == EndpointLayout({"3": 100.0})


@pytest.mark.parametrize(
    "text",
    [None, "", "not json", "[]", "42", '{"shadow": "2"}', '{"weights": 5}', '{"weights": {"1": "lots"}}', "[" * 5000],
)
def test_layout_from_unreadable_json_is_none(text: str | None) -> None:
    assert EndpointLayout.from_json(text) is None


def test_layout_round_trips_through_json() -> None:
    layout = EndpointLayout({"1": 90.0, "2": 10.0}, shadow=None)
    assert EndpointLayout.from_json(layout.to_json()) == layout
    shadowed = EndpointLayout({"1": 100.0}, shadow="2")
    assert EndpointLayout.from_json(shadowed.to_json()) == shadowed


# --- the CreateEndpointConfig request and the names -----------------------------------------------------------

MODEL_NAME = re.compile(sagemaker_client().meta.service_model.shape_for("ModelName").metadata["pattern"])
CONFIG_NAME = re.compile(sagemaker_client().meta.service_model.shape_for("EndpointConfigName").metadata["pattern"])


def check_request(client: Any, request: dict[str, Any]) -> None:
    """``request`` is a valid ``CreateEndpointConfig`` input per the service model, with a name SageMaker takes."""
    validate_parameters(request, client.meta.service_model.operation_model("CreateEndpointConfig").input_shape)
    name = request["EndpointConfigName"]
    assert len(name) <= MAX_NAME and CONFIG_NAME.fullmatch(name), name


def test_config_name_is_short_stable_and_follows_the_content(client: Any) -> None:
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    request = endpoint.config_request(EndpointLayout({"1": 75.0, "2": 25.0}), packages)
    check_request(client, request)
    again = endpoint_for(sagemaker_client()).config_request(EndpointLayout({"1": 75.0, "2": 25.0}), dict(packages))
    assert again == request
    other = endpoint.config_request(EndpointLayout({"1": 50.0, "2": 50.0}), packages)
    assert other["EndpointConfigName"] != request["EndpointConfigName"]
    shadowed = endpoint.config_request(EndpointLayout({"1": 100.0}, shadow="2"), packages)
    check_request(client, shadowed)
    assert shadowed["EndpointConfigName"] not in (request["EndpointConfigName"], other["EndpointConfigName"])


def test_config_request_with_data_capture(client: Any) -> None:
    plain = endpoint_for(client)
    packages = packages_for(plain, "1")
    assert "DataCaptureConfig" not in plain.config_request(EndpointLayout({"1": 100.0}), packages)

    capturing = endpoint_for(client, data_capture_s3_uri="s3://bucket/capture")
    request = capturing.config_request(EndpointLayout({"1": 100.0}), packages)
    check_request(client, request)
    assert request["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://bucket/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    plain_name = plain.config_request(EndpointLayout({"1": 100.0}), packages)["EndpointConfigName"]
    assert request["EndpointConfigName"] != plain_name


@pytest.mark.parametrize("name", ["a" * 63, "a" * 50 + "-" + "b" * 12, "a" * 49 + "--" + "b" * 12])
def test_names_fit_for_the_longest_endpoint_name(client: Any, name: str) -> None:
    endpoint = endpoint_for(client, endpoint_name=name)
    for version in ("1", "12345"):
        model = endpoint.model_name(version, SHA["1"])
        assert len(model) <= MAX_NAME and MODEL_NAME.fullmatch(model), model
        assert re.fullmatch(rf".*-v{version}-[0-9a-f]{{8}}", model), model
    packages = packages_for(endpoint, "1", "2")
    check_request(client, endpoint.config_request(EndpointLayout({"1": 100.0}, shadow="2"), packages))


def test_a_new_image_or_role_makes_a_new_model_name(client: Any) -> None:
    """The name covers the archive, the image and the role: changing the serving image must not reuse the old
    model (which would keep serving the old image)."""
    endpoint = endpoint_for(client)
    same = endpoint_for(client)
    new_image = endpoint_for(client, image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.2")
    new_role = endpoint_for(client, execution_role_arn="arn:aws:iam::123456789012:role/Other")
    names = {e.model_name("1", SHA["1"]) for e in (endpoint, new_image, new_role)}
    assert len(names) == 3
    assert same.model_name("1", SHA["1"]) == endpoint.model_name("1", SHA["1"])
    assert endpoint.model_name("1", SHA["1"]) != endpoint.model_name("1", SHA["2"])


# --- the model package ------------------------------------------------------------------------------------------


def test_package_archive_is_reproducible_and_flat(tmp_path: Path) -> None:
    root = tmp_path / "model"
    (root / "artifacts").mkdir(parents=True)
    files = {"MLmodel": b"flavors: {}\n", "model.skops": b"\x00\x01weights", "artifacts/schema.json": b"{}"}
    for name, body in files.items():
        (root / name).write_bytes(body)

    first = _deterministic_tar_gz(str(root))
    for i, name in enumerate(files):
        os.utime(root / name, (1_000_000 + i, 1_700_000_000 + 3600 * i))
    (root / "artifacts").chmod(0o700)
    second = _deterministic_tar_gz(str(root))
    assert second == first

    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["MLmodel", "model.skops", "artifacts/schema.json"]
        assert all(m.isfile() and m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        for member in members:
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == files[member.name]
    assert first[4:8] == b"\x00\x00\x00\x00"  # gzip header MTIME: none
    assert gzip.decompress(first)  # one well-formed gzip stream


# --- review mends: drain before UpdateEndpoint, rounding, unknown variants --------------------------------------


def test_a_rollback_moves_the_traffic_off_before_update_endpoint(client: Any, stubber: Stubber) -> None:
    """UpdateEndpoint starts new instances first (minutes): a version being rolled back must lose its share at
    once, with a weights update, before the endpoint config is replaced."""
    endpoint = endpoint_for(client)
    packages = packages_for(endpoint, "1", "2")
    layout = EndpointLayout({"1": 100.0})
    new_config = endpoint.config_request(layout, packages)["EndpointConfigName"]

    expect_describe(stubber, described("InService", {"1": 0.0, "2": 100.0}))
    expect_config(stubber, config_described(OLD_CONFIG, packages, {"1": 0.0, "2": 100.0}))
    expect_weights_update(stubber, {"1": 100.0, "2": 0.0})  # the drain, first
    expect_describe(stubber, described("InService", {"1": 100.0, "2": 0.0}))
    expect_missing_config(stubber, new_config)
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{new_config}"},
        {"EndpointConfigName": new_config, "ProductionVariants": [variant(packages["1"], 100.0)]},
    )
    stubber.add_response(
        "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": new_config}
    )
    expect_describe(stubber, described("InService", {"1": 100.0}, config=new_config))

    assert endpoint.apply(layout, packages) == "updated"
    stubber.assert_no_pending_responses()


def test_shares_that_need_rounding_are_still_the_same_layout() -> None:
    """1.23455 % rounds differently as the canary's share and as 100 minus it; SageMaker stores floats."""
    from airflow_mlops.deploy.promotion import DeploymentState

    layout = desired_layout(DeploymentState(champion="1", canary="2", canary_percent=1.23455))
    assert abs(sum(layout.weights.values()) - 100.0) < 1e-9
    served = EndpointLayout({"1": round(100 * 98.7654 / 100.00001, 4), "2": 1.2346})
    assert layout.matches(served)
    assert not layout.matches(EndpointLayout({"1": 98.0, "2": 2.0}))
    assert not layout.matches(EndpointLayout({"1": 98.7654, "2": 1.2346}, shadow="3"))


def test_a_variant_added_by_hand_is_drift_and_still_describable(client: Any, stubber: Stubber) -> None:
    endpoint = endpoint_for(client)
    answer = described("InService", {"1": 100.0})
    answer["ProductionVariants"].append({"VariantName": "AllTraffic", "CurrentWeight": 100.0, "DesiredWeight": 100.0})
    packages = packages_for(endpoint, "1")
    config = config_described(OLD_CONFIG, packages, {"1": 100.0})
    config["ProductionVariants"].append(
        {"VariantName": "AllTraffic", "ModelName": "by-hand", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    )
    expect_config(stubber, config)

    served, models = endpoint.served(answer)
    assert served is not None and served.weights == {"1": 50.0, "?AllTraffic": 50.0}
    assert models == {"1": packages["1"].model_name, "?AllTraffic": "by-hand"}
    assert served.describe() == "v1 50%, variant 'AllTraffic' 50%"
    assert not EndpointLayout({"1": 100.0}).matches(served)
