"""``deploy.health``: shadow and canary statistics from hand-built prediction-log rows, and the decisions on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config.schema import CanaryConfig, ShadowConfig
from airflow_mlops.deploy.health import (
    CanaryStats,
    Decision,
    ShadowStats,
    canary_stats,
    decide_canary,
    decide_shadow,
    shadow_stats,
)
from airflow_mlops.prediction_log import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    LocalStorage,
    read_feedback,
    read_predictions,
)

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def out(prediction: Any, score: float | None = None) -> str:
    body: dict[str, Any] = {"prediction": prediction}
    if score is not None:
        body["score"] = score
    return json.dumps(body)


def rows(*items: tuple[str, str, str, str | None, float, str | None]) -> pd.DataFrame:
    """(request_id, role, version, output, latency_ms, error) -> prediction-log rows of model ``fraud``."""
    return pd.DataFrame(
        [
            {
                "request_id": request_id,
                "ts": T0 + timedelta(seconds=i),
                "model": "fraud",
                "version": version,
                "role": role,
                "inputs": json.dumps({"amount": float(i)}),
                "output": output,
                "latency_ms": latency,
                "error": error,
            }
            for i, (request_id, role, version, output, latency, error) in enumerate(items)
        ],
        columns=list(PREDICTION_COLUMNS),
    )


def feedback(*items: tuple[str, Any]) -> pd.DataFrame:
    """(request_id, label) -> feedback rows; the label is stored as JSON text, like the gateway does."""
    return pd.DataFrame(
        [
            {
                "request_id": request_id,
                "ts": T0 + timedelta(minutes=5, seconds=i),
                "model": "fraud",
                "label": json.dumps(y),
            }
            for i, (request_id, y) in enumerate(items)
        ],
        columns=list(FEEDBACK_COLUMNS),
    )


# --- shadow --------------------------------------------------------------------------------------------------


def shadow_rows() -> pd.DataFrame:
    return rows(
        ("r1", "champion", "1", out(1, 0.8), 12.0, None),
        ("r1", "shadow", "2", out(1, 0.7), 10.0, None),  # agree, delta 0.1
        ("r2", "champion", "1", out(0, 0.2), 11.0, None),
        ("r2", "shadow", "2", out(1, 0.6), 20.0, None),  # disagree, delta 0.4
        ("r3", "champion", "1", out(0, 0.1), 13.0, None),
        ("r3", "shadow", "2", out(0, 0.1), 30.0, None),  # agree, delta 0
        ("r4", "champion", "1", out(0, 0.3), 9.0, None),
        ("r4", "shadow", "2", None, 500.0, "ValueError: boom"),  # shadow error: counted, not paired, no latency
        ("r5", "shadow", "2", out(1, 0.9), 40.0, None),  # no champion answer
        ("r6", "champion", "1", None, 8.0, "ValueError: champion failed"),  # champion error: not a pair
        ("r6", "shadow", "2", out(0, 0.4), 50.0, None),
        ("r7", "shadow", "3", out(1, 0.5), 999.0, "other shadow version"),  # another version: ignored
        ("r8", "canary", "2", out(1, 0.5), 999.0, None),  # canary role: ignored
        ("r9", "champion", "7", out(1, 0.5), 999.0, None),  # another champion version: ignored
        ("r9", "shadow", "2", out(1, 0.5), 60.0, None),  # so r9 is unpaired
    )


def test_shadow_stats_pair_by_request_id_with_the_champion() -> None:
    stats = shadow_stats(shadow_rows(), champion="1", shadow="2")

    assert stats.pairs == 3
    assert stats.agreement == pytest.approx(2 / 3)
    assert stats.mean_abs_delta == pytest.approx((0.1 + 0.4 + 0.0) / 3)
    assert stats.shadow_requests == 7  # r1..r6 and r9
    assert stats.shadow_error_rate == pytest.approx(1 / 7)
    # p95 over the successful shadow answers only: 10, 20, 30, 40, 50, 60
    assert stats.shadow_latency_p95_ms == pytest.approx(float(np.percentile([10, 20, 30, 40, 50, 60], 95)))
    assert stats.shadow_latency_p95_ms == pytest.approx(57.5)
    assert stats.to_dict() == {
        "pairs": 3,
        "agreement": stats.agreement,
        "mean_abs_delta": stats.mean_abs_delta,
        "shadow_requests": 7,
        "shadow_error_rate": stats.shadow_error_rate,
        "shadow_latency_p95_ms": stats.shadow_latency_p95_ms,
    }
    assert ShadowStats(**stats.to_dict()) == stats


def test_shadow_stats_regression_outputs_use_the_prediction_as_score() -> None:
    frame = rows(
        ("a", "champion", "1", out(2.0), 5.0, None),
        ("a", "shadow", "2", out(3.5), 5.0, None),
        ("b", "champion", "1", out(1.0), 5.0, None),
        ("b", "shadow", "2", out(1.0), 5.0, None),
    )

    stats = shadow_stats(frame, champion="1", shadow="2")

    assert (stats.pairs, stats.agreement, stats.shadow_requests, stats.shadow_error_rate) == (2, 0.5, 2, 0.0)
    assert stats.mean_abs_delta == pytest.approx(0.75)
    assert stats.shadow_latency_p95_ms == pytest.approx(5.0)


def test_shadow_stats_only_errors_has_no_pairs_and_no_latency() -> None:
    frame = rows(
        ("a", "champion", "1", out(1, 0.9), 5.0, None),
        ("a", "shadow", "2", None, 5.0, "KeyError: x"),
        ("b", "shadow", "2", None, 5.0, "KeyError: x"),
    )

    stats = shadow_stats(frame, champion="1", shadow="2")

    assert stats == ShadowStats(
        pairs=0,
        agreement=None,
        mean_abs_delta=None,
        shadow_requests=2,
        shadow_error_rate=1.0,
        shadow_latency_p95_ms=None,
    )


SHADOW_LIMITS = ShadowConfig(min_requests=5, min_agreement=0.9, max_error_rate=0.1, max_latency_p95_ms=100)
HEALTHY_SHADOW = ShadowStats(
    pairs=10,
    agreement=0.95,
    mean_abs_delta=0.01,
    shadow_requests=10,
    shadow_error_rate=0.0,
    shadow_latency_p95_ms=50.0,
)


def with_(stats: Any, **changes: Any) -> Any:
    return type(stats)(**{**stats.to_dict(), **changes})


def test_decide_shadow_passes_healthy_stats_and_exact_limits() -> None:
    assert decide_shadow(HEALTHY_SHADOW, SHADOW_LIMITS).passed
    assert decide_shadow(HEALTHY_SHADOW, SHADOW_LIMITS).reasons == []
    at_limits = with_(
        HEALTHY_SHADOW, shadow_requests=5, shadow_error_rate=0.1, agreement=0.9, shadow_latency_p95_ms=100.0
    )
    assert decide_shadow(at_limits, SHADOW_LIMITS).reasons == []
    assert decide_shadow(with_(HEALTHY_SHADOW, shadow_latency_p95_ms=None), SHADOW_LIMITS).passed


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"shadow_requests": 4}, "only 4 shadow requests (< min_requests 5)"),
        ({"shadow_error_rate": 0.25}, "shadow error rate 0.2500 > 0.1"),
        ({"agreement": 0.8}, "agreement with champion 0.8000 < 0.9"),
        ({"agreement": None, "pairs": 0}, "no shadow answer could be paired with a champion answer"),
        ({"shadow_latency_p95_ms": 123.45}, "shadow latency p95 123.5 ms > 100.0 ms"),
    ],
)
def test_decide_shadow_names_each_breached_limit(changes: dict[str, Any], reason: str) -> None:
    decision = decide_shadow(with_(HEALTHY_SHADOW, **changes), SHADOW_LIMITS)

    assert not decision.passed
    assert decision.reasons == [reason]


def test_decide_shadow_lists_every_breach_in_order() -> None:
    stats = ShadowStats(
        pairs=2,
        agreement=0.5,
        mean_abs_delta=0.3,
        shadow_requests=3,
        shadow_error_rate=1 / 3,
        shadow_latency_p95_ms=250.0,
    )

    assert decide_shadow(stats, SHADOW_LIMITS).reasons == [
        "only 3 shadow requests (< min_requests 5)",
        "shadow error rate 0.3333 > 0.1",
        "agreement with champion 0.5000 < 0.9",
        "shadow latency p95 250.0 ms > 100.0 ms",
    ]


# --- canary --------------------------------------------------------------------------------------------------


def canary_rows() -> pd.DataFrame:
    return rows(
        ("c1", "canary", "2", out(1, 0.9), 10.0, None),
        ("c2", "canary", "2", out(0, 0.2), 20.0, None),
        ("c3", "canary", "2", out(1, 0.6), 30.0, None),
        ("c4", "canary", "2", out(0, 0.4), 40.0, None),
        ("c5", "canary", "2", None, 1000.0, "ValueError: unknown category"),
        ("x1", "canary", "3", out(1, 0.1), 5000.0, "another canary version"),
        ("h1", "champion", "1", out(1, 0.8), 15.0, None),
        ("h2", "champion", "1", out(0, 0.1), 15.0, None),
        ("h3", "champion", "1", out(0, 0.3), 15.0, None),
        ("h4", "champion", "1", out(1, 0.7), 15.0, None),  # unlabelled
        ("h5", "champion", "1", None, 15.0, "ValueError: champion failed"),  # labelled, but errored
        ("s1", "shadow", "2", out(1, 0.9), 15.0, None),  # shadow of the canary version: not canary traffic
    )


def canary_feedback() -> pd.DataFrame:
    return feedback(
        ("c1", 1),
        ("c2", 0),  # a later label for c2 (below) is refused: the first label of a request wins
        ("c3", 0),
        ("c4", 1),
        ("c5", 1),
        ("h1", 1),
        ("h2", 0),
        ("h3", 0),
        ("h5", 1),
        ("s1", 0),
        ("unknown", 1),
        ("c2", 1),
    )


def test_canary_stats_error_rate_and_latency_of_the_canary_only() -> None:
    stats = canary_stats(canary_rows(), None, canary="2", champion="1", metric=None)

    assert stats == CanaryStats(
        requests=5,
        errors=1,
        error_rate=0.2,
        latency_p95_ms=pytest.approx(38.5),  # p95 of 10, 20, 30, 40 (the failed answer's latency is left out)
        labelled=0,
        champion_labelled=0,
        metric=None,
        canary_metric=None,
        champion_metric=None,
    )


def test_canary_stats_computes_the_metric_for_canary_and_champion_from_labels() -> None:
    stats = canary_stats(canary_rows(), canary_feedback(), canary="2", champion="1", metric="roc_auc")

    assert (stats.requests, stats.errors, stats.error_rate) == (5, 1, 0.2)
    assert stats.metric == "roc_auc"
    assert stats.labelled == 4  # c1..c4 (c5 errored)
    assert stats.champion_labelled == 3  # h1..h3 (h4 has no label, h5 errored)
    # canary: positives score 0.9, 0.4 / negatives 0.2 (c2's last label), 0.6 -> 3 of 4 pairs ordered
    assert stats.canary_metric == pytest.approx(0.75)
    assert stats.champion_metric == pytest.approx(1.0)
    assert CanaryStats(**stats.to_dict()) == stats


def test_canary_stats_hard_label_metrics_use_the_logged_prediction() -> None:
    stats = canary_stats(canary_rows(), canary_feedback(), canary="2", champion="1", metric="accuracy")

    # canary predictions 1, 0, 1, 0 against labels 1, 0, 0, 1
    assert stats.canary_metric == pytest.approx(0.5)
    assert stats.champion_metric == pytest.approx(1.0)


def test_canary_stats_regression_metric() -> None:
    frame = rows(
        ("c1", "canary", "2", out(1.0), 5.0, None),
        ("c2", "canary", "2", out(2.0), 5.0, None),
        ("c3", "canary", "2", out(3.0), 5.0, None),
        ("h1", "champion", "1", out(4.0), 5.0, None),
        ("h2", "champion", "1", out(5.0), 5.0, None),
        ("h3", "champion", "1", out(6.0), 5.0, None),
    )
    labels = feedback(("c1", 1.0), ("c2", 2.0), ("c3", 5.0), ("h1", 4.0), ("h2", 5.0), ("h3", 6.0))

    stats = canary_stats(frame, labels, canary="2", champion="1", metric="rmse")

    assert (stats.labelled, stats.champion_labelled) == (3, 3)
    assert stats.canary_metric == pytest.approx(np.sqrt(4 / 3))
    assert stats.champion_metric == pytest.approx(0.0)
    decision = decide_canary(stats, CanaryConfig(min_labels=3))
    assert decision.reasons == ["canary rmse 1.1547 trails champion 0.0000 by more than 0.02"]


def test_canary_stats_metric_is_none_when_undefined_but_counts_stay() -> None:
    frame = rows(
        ("c1", "canary", "2", out(1, 0.9), 5.0, None),
        ("c2", "canary", "2", out(1, 0.8), 5.0, None),
        ("h1", "champion", "1", out(1, 0.9), 5.0, None),
    )
    labels = feedback(("c1", 1), ("c2", 1), ("h1", 1))  # a single class: AUC undefined

    stats = canary_stats(frame, labels, canary="2", champion="1", metric="roc_auc")

    assert (stats.labelled, stats.champion_labelled) == (2, 1)
    assert (stats.canary_metric, stats.champion_metric) == (None, None)
    assert decide_canary(stats, CanaryConfig(min_labels=1)).passed


def test_canary_stats_without_feedback_rows_skips_the_metric() -> None:
    empty = feedback()

    stats = canary_stats(canary_rows(), empty, canary="2", champion="1", metric="roc_auc")

    assert (stats.metric, stats.labelled, stats.champion_labelled) == ("roc_auc", 0, 0)
    assert (stats.canary_metric, stats.champion_metric) == (None, None)


CANARY_LIMITS = CanaryConfig(max_error_rate=0.1, max_latency_p95_ms=30, max_metric_regression=0.05, min_labels=3)
HEALTHY_CANARY = CanaryStats(
    requests=100,
    errors=0,
    error_rate=0.0,
    latency_p95_ms=20.0,
    labelled=5,
    champion_labelled=5,
    metric="roc_auc",
    canary_metric=0.9,
    champion_metric=0.9,
)


def test_decide_canary_passes_healthy_stats_and_exact_limits() -> None:
    assert decide_canary(HEALTHY_CANARY, CANARY_LIMITS).reasons == []
    at_limits = with_(HEALTHY_CANARY, errors=10, error_rate=0.1, latency_p95_ms=30.0, canary_metric=0.86)
    assert decide_canary(at_limits, CANARY_LIMITS).passed


def test_decide_canary_with_no_traffic_yet_passes() -> None:
    nothing = CanaryStats(requests=0, errors=0, error_rate=0.0, latency_p95_ms=None, metric="roc_auc")

    assert decide_canary(nothing, CANARY_LIMITS).passed


def test_decide_canary_before_the_end_waits_for_min_requests() -> None:
    limits = CanaryConfig(max_error_rate=0.1, max_latency_p95_ms=30, min_requests=20)
    early = CanaryStats(requests=19, errors=5, error_rate=5 / 19, latency_p95_ms=300.0)

    assert decide_canary(early, limits, final=False) == Decision(passed=True, reasons=[])
    assert decide_canary(early, limits, final=True).reasons == [
        "canary error rate 0.2632 > 0.1 (5 errors)",
        "canary latency p95 300.0 ms > 30.0 ms",
    ]
    assert decide_canary(early, limits).reasons == decide_canary(early, limits, final=True).reasons  # default: final
    enough = with_(early, requests=20, error_rate=0.25)
    assert decide_canary(enough, limits, final=False).reasons == [
        "canary error rate 0.2500 > 0.1 (5 errors)",
        "canary latency p95 300.0 ms > 30.0 ms",
    ]


def test_decide_canary_metric_before_the_end_also_waits_for_min_requests() -> None:
    limits = CanaryConfig(max_metric_regression=0.05, min_requests=20, min_labels=3)
    worse = with_(HEALTHY_CANARY, requests=10, canary_metric=0.5)

    assert decide_canary(worse, limits, final=False).passed
    assert decide_canary(worse, limits, final=True).reasons == [
        "canary roc_auc 0.5000 trails champion 0.9000 by more than 0.05"
    ]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"errors": 3, "error_rate": 0.25}, "canary error rate 0.2500 > 0.1 (3 errors)"),
        ({"latency_p95_ms": 38.54}, "canary latency p95 38.5 ms > 30.0 ms"),
        ({"canary_metric": 0.8}, "canary roc_auc 0.8000 trails champion 0.9000 by more than 0.05"),
        (
            {"metric": "rmse", "canary_metric": 0.5, "champion_metric": 0.3},
            "canary rmse 0.5000 trails champion 0.3000 by more than 0.05",
        ),
        (
            {"metric": "log_loss", "canary_metric": 0.7, "champion_metric": 0.2},
            "canary log_loss 0.7000 trails champion 0.2000 by more than 0.05",
        ),
    ],
)
def test_decide_canary_names_each_breached_limit(changes: dict[str, Any], reason: str) -> None:
    decision = decide_canary(with_(HEALTHY_CANARY, **changes), CANARY_LIMITS)

    assert not decision.passed
    assert decision.reasons == [reason]


@pytest.mark.parametrize(
    "changes",
    [
        {"canary_metric": 0.99},  # higher-is-better and better than the champion
        {"metric": "rmse", "canary_metric": 0.3, "champion_metric": 0.5},  # lower-is-better and better
        {"metric": "rmse", "canary_metric": 0.34, "champion_metric": 0.3},  # worse, within the allowed regression
        {"canary_metric": None},
        {"champion_metric": None},
        {"metric": None, "canary_metric": 0.1},
    ],
)
def test_decide_canary_metric_direction_and_missing_values(changes: dict[str, Any]) -> None:
    assert decide_canary(with_(HEALTHY_CANARY, **changes), CANARY_LIMITS).passed


@pytest.mark.parametrize(("labelled", "champion_labelled"), [(2, 5), (5, 2), (0, 0)])
def test_decide_canary_ignores_the_metric_below_min_labels(labelled: int, champion_labelled: int) -> None:
    worse = with_(HEALTHY_CANARY, canary_metric=0.5, labelled=labelled, champion_labelled=champion_labelled)

    assert decide_canary(worse, CANARY_LIMITS).passed
    assert not decide_canary(with_(worse, labelled=3, champion_labelled=3), CANARY_LIMITS).passed


def test_decide_canary_on_stats_from_rows_and_min_labels() -> None:
    stats = canary_stats(canary_rows(), canary_feedback(), canary="2", champion="1", metric="roc_auc")
    limits = {"max_error_rate": 0.3, "max_latency_p95_ms": 100, "max_metric_regression": 0.1}

    assert decide_canary(stats, CanaryConfig(**limits, min_labels=3)).reasons == [
        "canary roc_auc 0.7500 trails champion 1.0000 by more than 0.1"
    ]
    assert decide_canary(stats, CanaryConfig(**limits, min_labels=4)).passed  # champion has only 3 labels
    # the defaults: 1 % errors, 250 ms, 200 labels -> only the error rate is judged here
    assert decide_canary(stats, CanaryConfig()).reasons == ["canary error rate 0.2000 > 0.01 (1 errors)"]


def test_decide_canary_lists_every_breach_in_order() -> None:
    bad = with_(HEALTHY_CANARY, errors=20, error_rate=0.2, latency_p95_ms=300.0, canary_metric=0.5)

    assert decide_canary(bad, CANARY_LIMITS).reasons == [
        "canary error rate 0.2000 > 0.1 (20 errors)",
        "canary latency p95 300.0 ms > 30.0 ms",
        "canary roc_auc 0.5000 trails champion 0.9000 by more than 0.05",
    ]


# --- empty inputs --------------------------------------------------------------------------------------------


@pytest.fixture
def empty_log(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the readers return for a model with nothing logged yet."""
    return read_predictions(LocalStorage(tmp_path), "fraud"), read_feedback(LocalStorage(tmp_path), "fraud")


