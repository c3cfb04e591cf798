"""Shadow agreement and canary health for multiclass and labelled binary classifiers (issue 13).

Answers come from a real iris model (``ClassSet.answers``); the prediction log and the labels are treated as
hostile: an answer that is not the model's, a label of the wrong type, an unknown class set never crash the
check and never pass it silently.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from airflow_mlops.config.schema import CanaryConfig
from airflow_mlops.deploy.health import (
    answer_distance,
    canary_stats,
    classes_by_version,
    decide_canary,
    shadow_stats,
)
from airflow_mlops.prediction_log import FEEDBACK_COLUMNS, PREDICTION_COLUMNS
from airflow_mlops.training.classes import ClassSet

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
IRIS = ClassSet(("setosa", "versicolor", "virginica"))
LIMITS = CanaryConfig(max_error_rate=1.0, max_latency_p95_ms=1000, max_metric_regression=0.05, min_labels=10)


def frame(items: list[tuple[str, str, str, Any]]) -> Any:
    """(request_id, role, version, answer dict or raw text) -> prediction-log rows."""
    return pd.DataFrame(
        [
            {
                "request_id": rid,
                "ts": T0 + timedelta(seconds=i),
                "model": "iris",
                "version": version,
                "role": role,
                "inputs": "{}",
                "output": answer if isinstance(answer, str) or answer is None else json.dumps(answer),
                "latency_ms": 5.0,
                "error": None,
            }
            for i, (rid, role, version, answer) in enumerate(items)
        ],
        columns=list(PREDICTION_COLUMNS),
    )


def feedback(items: list[tuple[str, Any]]) -> Any:
    return pd.DataFrame(
        [
            {"request_id": rid, "ts": T0 + timedelta(minutes=5, seconds=i), "model": "iris", "label": json.dumps(y)}
            for i, (rid, y) in enumerate(items)
        ],
        columns=list(FEEDBACK_COLUMNS),
    )


def iris_answers() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Answers of a good (champion) and a weaker (canary) iris model to every iris row, and the true classes."""
    data = load_iris()
    y = [str(data.target_names[i]) for i in data.target]
    good = LogisticRegression(max_iter=1000).fit(data.data, y)
    weak = LogisticRegression(max_iter=1000).fit(data.data[:, :1], y)  # sepal length only
    champion = IRIS.answers(good.predict(data.data), good.predict_proba(data.data))
    canary = IRIS.answers(weak.predict(data.data[:, :1]), weak.predict_proba(data.data[:, :1]))
    return champion, canary, y


# --- shadow --------------------------------------------------------------------------------------------------


def test_total_variation_between_multiclass_answers_and_abs_difference_for_binary() -> None:
    p = {"prediction": "a", "probabilities": {"a": 0.7, "b": 0.2, "c": 0.1}}
    q = {"prediction": "b", "probabilities": {"a": 0.3, "b": 0.6, "c": 0.1}}

    assert answer_distance(p, q) == pytest.approx(0.4)  # 0.5 * (0.4 + 0.4 + 0)
    assert answer_distance(p, p) == 0.0
    assert answer_distance({"prediction": 1, "score": 0.8}, {"prediction": 1, "score": 0.7}) == pytest.approx(0.1)
    assert answer_distance({"prediction": 2.5}, {"prediction": 4.0}) == pytest.approx(1.5)  # regression
    # a class one answer lacks has probability 0 there
    assert answer_distance(p, {"prediction": "a", "probabilities": {"a": 1.0}}) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "other",
    [
        {"prediction": "a", "score": 0.7},  # a binary answer next to a multiclass one
        {"prediction": "a"},  # no probabilities
        {"prediction": "a", "probabilities": {"a": "0.7", "b": 0.3}},
        {"prediction": "a", "probabilities": {"a": float("nan"), "b": 0.3}},
        {"prediction": "a", "probabilities": [0.7, 0.3]},
        {"prediction": "a", "probabilities": {"a": True, "b": 0.0}},
    ],
)
def test_answers_that_cannot_be_compared_have_no_distance(other: dict[str, Any]) -> None:
    assert answer_distance({"prediction": "a", "probabilities": {"a": 0.7, "b": 0.3}}, other) is None


