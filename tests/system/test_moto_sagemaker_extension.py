"""The test-only SageMaker extension of the moto emulator (``tests/moto_sagemaker.py``), through boto3.

This exercises the emulator extension, not AWS: it checks that the patched moto server keeps shadow variants
and zero weights, implements UpdateEndpoint with AWS's validation, and still serves the other services (S3)
on the same port. The AWS behaviour it copies is the SageMaker API reference's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import emulators

pytestmark = pytest.mark.emulator

ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-test"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:latest"
INSTANCE_TYPE = "ml.m5.large"


@pytest.fixture(scope="module")
def endpoint_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with emulators.run_moto_sagemaker_server(tmp_path_factory.mktemp("moto_sagemaker")) as url:
        yield url


@pytest.fixture(scope="module")
def client(endpoint_url: str) -> Callable[[str], Any]:
    def make(service: str) -> Any:
        return emulators.moto_client(endpoint_url, service)

    return make


@pytest.fixture(scope="module")
def sm(client: Callable[[str], Any]) -> Any:
    return client("sagemaker")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _model(sm: Any) -> str:
    name = _name("model")
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": IMAGE})
    return name


def _variant(name: str, model: str, weight: float, count: int = 1) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": INSTANCE_TYPE,
        "InitialInstanceCount": count,
        "InitialVariantWeight": weight,
    }


def _by_name(variants: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in variants}


def _error(excinfo: pytest.ExceptionInfo[Any]) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def test_weighted_variants_shadow_and_update_endpoint(sm: Any) -> None:
    from botocore.exceptions import ClientError

    blue, green = _model(sm), _model(sm)
    weighted = _name("cfg-weighted")
    sm.create_endpoint_config(
        EndpointConfigName=weighted,
        ProductionVariants=[_variant("blue", blue, 1.0), _variant("green", green, 0.0, count=2)],
    )
    endpoint = _name("ep")
    arn = sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=weighted)["EndpointArn"]
    assert arn.endswith(f":endpoint/{endpoint}")

    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == weighted
    assert "ShadowProductionVariants" not in described
    variants = _by_name(described["ProductionVariants"])
    assert variants["blue"]["CurrentWeight"] == 1.0
    assert variants["green"]["CurrentWeight"] == 0.0  # moto alone drops a weight of 0
    assert variants["green"]["DesiredWeight"] == 0.0
    assert variants["green"]["CurrentInstanceCount"] == 2
    first_modified = described["LastModifiedTime"]

    # moto's own UpdateEndpointWeightsAndCapacities still works after the patch
    sm.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[
            {"VariantName": "blue", "DesiredWeight": 0.5},
            {"VariantName": "green", "DesiredWeight": 0.5},
        ],
    )
    variants = _by_name(sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"])
    assert variants["blue"]["CurrentWeight"] == 0.5
    assert variants["green"]["CurrentWeight"] == 0.5

    # config with one production and one shadow variant, kept and described
    shadowed = _name("cfg-shadow")
    sm.create_endpoint_config(
        EndpointConfigName=shadowed,
        ProductionVariants=[_variant("green", green, 1.0)],
        ShadowProductionVariants=[_variant("blue-shadow", blue, 1.0)],
    )
    config = sm.describe_endpoint_config(EndpointConfigName=shadowed)
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["green"]
    assert [(v["VariantName"], v["ModelName"]) for v in config["ShadowProductionVariants"]] == [("blue-shadow", blue)]
    assert "ShadowProductionVariants" not in sm.describe_endpoint_config(EndpointConfigName=weighted)

    # UpdateEndpoint switches the endpoint to the new config
    assert sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=shadowed)["EndpointArn"] == arn
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == shadowed
    assert described["LastModifiedTime"] >= first_modified
    [production] = described["ProductionVariants"]
    assert production["VariantName"] == "green"
    assert production["CurrentWeight"] == 1.0
    assert production["CurrentInstanceCount"] == 1
    [shadow] = described["ShadowProductionVariants"]
    assert shadow == {
        "VariantName": "blue-shadow",
        "CurrentWeight": 1.0,
        "DesiredWeight": 1.0,
        "CurrentInstanceCount": 1,
        "DesiredInstanceCount": 1,
    }
    # the old variant is gone: moto's weight update now refuses it
    with pytest.raises(ClientError) as excinfo:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=endpoint, DesiredWeightsAndCapacities=[{"VariantName": "blue", "DesiredWeight": 1.0}]
        )
    assert _error(excinfo)[0] == "ValidationException"

    # and back: the shadow variant disappears with a config that has none
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=weighted)
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == weighted
    assert "ShadowProductionVariants" not in described
    assert set(_by_name(described["ProductionVariants"])) == {"blue", "green"}

    # an endpoint created straight from the shadow config has the shadow variant too
    direct = _name("ep-direct")
    sm.create_endpoint(EndpointName=direct, EndpointConfigName=shadowed)
    [shadow] = sm.describe_endpoint(EndpointName=direct)["ShadowProductionVariants"]
    assert shadow["VariantName"] == "blue-shadow"


def test_update_endpoint_missing_config_or_endpoint(sm: Any) -> None:
    from botocore.exceptions import ClientError

    model = _model(sm)
    config = _name("cfg")
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[_variant("only", model, 1.0)])
    endpoint = _name("ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)

    with pytest.raises(ClientError) as excinfo:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName="no-such-config")
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert message.startswith('Could not find endpoint configuration "arn:aws:sagemaker:')
    assert "endpoint-config/no-such-config" in message
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == config  # unchanged

    with pytest.raises(ClientError) as excinfo:
        sm.update_endpoint(EndpointName="no-such-endpoint", EndpointConfigName=config)
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert message.startswith('Could not find endpoint "arn:aws:sagemaker:')
    assert message.endswith(':endpoint/no-such-endpoint".')


@pytest.mark.parametrize(
    ("production", "shadows"),
    [
        pytest.param(["a", "b"], ["s"], id="two-production-variants"),
        pytest.param(["a"], ["s", "t"], id="two-shadow-variants"),
    ],
)
def test_shadow_rule_rejects_config(sm: Any, production: list[str], shadows: list[str]) -> None:
    from botocore.exceptions import ClientError

    model = _model(sm)
    config = _name("cfg-bad")
    with pytest.raises(ClientError) as excinfo:
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[_variant(n, model, 1.0) for n in production],
            ShadowProductionVariants=[_variant(n, model, 1.0) for n in shadows],
        )
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert "ShadowProductionVariants" in message
    with pytest.raises(ClientError):  # not stored
        sm.describe_endpoint_config(EndpointConfigName=config)


def test_shadow_variant_model_must_exist(sm: Any) -> None:
    from botocore.exceptions import ClientError

    model = _model(sm)
    with pytest.raises(ClientError) as excinfo:
        sm.create_endpoint_config(
            EndpointConfigName=_name("cfg-nomodel"),
            ProductionVariants=[_variant("a", model, 1.0)],
            ShadowProductionVariants=[_variant("s", "no-such-model", 1.0)],
        )
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert "model/no-such-model" in message


def test_same_port_serves_s3(client: Callable[[str], Any]) -> None:
    s3 = client("s3")
    bucket = _name("bucket")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k.txt", Body=b"hello moto")
    assert s3.get_object(Bucket=bucket, Key="k.txt")["Body"].read() == b"hello moto"