def test_empty_log_shadow(empty_log: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    predictions, _ = empty_log
    assert predictions.empty and list(predictions.columns) == list(PREDICTION_COLUMNS)

    stats = shadow_stats(predictions, champion="1", shadow="2")

    assert stats == ShadowStats(
        pairs=0,
        agreement=None,
        mean_abs_delta=None,
        shadow_requests=0,
        shadow_error_rate=0.0,
        shadow_latency_p95_ms=None,
    )
    assert decide_shadow(stats, SHADOW_LIMITS).reasons == [
        "only 0 shadow requests (< min_requests 5)",
        "no shadow answer could be paired with a champion answer",
    ]


def test_empty_log_canary(empty_log: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    predictions, labels = empty_log

    stats = canary_stats(predictions, labels, canary="2", champion="1", metric="roc_auc")

    assert stats == CanaryStats(
        requests=0, errors=0, error_rate=0.0, latency_p95_ms=None, metric="roc_auc", labelled=0, champion_labelled=0
    )
    assert decide_canary(stats, CANARY_LIMITS).passed


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "rmse"])
def test_labels_but_no_prediction_rows(empty_log: tuple[pd.DataFrame, pd.DataFrame], metric: str) -> None:
    predictions, _ = empty_log

    stats = canary_stats(predictions, feedback(("c1", 1), ("c2", 0)), canary="2", champion="1", metric=metric)

    assert (stats.requests, stats.labelled, stats.champion_labelled) == (0, 0, 0)
    assert (stats.canary_metric, stats.champion_metric) == (None, None)
    assert decide_canary(stats, CANARY_LIMITS).passed