def test_shadow_stats_on_multiclass_answers() -> None:
    champion, canary, _ = iris_answers()
    items = [(f"r{i}", "champion", "1", a) for i, a in enumerate(champion)]
    items += [(f"r{i}", "shadow", "2", a) for i, a in enumerate(canary)]

    stats = shadow_stats(frame(items), champion="1", shadow="2")

    same = [a["prediction"] == b["prediction"] for a, b in zip(champion, canary, strict=True)]
    tv = [
        0.5 * sum(abs(a["probabilities"][k] - b["probabilities"][k]) for k in IRIS.keys)
        for a, b in zip(champion, canary, strict=True)
    ]
    assert stats.pairs == 150
    assert stats.agreement == pytest.approx(sum(same) / 150)
    assert stats.mean_abs_delta == pytest.approx(float(np.mean(tv)))
    assert 0.0 < stats.mean_abs_delta < 1.0


def test_shadow_stats_survive_logged_answers_that_are_not_answers() -> None:
    good = {"prediction": "setosa", "probabilities": {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}}
    items = [
        ("r1", "champion", "1", good),
        ("r1", "shadow", "2", good),
        ("r2", "champion", "1", good),
        ("r2", "shadow", "2", {"prediction": "setosa"}),  # lacks probabilities: agrees, no distance
        ("r3", "champion", "1", good),
        ("r3", "shadow", "2", "[1, 2]"),  # not an object: no prediction, disagrees
        ("r4", "champion", "1", good),
        ("r4", "shadow", "2", "null"),
        ("r5", "champion", "1", good),
        ("r5", "shadow", "2", '{"prediction": "setosa", "probabil'),  # not JSON (a torn write): disagrees
    ]

    stats = shadow_stats(frame(items), champion="1", shadow="2")

    assert (stats.pairs, stats.agreement, stats.mean_abs_delta) == (5, 0.4, 0.0)


# --- canary --------------------------------------------------------------------------------------------------


def canary_window(n: int = 150, champion_answers: Any = None, canary_answers: Any = None) -> tuple[Any, Any, list[str]]:
    champion, canary, y = iris_answers()
    champion, canary = champion_answers or champion, canary_answers or canary
    items = [(f"h{i}", "champion", "1", champion[i]) for i in range(n)]
    items += [(f"c{i}", "canary", "2", canary[i]) for i in range(n)]
    labels = [(f"h{i}", y[i]) for i in range(n)] + [(f"c{i}", y[i]) for i in range(n)]
    return frame(items), feedback(labels), y


def test_canary_scores_each_version_with_its_classes_and_the_configured_metric() -> None:
    rows, labels, y = canary_window()
    champion, canary, _ = iris_answers()

    stats = canary_stats(rows, labels, "2", "1", "f1_macro", classes={"1": IRIS, "2": IRIS})

    assert (stats.labelled, stats.champion_labelled, stats.invalid_labels, stats.metric_error) == (150, 150, 0, None)
    assert stats.champion_metric == pytest.approx(f1_score(y, [a["prediction"] for a in champion], average="macro"))
    assert stats.canary_metric == pytest.approx(f1_score(y, [a["prediction"] for a in canary], average="macro"))
    assert stats.champion_metric - stats.canary_metric > 0.1
    assert decide_canary(stats, LIMITS).reasons == [
        f"canary f1_macro {stats.canary_metric:.4f} trails champion {stats.champion_metric:.4f} by more than 0.05"
    ]


@pytest.mark.parametrize("metric", ["log_loss", "roc_auc_ovr", "accuracy", "balanced_accuracy", "recall.virginica"])
def test_canary_probability_and_per_class_metrics(metric: str) -> None:
    rows, labels, y = canary_window()
    champion, _, _ = iris_answers()

    stats = canary_stats(rows, labels, "2", "1", metric, classes={"1": IRIS, "2": IRIS})

    assert stats.metric_error is None and stats.champion_metric is not None and stats.canary_metric is not None
    proba = np.asarray([[a["probabilities"][k] for k in IRIS.keys] for a in champion])
    if metric == "log_loss":
        assert stats.champion_metric == pytest.approx(log_loss(y, proba, labels=list(IRIS.classes)))
    if metric == "roc_auc_ovr":
        assert stats.champion_metric == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", labels=IRIS.keys))


