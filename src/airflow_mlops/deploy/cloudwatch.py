"""Health of a SageMaker endpoint variant from CloudWatch, as the stats the local gateway reads from its log.

On SageMaker there is no prediction log of ours to read during a canary step or a shadow window: the
endpoint's own invocation metrics (namespace ``AWS/SageMaker``, dimensions ``EndpointName`` and
``VariantName``) are the evidence. :func:`variant_metrics` reads one variant's over a window;
:func:`canary_stats_from_metrics` and :func:`shadow_stats_from_metrics` turn them into the
:class:`~airflow_mlops.deploy.health.CanaryStats` / :class:`~airflow_mlops.deploy.health.ShadowStats` that
:func:`~airflow_mlops.deploy.health.decide_canary` and :func:`~airflow_mlops.deploy.health.decide_shadow`
judge, so one decision rule serves both targets.

Shadow variants: SageMaker's shadow-test guide ("Monitor a shadow test",
https://docs.aws.amazon.com/sagemaker/latest/dg/shadow-tests-view-monitor-edit-dashboard.html) shows
``Invocations``, ``ModelLatency``, ``Invocation4XXErrors`` and ``Invocation5XXErrors`` graphed for the
production and the shadow variant side by side and points to the endpoint invocation metrics, whose
dimensions are ``EndpointName, VariantName``; the page does not spell out the dimension value, so reading a
shadow variant under its own ``VariantName`` is that documentation's reading, to be confirmed on a live
endpoint. ``Invocation4XXErrors`` / ``Invocation5XXErrors`` are published per request as 1 or 0
(https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-monitor.html, "Common Endpoint Metrics"),
so their ``Sum`` is a count; ``ModelLatency`` is in microseconds.

The boto3 CloudWatch client is passed in (the caller owns credentials, region and retries); nothing here
imports Airflow or boto3.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_mlops.deploy.health import CanaryStats, ShadowStats

log = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"
#: One minute: SageMaker publishes its invocation metrics at 1-minute resolution, and CloudWatch keeps
#: 1-minute datapoints for 15 days (a window starting earlier loses its oldest minutes).
PERIOD_S = 60
#: A page cap for ``NextToken``: a window of days needs a handful of pages; more means a looping token.
_MAX_PAGES = 100

#: Query id -> (metric name, statistic) of the counts; ids must start with a lower-case letter.
_COUNTS: dict[str, tuple[str, str]] = {
    "invocations": ("Invocations", "Sum"),
    "errors_4xx": ("Invocation4XXErrors", "Sum"),
    "errors_5xx": ("Invocation5XXErrors", "Sum"),
}
_LATENCY_METRIC = "ModelLatency"
_LATENCY_ID = "latency"
_LATENCY_MAX_ID = "latency_max"


class MetricDataError(RuntimeError):
    """CloudWatch answered, but a query's data is not complete (``Forbidden``, ``InternalError``, or
    ``PartialData`` with no page left): reading it as zero requests would pass a broken variant."""


@dataclass(frozen=True)
class VariantMetrics:
    """One endpoint variant's invocation metrics over a window.

    ``errors_5xx`` are the version's own failures. ``errors_4xx`` are mixed: callers' malformed requests, but
    also every exception of the model itself behind MLflow's scoring server, which answers a failing
    ``predict`` with HTTP 400. So a canary's 4xx are judged against the champion's rate over the same window
    (:meth:`errors_against`): both variants get the same callers, and a higher share is the version's fault.
    """

    invocations: int
    errors_4xx: int
    errors_5xx: int
    #: The conservative p95 of ``ModelLatency`` in ms (see :func:`variant_metrics`); ``None``: no latency data.
    latency_p95_ms: float | None

    def errors_against(self, baseline: VariantMetrics | None) -> int:
        """5xx plus the 4xx beyond ``baseline``'s 4xx share (the champion's, same window); without a baseline
        every 4xx counts (fail closed)."""
        if baseline is None:
            return self.errors_5xx + self.errors_4xx
        share = baseline.errors_4xx / baseline.invocations if baseline.invocations else 0.0
        return self.errors_5xx + max(0, self.errors_4xx - round(self.invocations * share))

    def error_rate_against(self, baseline: VariantMetrics | None) -> float:
        """:meth:`errors_against` over invocations; 0.0 without traffic.

        The denominator is at least the error count: SageMaker's docs do not say whether ``Invocations``
        counts the requests that failed, so errors without matching invocations read as a rate of up to 1,
        never as a healthy 0.
        """
        errors = self.errors_against(baseline)
        total = max(self.invocations, errors)
        return errors / total if total else 0.0


def variant_metrics(
    cloudwatch: Any,
    endpoint: str,
    variant: str,
    start: datetime,
    end: datetime,
    *,
    latency_stat: str = "p95",
) -> VariantMetrics:
    """Read ``variant`` of ``endpoint`` over ``[start, end)`` with one paginated ``GetMetricData`` call.

    Counts are the ``Sum`` of 1-minute datapoints. Latency is ``latency_stat`` (p95) of ``ModelLatency``
    per minute and the largest of those minutes is kept: CloudWatch cannot merge percentiles across
    periods, and the worst minute's p95 is an upper bound of the window's p95 (conservative: the check can
    only get stricter). ``ModelLatency``'s ``Maximum`` is read in the same call; when a percentile has no
    values although latency samples exist (CloudWatch computes none from statistic sets of differing
    min/max or from negative values), the largest ``Maximum`` stands in for it, again an upper bound.
    No data at all gives 0 counts and a ``None`` latency.

    CloudWatch rounds a start within the last 15 days down to the whole minute; ``start`` is rounded here
    the same way, so the window holds the same minutes on AWS and on emulators. ``end`` is exclusive.

    :param cloudwatch: A boto3 ``cloudwatch`` client.
    :param latency_stat: The per-minute latency statistic: ``p95`` on AWS. moto 5.2.5 answers any
        percentile in ``GetMetricData`` with HTTP 500 once the metric has data (its statistics return
        ``None``, which its serializer cannot write); ``"Maximum"`` runs against it, and is an upper bound.
    :raises ValueError: a naive datetime, or ``end`` not after ``start``.
    :raises botocore.exceptions.ClientError: CloudWatch refused or failed the call: propagated, so the
        caller fails closed.
    :raises MetricDataError: a query's data came back incomplete.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (CloudWatch reads naive times as UTC)")
    start = start.replace(second=0, microsecond=0)
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    queries = [_query(qid, name, stat, dimensions) for qid, (name, stat) in _COUNTS.items()]
    queries.append(_query(_LATENCY_ID, _LATENCY_METRIC, latency_stat, dimensions))
    if latency_stat != "Maximum":
        queries.append(_query(_LATENCY_MAX_ID, _LATENCY_METRIC, "Maximum", dimensions))
    values = _get_metric_data(cloudwatch, queries, start, end)
    latency_us = max(values.get(_LATENCY_ID) or [], default=None)
    if latency_us is None and values.get(_LATENCY_MAX_ID):
        latency_us = max(values[_LATENCY_MAX_ID])
        log.warning(
            "CloudWatch has no %s of %s for %s/%s although it has samples; using its Maximum (an upper bound)",
            latency_stat,
            _LATENCY_METRIC,
            endpoint,
            variant,
        )
    return VariantMetrics(
        invocations=_count(values, "invocations"),
        errors_4xx=_count(values, "errors_4xx"),
        errors_5xx=_count(values, "errors_5xx"),
        latency_p95_ms=None if latency_us is None else float(latency_us) / 1000.0,
    )