def test_hand_built_empty_frames() -> None:
    no_rows = rows()

    assert shadow_stats(no_rows, champion="1", shadow="2").shadow_requests == 0
    assert canary_stats(no_rows, feedback(), canary="2", champion="1", metric="roc_auc").requests == 0


# --- hostile labels (issue: feedback decides rollouts) ---------------------------------------------------------


def ranked_rows() -> pd.DataFrame:
    """Champion v1 ranks its 4 requests perfectly; canary v2 ranks its 4 no better than chance."""
    return rows(
        ("h1", "champion", "1", out(1, 0.9), 10.0, None),
        ("h2", "champion", "1", out(1, 0.8), 10.0, None),
        ("h3", "champion", "1", out(0, 0.2), 10.0, None),
        ("h4", "champion", "1", out(0, 0.1), 10.0, None),
        ("c1", "canary", "2", out(1, 0.9), 10.0, None),
        ("c2", "canary", "2", out(0, 0.1), 10.0, None),
        ("c3", "canary", "2", out(1, 0.8), 10.0, None),
        ("c4", "canary", "2", out(0, 0.2), 10.0, None),
        ("c5", "canary", "2", out(1, 0.7), 10.0, None),
    )


TRUE_LABELS = (("h1", 1), ("h2", 1), ("h3", 0), ("h4", 0), ("c1", 1), ("c2", 1), ("c3", 0), ("c4", 0))


