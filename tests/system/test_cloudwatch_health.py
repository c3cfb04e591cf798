"""SageMaker variant health from CloudWatch (``deploy/cloudwatch.py``) against a real moto server.

Metrics are published with PutMetricData as SageMaker would (per-request 0/1 error datapoints, latencies in
microseconds) for two variants of one endpoint, with data just outside the window and on another endpoint
that must not be read. moto 5.2.5 does not compute percentiles in GetMetricData (HTTP 500 once the metric
has data), so the latency figures against moto use ``latency_stat="Maximum"``; the p95 request itself, its
pagination and its fallback to ``Maximum`` are checked with botocore's Stubber, which validates requests and
responses against CloudWatch's service model.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import emulators
from airflow_mlops.config.schema import CanaryConfig, ShadowConfig
from airflow_mlops.deploy.cloudwatch import (
    MetricDataError,
    VariantMetrics,
    canary_stats_from_metrics,
    shadow_stats_from_metrics,
    variant_metrics,
)
from airflow_mlops.deploy.health import CanaryStats, ShadowStats, decide_canary, decide_shadow

pytestmark = pytest.mark.emulator

NS = "AWS/SageMaker"


def _client(**kwargs: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "cloudwatch",
        region_name=emulators.MOTO_REGION,
        aws_access_key_id=emulators.MOTO_ACCESS_KEY,
        aws_secret_access_key=emulators.MOTO_SECRET_KEY,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),  # moto's 500 is not worth retrying
        **kwargs,
    )


@pytest.fixture(scope="module")
def cloudwatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A CloudWatch client on a moto server of this module's own."""
    with emulators.run_moto_server(tmp_path_factory.mktemp("moto-cloudwatch")) as endpoint:
        yield _client(endpoint_url=endpoint)


@dataclass(frozen=True)
class Seeded:
    endpoint: str
    other_endpoint: str
    start: datetime
    end: datetime


def _put(cw: Any, endpoint: str, variant: str, at: datetime, metric: str, values: list[float]) -> None:
    cw.put_metric_data(
        Namespace=NS,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
                "Timestamp": at,
                "Values": values,
                "Unit": "Microseconds" if metric == "ModelLatency" else "None",
            }
        ],
    )