def test_labels_that_are_not_the_champions_classes_are_counted_not_scored() -> None:
    rows, labels, _ = canary_window(n=20)
    junk = feedback([("c0", 0), ("c1", True), ("c2", "SETOSA"), ("c3", None), ("c4", ["setosa"]), ("c5", 1.5)])
    labels = pd.concat([junk, labels], ignore_index=True)  # junk first: the first label of a request wins

    stats = canary_stats(rows, labels, "2", "1", "accuracy", classes={"1": IRIS, "2": IRIS})

    assert stats.invalid_labels == 6 and stats.duplicate_labels == 6
    assert (stats.labelled, stats.champion_labelled) == (14, 20)
    assert stats.metric_error is None


def test_an_answer_without_probabilities_fails_the_label_check() -> None:
    _, canary, _ = iris_answers()
    broken = [dict(a) for a in canary]
    broken[3] = {"prediction": "setosa"}  # a logged canary answer lacking its probabilities

    rows, labels, _ = canary_window(n=20, canary_answers=broken)
    stats = canary_stats(rows, labels, "2", "1", "log_loss", classes={"1": IRIS, "2": IRIS})

    assert stats.canary_metric is None and stats.champion_metric is not None
    assert stats.metric_error is not None and stats.metric_error.startswith("canary v2: log_loss could not be computed")
    assert "canary label check failed" in decide_canary(stats, LIMITS).reasons[0]


def test_a_logged_prediction_that_is_not_a_class_fails_the_label_check() -> None:
    _, canary, _ = iris_answers()
    broken = [dict(a) for a in canary]
    broken[0] = {**broken[0], "prediction": "rose"}
    rows, labels, _ = canary_window(n=20, canary_answers=broken)

    stats = canary_stats(rows, labels, "2", "1", "f1_macro", classes={"1": IRIS, "2": IRIS})

    assert stats.canary_metric is None and "'rose'" in (stats.metric_error or "")
    assert not decide_canary(stats, LIMITS).passed


def test_without_the_classes_a_multiclass_canary_fails_closed() -> None:
    """The health check cannot guess classes from answers: no classes, no pass."""
    rows, labels, _ = canary_window(n=20)

    stats = canary_stats(rows, labels, "2", "1", "f1_macro")

    assert (stats.canary_metric, stats.champion_metric) == (None, None)
    assert (stats.labelled, stats.champion_labelled) == (20, 20)
    assert "its classes are not known" in (stats.metric_error or "")
    assert decide_canary(stats, LIMITS).reasons[0].startswith("canary label check failed")


def test_roc_auc_ovr_waits_until_every_class_has_a_label() -> None:
    rows, labels, y = canary_window()
    keep = [i for i in range(150) if y[i] != "virginica"]
    labels = feedback([(f"{p}{i}", y[i]) for i in keep for p in ("h", "c")])

    stats = canary_stats(rows, labels, "2", "1", "roc_auc_ovr", classes={"1": IRIS, "2": IRIS})

    assert (stats.canary_metric, stats.champion_metric, stats.metric_error) == (None, None, None)


def test_a_binary_model_with_labelled_classes_scores_its_positive_class() -> None:
    no_positive = ClassSet(("no", "yes"), "no")
    answers = [
        {"prediction": "no", "score": 0.9},
        {"prediction": "no", "score": 0.8},
        {"prediction": "yes", "score": 0.3},
        {"prediction": "yes", "score": 0.1},
    ]
    truth = ["no", "yes", "no", "yes"]  # positives ("no") scored 0.9, 0.3; negatives 0.8, 0.1 -> 3 of 4 ordered
    rows = frame([(f"c{i}", "canary", "2", a) for i, a in enumerate(answers)])
    rows = pd.concat([rows, frame([(f"h{i}", "champion", "1", a) for i, a in enumerate(answers)])], ignore_index=True)
    labels = feedback([(f"{p}{i}", t) for i, t in enumerate(truth) for p in ("c", "h")])

    stats = canary_stats(rows, labels, "2", "1", "roc_auc", classes={"1": no_positive, "2": no_positive})

    assert stats.canary_metric == pytest.approx(0.75) and stats.metric_error is None
    assert canary_stats(rows, labels, "2", "1", "roc_auc").metric_error is not None  # as 0/1 it fails closed


def test_classes_by_version_reads_tags_and_refuses_edited_ones() -> None:
    assert classes_by_version({"1": IRIS.to_json(), "2": None}) == {"1": IRIS, "2": None}
    assert classes_by_version(None) == {}
    with pytest.raises(ValueError, match="is not a class set"):
        classes_by_version({"1": '{"classes": ["a"]}'})
