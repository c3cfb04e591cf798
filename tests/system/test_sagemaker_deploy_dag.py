"""``fraud__deploy`` and ``fraud__rollback`` with ``rollout.target: sagemaker``, end to end with ``dag.test()``.

The endpoint is moto's SageMaker with the test-only extension in ``tests/moto_sagemaker.py`` (it adds
``UpdateEndpoint``, which moto lacks); S3 and CloudWatch are moto's own. No model runs behind a moto
endpoint, so the invocation metrics a real endpoint would publish are put into CloudWatch by this test, per
variant, while the DAG runs: that is the emulated part. Everything else is real: the operators, the
triggers (inline in ``dag.test()``), the AWS hook and connection, boto3's requests, the MLflow registry and
the audit trail.

A good candidate goes through the canary steps to champion; a candidate whose variant answers 5xx is
rolled back by the canary check at the first step. The registry, the endpoint and the audit trail agree.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import emulators
from support import train_version

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

CONN_ID = "aws_moto_sagemaker_dag"


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with emulators.run_moto_sagemaker_server(tmp_path_factory.mktemp("moto-sagemaker-dag")) as url:
        yield url


def client(url: str, service: str) -> Any:
    return emulators.moto_client(url, service)


class VariantMetrics:
    """Publishes each variant's invocation metrics every 0.3 s, as a live endpoint would (5xx for ``failing``)."""

    def __init__(self, url: str, endpoint: str, failing: set[str]) -> None:
        self.cloudwatch, self.sagemaker = client(url, "cloudwatch"), client(url, "sagemaker")
        self.endpoint, self.failing = endpoint, failing
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> VariantMetrics:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                variants = self.sagemaker.describe_endpoint(EndpointName=self.endpoint)["ProductionVariants"]
            except Exception:  # not created yet
                continue
            now = datetime.now(tz=UTC)
            for variant in variants:
                name = variant["VariantName"]
                dims = [{"Name": "EndpointName", "Value": self.endpoint}, {"Name": "VariantName", "Value": name}]
                errors = 5.0 if name in self.failing else 0.0
                self.cloudwatch.put_metric_data(
                    Namespace="AWS/SageMaker",
                    MetricData=[
                        {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": now, "Value": 10.0},
                        {"MetricName": "Invocation5XXErrors", "Dimensions": dims, "Timestamp": now, "Value": errors},
                        {"MetricName": "Invocation4XXErrors", "Dimensions": dims, "Timestamp": now, "Value": 0.0},
                        {"MetricName": "ModelLatency", "Dimensions": dims, "Timestamp": now, "Value": 20_000.0},
                    ],
                )


def rollout(endpoint: str, bucket: str) -> dict[str, Any]:
    return {
        "target": "sagemaker",
        "target_options": {
            "aws_conn_id": CONN_ID,
            "endpoint_name": endpoint,
            "execution_role_arn": "arn:aws:iam::123456789012:role/SageMakerExecution",
            "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.1",
            "model_data_s3_uri": f"s3://{bucket}/packages",
            "update_timeout": "30s",
            "latency_statistic": "Maximum",  # moto answers percentiles with HTTP 500 (see deploy/cloudwatch.py)
        },
        "shadow": {"enabled": False},
        "canary": {"steps": [50, 100], "step_duration": 3, "check_interval": 1, "min_requests": 5},
    }


def test_sagemaker_rollout_promotes_a_good_candidate_and_rolls_back_a_failing_one(
    workspace: Any, airflow_db: Any, moto_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.deploy.targets import LocalGatewayTarget
    from airflow_mlops.factories import build_dags

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", state_url)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", emulators.aws_connection_json(moto_url))
    bucket, endpoint = f"models-{uuid.uuid4().hex[:8]}", f"fraud-{uuid.uuid4().hex[:8]}"
    client(moto_url, "s3").create_bucket(Bucket=bucket)
    config = workspace.write_config("fraud", {"rollout": rollout(endpoint, bucket)})
    registry = LocalGatewayTarget.from_options(client=workspace.client(), state_url=state_url)  # registry view only
    v1 = train_version(config, "manual__sm_v1")
    registry.promote("fraud", v1, actor="test", reason="first champion")  # the registry's; the endpoint follows
    v2 = train_version(config, "manual__sm_v2")
    v3 = train_version(config, "manual__sm_v3")
    sagemaker = client(moto_url, "sagemaker")

    def weights() -> dict[str, float]:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        return {v["VariantName"]: v["CurrentWeight"] for v in described["ProductionVariants"]}

    with VariantMetrics(moto_url, endpoint, failing=set()):
        run = build_dags(None, workspace.config_dir)["fraud__deploy"].test(run_conf={"version": v2})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert registry.state("fraud").champion == v2 and registry.state("fraud").previous == v1
    assert weights() == {f"v{v2}": 100.0}
    history = AuditTrail(state_url).history("fraud")
    endpoint_moves = [(e.alias, e.from_version, e.to_version) for e in history if e.alias.startswith("endpoint:")]
    assert endpoint_moves == [
        (f"endpoint:v{v1}", None, "50%"),
        (f"endpoint:v{v2}", None, "50%"),
        (f"endpoint:v{v1}", "50%", "0%"),
        (f"endpoint:v{v2}", "50%", "100%"),
        (f"endpoint:v{v1}", "0%", None),
    ]

    with VariantMetrics(moto_url, endpoint, failing={f"v{v3}"}):
        run = build_dags(None, workspace.config_dir)["fraud__deploy"].test(run_conf={"version": v3})
    assert run.state == "failed"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["canary_50"] == "failed" and states["promote"] == "upstream_failed"
    assert registry.state("fraud").champion == v2 and registry.state("fraud").canary is None
    assert weights() == {f"v{v2}": 100.0}, "the failing candidate's variant is gone from the endpoint"
    reason = workspace.client().get_model_version("fraud", v3).tags["mlops.rollback_reason"]
    assert reason.startswith("canary step 50%: canary error rate")

    run = build_dags(None, workspace.config_dir)["fraud__rollback"].test()
    assert run.state == "success"
    assert registry.state("fraud").champion == v1
    assert weights() == {f"v{v1}": 100.0}