def canary_stats_from_metrics(
    m: VariantMetrics, metric: str | None, baseline: VariantMetrics | None = None
) -> CanaryStats:
    """The canary's :class:`CanaryStats` from its variant's metrics; errors are 5xx plus the 4xx beyond the
    champion's share (``baseline``; without one, every 4xx).

    No labels: a label metric needs the answers joined to labels, which is not built for SageMaker;
    ``metric`` is kept so the report names it, and :func:`~airflow_mlops.deploy.health.decide_canary` judges it
    only once labels exist.
    """
    return CanaryStats(
        requests=m.invocations,
        errors=m.errors_against(baseline),
        error_rate=m.error_rate_against(baseline),
        latency_p95_ms=m.latency_p95_ms,
        labelled=0,
        metric=metric,
    )


def shadow_stats_from_metrics(m: VariantMetrics, baseline: VariantMetrics | None = None) -> ShadowStats:
    """The shadow's :class:`ShadowStats` from its variant's metrics (errors as in :func:`canary_stats_from_metrics`).

    Agreement with the champion needs both answers to each request, which CloudWatch does not have: ``pairs``
    is 0 and ``agreement`` ``None`` here, so :func:`~airflow_mlops.deploy.health.decide_shadow` fails closed
    unless the caller fills them from data capture (:mod:`airflow_mlops.prediction_log.capture`).
    """
    return ShadowStats(
        pairs=0,
        agreement=None,
        mean_abs_delta=None,
        shadow_requests=m.invocations,
        shadow_error_rate=m.error_rate_against(baseline),
        shadow_latency_p95_ms=m.latency_p95_ms,
    )


def _query(query_id: str, metric_name: str, stat: str, dimensions: list[dict[str, str]]) -> dict[str, Any]:
    # No ``Unit``: a unit that differs from the published one makes CloudWatch return nothing.
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": metric_name, "Dimensions": dimensions},
            "Period": PERIOD_S,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def _get_metric_data(
    cloudwatch: Any, queries: list[dict[str, Any]], start: datetime, end: datetime
) -> dict[str, list[float]]:
    """Every page of one ``GetMetricData`` request: query id -> its values (one per minute with data)."""
    values: dict[str, list[float]] = {q["Id"]: [] for q in queries}
    status: dict[str, str] = {}
    messages: list[str] = []
    request: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
    for _ in range(_MAX_PAGES):
        page = cloudwatch.get_metric_data(**request)
        messages += _messages(page.get("Messages"))
        for result in page.get("MetricDataResults", []):
            qid = result["Id"]
            values.setdefault(qid, []).extend(float(v) for v in result.get("Values", []))
            status[qid] = result.get("StatusCode", "Complete")
            messages += _messages(result.get("Messages"))
        token = page.get("NextToken")
        if not token:
            break
        request["NextToken"] = token
    else:
        raise MetricDataError(f"GetMetricData still had a NextToken after {_MAX_PAGES} pages")
    bad = {qid: code for qid, code in status.items() if code != "Complete"}
    if bad:
        raise MetricDataError(f"GetMetricData returned incomplete data {bad}: {'; '.join(messages) or 'no message'}")
    return values


def _messages(items: Any) -> list[str]:
    return [f"{m.get('Code', '')}: {m.get('Value', '')}" for m in items or [] if isinstance(m, Mapping)]


def _count(values: Mapping[str, list[float]], query_id: str) -> int:
    return round(sum(values.get(query_id) or []))
