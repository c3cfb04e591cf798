"""The gateway's Prometheus exposition, read back with a small parser of the 0.0.4 text format."""

from __future__ import annotations

import math
import re
import threading

import pytest

from airflow_mlops.serving.metrics import CONTENT_TYPE, LATENCY_BUCKETS, GatewayMetrics, estimate_quantile

Sample = tuple[str, tuple[tuple[str, str], ...]]

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def escape_label_value(value: str) -> str:
    """The exposition format's label escaping: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def parse(text: str) -> tuple[dict[Sample, float], dict[str, str]]:
    """``{(name, sorted labels): value}`` and ``{family: type}``; fails on any line it does not understand."""
    samples: dict[Sample, float] = {}
    types: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            types[family] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"unparseable line {line!r}"
        raw = match["labels"] or ""
        labels = [(k, _unescape(v)) for k, v, _ in _LABEL.findall(raw)]
        assert ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels) == raw, f"bad labels in {line!r}"
        key = (match["name"], tuple(sorted(labels)))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(match["value"])
    return samples, types


def key(name: str, **labels: str) -> Sample:
    return (name, tuple(sorted(labels.items())))


def test_content_type_names_the_format_version() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_empty_registry_still_declares_every_family() -> None:
    samples, types = parse(GatewayMetrics().render())
    assert samples == {}
    assert types == {
        "mlops_gateway_requests_total": "counter",
        "mlops_gateway_errors_total": "counter",
        "mlops_gateway_request_latency_seconds": "histogram",
        "mlops_gateway_rejected_total": "counter",
        "mlops_gateway_canary_fallbacks_total": "counter",
        "mlops_gateway_feedback_total": "counter",
        "mlops_gateway_refused_inputs_total": "counter",
        "mlops_gateway_shadow_dropped_total": "counter",
    }


def test_shadow_copies_dropped_are_counted_per_model() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.count_shadow_dropped("fraud")
    metrics.count_shadow_dropped("churn")
    samples, _ = parse(metrics.render())
    assert samples[key("mlops_gateway_shadow_dropped_total", model="fraud")] == 3
    assert samples[key("mlops_gateway_shadow_dropped_total", model="churn")] == 1
    assert (metrics.shadow_dropped("fraud"), metrics.shadow_dropped()) == (3, 4)


def test_counters_by_model_version_role() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.observe("fraud", "3", "champion", 0.004, error=False)
    metrics.observe("fraud", "4", "canary", 0.02, error=True)
    metrics.observe("fraud", "4", "canary", 0.02, error=False)
    metrics.count_rejected("fraud", "invalid_input")
    metrics.count_rejected("fraud", "invalid_input")
    metrics.count_rejected("fraud", "invalid_json")
    metrics.count_fallback("fraud", "4")
    samples, _ = parse(metrics.render())
    assert samples[key("mlops_gateway_requests_total", model="fraud", version="3", role="champion")] == 3
    assert samples[key("mlops_gateway_errors_total", model="fraud", version="3", role="champion")] == 0
    assert samples[key("mlops_gateway_requests_total", model="fraud", version="4", role="canary")] == 2
    assert samples[key("mlops_gateway_errors_total", model="fraud", version="4", role="canary")] == 1
    assert samples[key("mlops_gateway_rejected_total", model="fraud", reason="invalid_input")] == 2
    assert samples[key("mlops_gateway_rejected_total", model="fraud", reason="invalid_json")] == 1
    assert samples[key("mlops_gateway_canary_fallbacks_total", model="fraud", version="4")] == 1


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    metrics = GatewayMetrics()
    latencies = [0.0005, 0.001, 0.003, 0.003, 0.2, 0.9, 7.0]  # 0.001 sits on a bound: counted in le="0.001"
    for latency in latencies:
        metrics.observe("m", "1", "champion", latency, error=False)
    samples, _ = parse(metrics.render())
    name = "mlops_gateway_request_latency_seconds"
    buckets = {
        le: samples[key(f"{name}_bucket", model="m", version="1", role="champion", le=le)]
        for le in ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf"]
    }
    assert buckets == {
        "0.001": 2, "0.0025": 2, "0.005": 4, "0.01": 4, "0.025": 4, "0.05": 4,
        "0.1": 4, "0.25": 5, "0.5": 5, "1.0": 6, "2.5": 6, "+Inf": 7,
    }  # fmt: skip
    assert samples[key(f"{name}_count", model="m", version="1", role="champion")] == 7
    assert samples[key(f"{name}_sum", model="m", version="1", role="champion")] == pytest.approx(sum(latencies))
    assert len([s for s in samples if s[0] == f"{name}_bucket"]) == len(LATENCY_BUCKETS) + 1


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [('say "hi"', 'say \\"hi\\"'), ("C:\\models\\x", "C:\\\\models\\\\x"), ("two\nlines", "two\\nlines"), ("ü", "ü")],
    ids=["quote", "backslash", "newline", "unicode"],
)
def test_label_values_are_escaped(raw: str, escaped: str) -> None:
    metrics = GatewayMetrics()
    metrics.observe(raw, "1", "champion", 0.01, error=False)
    metrics.count_rejected("m", raw)
    text = metrics.render()
    assert f'mlops_gateway_requests_total{{model="{escaped}",role="champion",version="1"}} 1.0\n' in text
    assert f'mlops_gateway_rejected_total{{model="m",reason="{escaped}"}} 1.0\n' in text
    samples, _ = parse(text)  # and it reads back to the raw value
    assert samples[key("mlops_gateway_requests_total", model=raw, version="1", role="champion")] == 1


def test_hostile_label_value_cannot_forge_a_sample() -> None:
    metrics = GatewayMetrics()
    metrics.count_rejected("m", 'x"} 999\nmlops_gateway_rejected_total{model="m",reason="y')
    samples, _ = parse(metrics.render())
    assert list(samples.values()) == [1]


def test_snapshot_per_version_and_role_with_p95() -> None:
    metrics = GatewayMetrics()
    for i in range(100):  # 90 fast (1-2.5 ms bucket), 10 slow (100-250 ms bucket)
        metrics.observe("fraud", "3", "champion", 0.002 if i < 90 else 0.2, error=i % 25 == 0)
    metrics.observe("fraud", "4", "canary", 0.03, error=False)
    metrics.observe("other", "1", "champion", 0.03, error=False)
    snapshot = metrics.snapshot("fraud")
    assert snapshot == {
        "3": {"champion": {"requests": 100, "errors": 4, "error_rate": 0.04, "p95_seconds": pytest.approx(0.175)}},
        "4": {"canary": {"requests": 1, "errors": 0, "error_rate": 0.0, "p95_seconds": pytest.approx(0.04875)}},
    }
    # rank 95 of 100 falls 5/10 into (0.1, 0.25]: 0.1 + 0.15 * 0.5 = 0.175; one sample in (0.025, 0.05] at 0.95
    assert metrics.snapshot("unknown") == {}


def test_p95_estimate_edges() -> None:
    n = len(LATENCY_BUCKETS) + 1
    assert estimate_quantile(0.95, [0] * n) is None
    only_inf = [0] * (n - 1) + [5]
    assert estimate_quantile(0.95, only_inf) == 2.5  # beyond the last bound: that bound, as Prometheus does
    first = [10] + [0] * (n - 1)
    assert estimate_quantile(0.5, first) == pytest.approx(0.0005)  # interpolated from 0
    spread = [0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 50, 0]
    assert estimate_quantile(0.5, spread) == pytest.approx(0.0025)  # the top of the lower bucket
    assert estimate_quantile(0.95, spread) == pytest.approx(1.0 + 1.5 * 0.9)


@pytest.mark.parametrize("latency", [-0.001, math.nan], ids=["negative", "nan"])
def test_bad_latency_is_a_bug_not_a_sample(latency: float) -> None:
    with pytest.raises(ValueError, match=r"^latency_seconds: got (-0\.001|nan); expected a duration >= 0$"):
        GatewayMetrics().observe("m", "1", "champion", latency, error=False)


def test_concurrent_updates_are_not_lost() -> None:
    metrics = GatewayMetrics()

    def work() -> None:
        for _ in range(2000):
            metrics.observe("m", "1", "canary", 0.003, error=True)
            metrics.count_fallback("m", "1")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        parse(metrics.render())  # rendering while others write stays consistent
    for thread in threads:
        thread.join()
    samples, _ = parse(metrics.render())
    assert samples[key("mlops_gateway_requests_total", model="m", version="1", role="canary")] == 16000
    assert samples[key("mlops_gateway_errors_total", model="m", version="1", role="canary")] == 16000
    assert samples[key("mlops_gateway_canary_fallbacks_total", model="m", version="1")] == 16000
    bucket = key("mlops_gateway_request_latency_seconds_bucket", model="m", version="1", role="canary", le="+Inf")
    assert samples[bucket] == 16000