@pytest.fixture(scope="module")
def seeded(cloudwatch: Any) -> Seeded:
    """Known metrics for variants ``champion`` and ``canary`` in a 10-minute window half an hour ago."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    end = start + timedelta(minutes=10)
    ep, other = f"ep-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    m = timedelta(minutes=1)
    s = timedelta(seconds=1)
    # champion: 100 invocations, 1 5xx, 2 4xx; latency maxima 30 ms (minute 0) and 50 ms (minute 3)
    _put(cloudwatch, ep, "champion", start + 5 * s, "Invocations", [40])
    _put(cloudwatch, ep, "champion", start + 3 * m + 10 * s, "Invocations", [30, 30])
    _put(cloudwatch, ep, "champion", start + 5 * s, "Invocation5XXErrors", [1, 0, 0])
    _put(cloudwatch, ep, "champion", start + 3 * m + 10 * s, "Invocation4XXErrors", [1, 1, 0])
    _put(cloudwatch, ep, "champion", start + 5 * s, "ModelLatency", [10_000, 20_000, 30_000])
    _put(cloudwatch, ep, "champion", start + 3 * m + 10 * s, "ModelLatency", [50_000, 5_000])
    # canary: 50 invocations, 5 5xx (10 %), 3 4xx; latency maxima 120 ms and 90 ms
    _put(cloudwatch, ep, "canary", start + m, "Invocations", [50])
    _put(cloudwatch, ep, "canary", start + m, "Invocation5XXErrors", [1] * 5 + [0] * 45)
    _put(cloudwatch, ep, "canary", start + 2 * m, "Invocation4XXErrors", [1, 1, 1])
    _put(cloudwatch, ep, "canary", start + m, "ModelLatency", [100_000, 120_000])
    _put(cloudwatch, ep, "canary", start + 2 * m, "ModelLatency", [90_000])
    # a variant with counts but no latency data
    _put(cloudwatch, ep, "countsonly", start + 4 * m, "Invocations", [7])
    _put(cloudwatch, ep, "countsonly", start + 4 * m, "Invocation5XXErrors", [0] * 7)
    # outside the window: the minute before start, and at end (exclusive)
    for at in (start - 30 * s, end, end + m):
        for variant in ("champion", "canary"):
            _put(cloudwatch, ep, variant, at, "Invocations", [1000])
            _put(cloudwatch, ep, variant, at, "Invocation5XXErrors", [500])
            _put(cloudwatch, ep, variant, at, "Invocation4XXErrors", [400])
            _put(cloudwatch, ep, variant, at, "ModelLatency", [9_000_000])
    # another endpoint, same variant names, inside the window
    for variant in ("champion", "canary"):
        _put(cloudwatch, other, variant, start + 2 * m, "Invocations", [7000])
        _put(cloudwatch, other, variant, start + 2 * m, "Invocation5XXErrors", [700])
        _put(cloudwatch, other, variant, start + 2 * m, "Invocation4XXErrors", [70])
        _put(cloudwatch, other, variant, start + 2 * m, "ModelLatency", [8_000_000])
    return Seeded(endpoint=ep, other_endpoint=other, start=start, end=end)


# --- against moto ------------------------------------------------------------------------------------------


def test_sums_and_latency_per_variant_exclude_outside_window_and_other_endpoint(
    cloudwatch: Any, seeded: Seeded
) -> None:
    def read(endpoint: str, variant: str) -> VariantMetrics:
        return variant_metrics(cloudwatch, endpoint, variant, seeded.start, seeded.end, latency_stat="Maximum")

    assert read(seeded.endpoint, "champion") == VariantMetrics(
        invocations=100, errors_4xx=2, errors_5xx=1, latency_p95_ms=50.0
    )
    assert read(seeded.endpoint, "canary") == VariantMetrics(
        invocations=50, errors_4xx=3, errors_5xx=5, latency_p95_ms=120.0
    )
    # the excluded data are there to be read: the other endpoint's, and a window over the edges
    assert read(seeded.other_endpoint, "canary") == VariantMetrics(7000, 70, 700, 8000.0)
    wide = variant_metrics(
        cloudwatch,
        seeded.endpoint,
        "canary",
        seeded.start - timedelta(minutes=1),
        seeded.end + timedelta(seconds=1),
        latency_stat="Maximum",
    )
    assert wide == VariantMetrics(invocations=2050, errors_4xx=803, errors_5xx=1005, latency_p95_ms=9000.0)


def test_start_is_rounded_down_to_the_minute_as_cloudwatch_does(cloudwatch: Any, seeded: Seeded) -> None:
    late = seeded.start + timedelta(seconds=30)  # the datapoints at start + 5 s are in this start's minute
    got = variant_metrics(cloudwatch, seeded.endpoint, "champion", late, seeded.end, latency_stat="Maximum")
    assert got == VariantMetrics(invocations=100, errors_4xx=2, errors_5xx=1, latency_p95_ms=50.0)


def test_default_p95_request_reads_counts_of_a_variant_without_latency_data(cloudwatch: Any, seeded: Seeded) -> None:
    got = variant_metrics(cloudwatch, seeded.endpoint, "countsonly", seeded.start, seeded.end)
    assert got == VariantMetrics(invocations=7, errors_4xx=0, errors_5xx=0, latency_p95_ms=None)


def test_client_error_propagates(cloudwatch: Any, seeded: Seeded) -> None:
    """moto 5.2.5 fails a percentile over existing data with HTTP 500: the error reaches the caller (fail closed).

    If a later moto computes percentiles this test fails: then assert the p95 here instead.
    """
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        variant_metrics(cloudwatch, seeded.endpoint, "champion", seeded.start, seeded.end)


def test_missing_data_gives_zeros_and_no_latency(cloudwatch: Any, seeded: Seeded) -> None:
    for stat in ("p95", "Maximum"):
        got = variant_metrics(cloudwatch, seeded.endpoint, "nobody", seeded.start, seeded.end, latency_stat=stat)
        assert got == VariantMetrics(invocations=0, errors_4xx=0, errors_5xx=0, latency_p95_ms=None)
        assert (got.errors_against(None), got.error_rate_against(None)) == (0, 0.0)


def test_stats_converters_and_decisions(cloudwatch: Any, seeded: Seeded) -> None:
    def read(variant: str) -> VariantMetrics:
        return variant_metrics(cloudwatch, seeded.endpoint, variant, seeded.start, seeded.end, latency_stat="Maximum")

    canary, champion = read("canary"), read("champion")
    # 5 5xx, and 3 4xx where the champion's 2 % share would give 1: 2 in excess
    stats = canary_stats_from_metrics(canary, "roc_auc", baseline=champion)
    assert stats == CanaryStats(
        requests=50, errors=7, error_rate=0.14, latency_p95_ms=120.0, labelled=0, metric="roc_auc"
    )
    config = CanaryConfig(max_error_rate=0.05, max_latency_p95_ms=1000.0)
    decision = decide_canary(stats, config)
    assert not decision.passed
    assert any("error rate 0.1400 > 0.05 (7 errors)" in r for r in decision.reasons), decision.reasons
    assert decide_canary(canary_stats_from_metrics(champion, None, baseline=champion), config).passed  # 1 % 5xx
    # 4xx: callers' bad requests, but also every model exception behind MLflow's scoring server (HTTP 400).
    # Judged against the champion's share over the same window: only the excess is the version's.
    client_errors = VariantMetrics(invocations=100, errors_4xx=60, errors_5xx=0, latency_p95_ms=10.0)
    same_callers = VariantMetrics(invocations=1000, errors_4xx=600, errors_5xx=0, latency_p95_ms=10.0)
    assert decide_canary(canary_stats_from_metrics(client_errors, None, baseline=same_callers), config).passed
    crashing = VariantMetrics(invocations=100, errors_4xx=100, errors_5xx=0, latency_p95_ms=10.0)
    healthy = VariantMetrics(invocations=1000, errors_4xx=10, errors_5xx=0, latency_p95_ms=10.0)
    stats_crashing = canary_stats_from_metrics(crashing, None, baseline=healthy)
    assert (stats_crashing.errors, stats_crashing.error_rate) == (99, 0.99)
    assert not decide_canary(stats_crashing, config).passed
    assert canary_stats_from_metrics(client_errors, None).errors == 60, "no baseline: every 4xx counts"
    # latency breaches are judged too
    assert not decide_canary(canary_stats_from_metrics(canary, None), CanaryConfig(max_latency_p95_ms=100.0)).passed

    shadow = shadow_stats_from_metrics(champion, baseline=champion)
    assert shadow == ShadowStats(
        pairs=0,
        agreement=None,
        mean_abs_delta=None,
        shadow_requests=100,
        shadow_error_rate=0.01,
        shadow_latency_p95_ms=50.0,
    )
    verdict = decide_shadow(shadow, ShadowConfig(min_requests=10, max_error_rate=0.05, max_latency_p95_ms=1000.0))
    assert verdict.reasons == ["no shadow answer could be paired with a champion answer"]  # fails closed


def test_error_rate_never_reads_unmatched_errors_as_healthy() -> None:
    assert (
        VariantMetrics(invocations=0, errors_4xx=0, errors_5xx=3, latency_p95_ms=None).error_rate_against(None) == 1.0
    )
    assert (
        VariantMetrics(invocations=4, errors_4xx=0, errors_5xx=1, latency_p95_ms=None).error_rate_against(None) == 0.25
    )
    assert (
        VariantMetrics(invocations=0, errors_4xx=2, errors_5xx=0, latency_p95_ms=None).error_rate_against(None) == 1.0
    )


# --- the request and the response handling, with botocore's Stubber ---------------------------------------

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)
DIMS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "v"}]


def _expected_queries() -> list[dict[str, Any]]:
    def q(qid: str, name: str, stat: str) -> dict[str, Any]:
        metric = {"Namespace": NS, "MetricName": name, "Dimensions": DIMS}
        return {"Id": qid, "MetricStat": {"Metric": metric, "Period": 60, "Stat": stat}, "ReturnData": True}

    return [
        q("invocations", "Invocations", "Sum"),
        q("errors_4xx", "Invocation4XXErrors", "Sum"),
        q("errors_5xx", "Invocation5XXErrors", "Sum"),
        q("latency", "ModelLatency", "p95"),
        q("latency_max", "ModelLatency", "Maximum"),
    ]


def _result(qid: str, values: list[float], status: str = "Complete") -> dict[str, Any]:
    stamps = [START + timedelta(minutes=i) for i in range(len(values))]
    return {"Id": qid, "Label": qid, "Timestamps": stamps, "Values": values, "StatusCode": status}


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Any]]:
    from botocore.stub import Stubber

    client = _client()
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_p95_request_is_paginated_and_the_worst_minute_kept(stubbed: tuple[Any, Any]) -> None:
    client, stubber = stubbed
    first = {"MetricDataQueries": _expected_queries(), "StartTime": START, "EndTime": END}
    page1 = [
        _result("invocations", [10, 20], "PartialData"),
        _result("errors_5xx", [1], "PartialData"),
        _result("latency", [30_000, 80_000], "PartialData"),
        _result("latency_max", [90_000, 120_000], "PartialData"),
    ]
    page2 = [
        _result("invocations", [5]),
        _result("errors_4xx", [2]),
        _result("errors_5xx", [0]),
        _result("latency", [40_000]),
        _result("latency_max", [60_000]),
    ]
    stubber.add_response("get_metric_data", {"MetricDataResults": page1, "NextToken": "t1"}, first)
    stubber.add_response("get_metric_data", {"MetricDataResults": page2}, {**first, "NextToken": "t1"})
    got = variant_metrics(client, "ep", "v", START + timedelta(seconds=42), END)  # start rounded down
    assert got == VariantMetrics(invocations=35, errors_4xx=2, errors_5xx=1, latency_p95_ms=80.0)


def test_no_percentile_while_samples_exist_falls_back_to_maximum(stubbed: tuple[Any, Any]) -> None:
    client, stubber = stubbed
    results = [_result("invocations", [10, 20]), _result("latency", []), _result("latency_max", [40_000, 70_000])]
    stubber.add_response(
        "get_metric_data",
        {"MetricDataResults": results},
        {"MetricDataQueries": _expected_queries(), "StartTime": START, "EndTime": END},
    )
    got = variant_metrics(client, "ep", "v", START, END)
    assert got == VariantMetrics(invocations=30, errors_4xx=0, errors_5xx=0, latency_p95_ms=70.0)


@pytest.mark.parametrize("status", ["Forbidden", "InternalError", "PartialData"])
def test_incomplete_data_is_an_error_not_zero(stubbed: tuple[Any, Any], status: str) -> None:
    client, stubber = stubbed
    results = [_result("invocations", []), _result("errors_5xx", [], status)]
    response = {"MetricDataResults": results, "Messages": [{"Code": "Denied", "Value": "no access"}]}
    stubber.add_response("get_metric_data", response)
    with pytest.raises(MetricDataError, match=status):
        variant_metrics(client, "ep", "v", START, END)


def test_naive_or_empty_window_is_refused() -> None:
    client = object()  # never called
    with pytest.raises(ValueError, match="timezone-aware"):
        variant_metrics(client, "ep", "v", START.replace(tzinfo=None), END)
    with pytest.raises(ValueError, match="not after"):
        variant_metrics(client, "ep", "v", START, START + timedelta(seconds=0))


def test_a_canary_step_without_metrics_in_cloudwatch_is_a_breach_not_health(
    cloudwatch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trigger of a SageMaker canary step, run to its end against CloudWatch with no datapoint for the
    endpoint (metrics late or missing): it must not pass on no evidence."""
    import asyncio
    import time

    from airflow_mlops.triggers.rollout import CanaryStepTrigger

    monkeypatch.setenv("AIRFLOW_CONN_AWS_CW_TEST", emulators.aws_connection_json(cloudwatch.meta.endpoint_url))
    trigger = CanaryStepTrigger(
        log_root="",
        log_conn_id=None,
        model="fraud",
        champion="1",
        canary="2",
        start=time.time(),
        duration=0.5,
        check_interval=0.2,
        limits=CanaryConfig(min_requests=5).model_dump(mode="json"),
        metric=None,
        cloudwatch={
            "aws_conn_id": "aws_cw_test",
            "endpoint_name": f"silent-{uuid.uuid4().hex[:8]}",
            "execution_role_arn": "arn:aws:iam::123456789012:role/SageMakerExecution",
            "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.1",
            "model_data_s3_uri": "s3://models/packages",
            "latency_statistic": "Maximum",
            "metrics_delay": "1s",
        },
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == "breach"
    assert event["reasons"] == ["only 0 canary invocations in CloudWatch (< min_requests 5)"]
