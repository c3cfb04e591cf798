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

import json
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


class LiveEndpoint:
    """What a live endpoint would publish while the DAG runs, every 0.3 s: each variant's invocation metrics in
    CloudWatch (5xx for the ``failing`` versions) and, for data capture, ten requests captured under every
    production and shadow variant with the same ``InferenceId``s. The champion answers ``i % 2``; a version in
    ``disagreeing`` answers the opposite."""

    def __init__(self, url: str, endpoint: str, bucket: str, failing: set[str], disagreeing: set[str]) -> None:
        self.cloudwatch, self.sagemaker, self.s3 = (client(url, s) for s in ("cloudwatch", "sagemaker", "s3"))
        self.endpoint, self.bucket, self.failing, self.disagreeing = endpoint, bucket, failing, disagreeing
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                described = self.sagemaker.describe_endpoint(EndpointName=self.endpoint)
            except Exception:  # not created yet
                continue
            now = datetime.now(tz=UTC)
            self.ticks += 1
            variants = [v["VariantName"] for v in described["ProductionVariants"]]
            variants += [v["VariantName"] for v in described.get("ShadowProductionVariants") or []]
            for name in variants:
                self._metrics(name, now)
                self._capture(name, now)

    def _metrics(self, name: str, now: datetime) -> None:
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

    def _capture(self, name: str, now: datetime) -> None:
        lines = []
        for i in range(10):
            answer = (i % 2) ^ (1 if name in self.disagreeing else 0)
            request = {"dataframe_split": {"columns": ["amount", "hour"], "data": [[12.5 + i, 3]]}}
            lines.append(
                json.dumps(
                    {
                        "captureData": {
                            "endpointInput": {
                                "observedContentType": "application/json",
                                "mode": "INPUT",
                                "data": json.dumps(request),
                                "encoding": "JSON",
                            },
                            "endpointOutput": {
                                "observedContentType": "application/json",
                                "mode": "OUTPUT",
                                "data": json.dumps({"predictions": [answer]}),
                                "encoding": "JSON",
                            },
                        },
                        "eventMetadata": {
                            "eventId": str(uuid.uuid4()),
                            "inferenceId": f"req-{self.ticks}-{i}",
                            "inferenceTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        },
                        "eventVersion": "0",
                    }
                )
            )
        key = f"capture/{self.endpoint}/{name}/{now:%Y/%m/%d/%H}/{now:%M-%S-%f}-{uuid.uuid4()}.jsonl"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body="\n".join(lines).encode())


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
            "data_capture_s3_uri": f"s3://{bucket}/capture",
            "metrics_delay": "1s",  # moto has the metrics at once; AWS needs minutes (the default is 3m)
        },
        "shadow": {"enabled": True, "duration": 3, "min_requests": 5, "min_agreement": 0.9},
        "canary": {"steps": [50, 100], "step_duration": 3, "check_interval": 1, "min_requests": 5},
    }


def test_sagemaker_rollout_promotes_a_good_candidate_and_rolls_back_failing_ones(
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
    v2, v3, v4 = (train_version(config, f"manual__sm_v{n}") for n in (2, 3, 4))
    sagemaker = client(moto_url, "sagemaker")
    deploy = build_dags(None, workspace.config_dir)["fraud__deploy"]

    def served() -> tuple[dict[str, float], list[str]]:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        weights = {v["VariantName"]: v["CurrentWeight"] for v in described["ProductionVariants"]}
        return weights, [v["VariantName"] for v in described.get("ShadowProductionVariants") or []]

    def states(run: Any) -> dict[str, str]:
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}

    # v2: its shadow answers as the champion does, its canary is healthy: promoted
    with LiveEndpoint(moto_url, endpoint, bucket, failing=set(), disagreeing=set()):
        run = deploy.test(run_conf={"version": v2})
    assert run.state == "success", states(run)
    assert registry.state("fraud").champion == v2 and registry.state("fraud").previous == v1
    assert served() == ({f"v{v2}": 100.0}, [])
    history = AuditTrail(state_url).history("fraud")
    endpoint_moves = [(e.alias, e.from_version, e.to_version) for e in history if e.alias.startswith("endpoint:")]
    assert endpoint_moves == [
        (f"endpoint:v{v1}", None, "100%"),
        ("endpoint:shadow", None, v2),
        ("endpoint:shadow", v2, None),
        (f"endpoint:v{v1}", "100%", "50%"),
        (f"endpoint:v{v2}", None, "50%"),
        (f"endpoint:v{v1}", "50%", "0%"),
        (f"endpoint:v{v2}", "50%", "100%"),
        (f"endpoint:v{v1}", "0%", None),
    ]

    # v3: its shadow disagrees with the champion on every other answer: rejected at the shadow gate
    with LiveEndpoint(moto_url, endpoint, bucket, failing=set(), disagreeing={f"v{v3}"}):
        run = deploy.test(run_conf={"version": v3})
    assert run.state == "failed"
    assert states(run)["shadow"] == "failed" and states(run)["canary_50"] == "upstream_failed"
    assert registry.state("fraud").champion == v2 and registry.state("fraud").shadow is None
    assert served() == ({f"v{v2}": 100.0}, [])
    reason = workspace.client().get_model_version("fraud", v3).tags["mlops.rejected_reason"]
    assert "agreement with champion 0.0000 < 0.9" in reason

    # v4, without a shadow phase: its variant answers 5xx in the canary: rolled back at the first step
    no_shadow = rollout(endpoint, bucket) | {"shadow": {"enabled": False}}
    workspace.write_config("fraud", {"rollout": no_shadow})
    with LiveEndpoint(moto_url, endpoint, bucket, failing={f"v{v4}"}, disagreeing=set()):
        run = build_dags(None, workspace.config_dir)["fraud__deploy"].test(run_conf={"version": v4})
    assert run.state == "failed"
    assert states(run)["canary_50"] == "failed" and states(run)["promote"] == "upstream_failed"
    assert registry.state("fraud").champion == v2 and registry.state("fraud").canary is None
    assert served() == ({f"v{v2}": 100.0}, []), "the failing candidate's variant is gone from the endpoint"
    reason = workspace.client().get_model_version("fraud", v4).tags["mlops.rollback_reason"]
    assert reason.startswith("canary step 50%: canary error rate")

    run = build_dags(None, workspace.config_dir)["fraud__rollback"].test()
    assert run.state == "success"
    assert registry.state("fraud").champion == v1
    assert served() == ({f"v{v1}": 100.0}, [])