@pytest.mark.parametrize("junk", [7, 0.5, "1", True, None, {"y": 1}, [1]])
def test_an_invalid_label_no_longer_switches_the_label_check_off(junk: Any) -> None:
    """A label that is not a class (here on canary request c5) made the canary's metric raise, become None,
    and the step pass unchecked."""
    stats = canary_stats(
        ranked_rows(), feedback(*TRUE_LABELS, ("c5", junk)), canary="2", champion="1", metric="roc_auc"
    )

    assert (stats.canary_metric, stats.champion_metric) == (pytest.approx(0.5), pytest.approx(1.0))
    assert (stats.labelled, stats.invalid_labels, stats.metric_error) == (4, 1, None)
    assert decide_canary(stats, CANARY_LIMITS).reasons == [
        "canary roc_auc 0.5000 trails champion 1.0000 by more than 0.05"
    ]


def test_a_later_label_cannot_rewrite_the_first() -> None:
    """Relabelling the canary's misses after the fact (last write won) would make it look perfect."""
    rewrites = (("c2", 0), ("c3", 1))
    stats = canary_stats(ranked_rows(), feedback(*TRUE_LABELS, *rewrites), canary="2", champion="1", metric="roc_auc")

    assert stats.canary_metric == pytest.approx(0.5) and stats.duplicate_labels == 2
    assert not decide_canary(stats, CANARY_LIMITS).passed


def test_a_label_metric_that_fails_on_enough_labels_fails_the_step() -> None:
    failing = with_(HEALTHY_CANARY, labelled=3, champion_labelled=3, metric_error="canary v2: roc_auc could not ...")
    assert decide_canary(failing, CANARY_LIMITS).reasons == [
        "canary label check failed: canary v2: roc_auc could not ..."
    ]
    assert decide_canary(with_(failing, labelled=2), CANARY_LIMITS).passed  # not enough labels yet: wait


def test_regression_labels_must_be_finite_numbers() -> None:
    from airflow_mlops.monitoring.labels import label_problem

    assert label_problem(3.5, "regression") is None and label_problem(-2, "regression") is None
    for junk in (float("nan"), float("inf"), True, "3.5", None, [1]):
        assert label_problem(junk, "regression") == f"expected a finite number, got {junk!r}"
    assert label_problem("fraud", "classification", ("fraud", "ok")) is None
    assert label_problem(1, "classification", ("1", "0")) == "expected one of the model's classes ['1', '0'], got 1"
