"""The monitor for multiclass and labelled binary classifiers (issue 13): prediction drift on the predicted class,
performance on delayed labels with the champion's classes and metric, hostile logged answers and labels."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from airflow_mlops.exceptions import DataError
from airflow_mlops.monitoring.drift import DriftReference, build_reference
from airflow_mlops.monitoring.evaluation import PREDICTION_FEATURE, SampleRates, evaluate_window, summarize_hour
from airflow_mlops.monitoring.window import (
    holdout_reference,
    performance_on_labels,
    recorded_classes,
    served_predictions,
)
from airflow_mlops.training.classes import ClassSet
from airflow_mlops.vocabulary import Tag
from support import toy_config

IRIS = ClassSet(("setosa", "versicolor", "virginica"))
CONFIG = toy_config(
    monitoring={"drifted_share": 0.5, "max_performance_drop": 0.05},
    rollout={"canary": {"min_labels": 10}},
    evaluation={"metrics": ["f1_macro"], "primary_metric": "f1_macro"},
)


def served(answers: list[Any], role: str = "champion", prefix: str = "r") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [f"{prefix}{i}" for i in range(len(answers))],
            "role": [role] * len(answers),
            "version": ["2"] * len(answers),
            "inputs": [json.dumps({"a": 0.1 * i, "c": "xy"[i % 2]}) for i in range(len(answers))],
            "output": [a if isinstance(a, str) else json.dumps(a) for a in answers],
            "error": [None] * len(answers),
        }
    )


def labels(pairs: list[tuple[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame({"request_id": [r for r, _ in pairs], "label": [json.dumps(y) for _, y in pairs]})


def iris_answers() -> tuple[list[dict[str, Any]], list[str]]:
    data = load_iris()
    y = [str(data.target_names[i]) for i in data.target]
    model = LogisticRegression(max_iter=1000).fit(data.data[:, :2], y)  # two features: some mistakes
    return IRIS.answers(model.predict(data.data[:, :2]), model.predict_proba(data.data[:, :2])), y


# --- prediction drift ----------------------------------------------------------------------------------------


def test_served_predictions_are_the_class_for_multiclass_and_the_score_for_binary() -> None:
    rows = served(
        [
            {"prediction": "setosa", "probabilities": {"setosa": 0.8, "versicolor": 0.1, "virginica": 0.1}},
            {"prediction": 1, "probabilities": {}},
            {"prediction": True, "score": 0.7},
            {"prediction": 2.0, "score": 0.2},
            {"score": 0.4},  # no prediction
            {"prediction": ["x"]},  # not a label
            "[1]",  # not an answer
            "not json",
        ]
    )

    assert served_predictions(rows, categorical=True).tolist() == ["setosa", "1", "true", "2", None, None, None, None]
    np.testing.assert_array_equal(
        served_predictions(rows), [np.nan, 1.0, 0.7, 0.2, 0.4, np.nan, np.nan, np.nan]
    )  # binary: the score; an answer without a number is missing, never a crash


def test_holdout_reference_read_the_class_column_with_quoted_labels() -> None:
    classes = ClassSet(("a, b", 'say "hi"', "c"))
    frame = pd.DataFrame(
        {
            "row": [0, 1, 2],
            "y_true": ["a, b", 'say "hi"', "c"],
            "prediction": ["c", "a, b", 'say "hi"'],
            **{f"proba:{k}": [0.2, 0.5, 0.3] for k in classes.keys},
        }
    )

    assert holdout_reference(frame.to_csv(index=False), classes).tolist() == ["c", "a, b", 'say "hi"']


def test_holdout_reference_of_typed_classes_are_their_keys() -> None:
    text = "row,y_true,prediction,proba:1,proba:2,proba:3\n0,1,2,0.1,0.8,0.1\n1,3,3.0,0.1,0.1,0.8\n"
    assert holdout_reference(text, ClassSet((1, 2, 3))).tolist() == ["2", "3"]
    booleans = "row,y_true,score\n0,True,0.9\n1,False,0.2\n"  # binary (any classes): the score
    assert holdout_reference(booleans, ClassSet((False, True), True)).tolist() == [0.9, 0.2]
    assert holdout_reference("row,y_true,score\n0,1.5,1.25\n", None).tolist() == [1.25]  # regression / 0/1


@pytest.mark.parametrize(
    ("text", "classes", "match"),
    [
        ("row,y_true,prediction\n0,a,rose\n", ClassSet(("a", "b", "c")), "'rose' is not one of the classes"),
        ("row,y_true,score\n0,a,0.3\n", ClassSet(("a", "b", "c")), "no 'prediction' column"),
        ("row,y_true,prediction\n0,a,b\n", None, "no 'score' column"),
        ("row,y_true,score\n0,1,high\n", None, "not finite numbers"),
        ("row,y_true,score\n0,1,\n", None, "not finite numbers"),
    ],
)
def test_holdout_reference_that_do_not_fit_are_a_data_error(text: str, classes: Any, match: str) -> None:
    with pytest.raises(DataError, match=match):
        holdout_reference(text, classes)


def test_a_classes_tag_edited_by_hand_stops_the_monitor() -> None:
    assert recorded_classes({Tag.CLASSES: IRIS.to_json()}, "iris v1") == IRIS
    assert recorded_classes({}, "iris v1") is None
    with pytest.raises(DataError, match=r"iris v1: mlops\.classes"):
        recorded_classes({Tag.CLASSES: '{"classes": ["setosa"]}'}, "iris v1")


def plan(champion_metric: float = 0.9) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    reference = build_reference(
        {
            "a": rng.normal(0.0, 1.0, 300),
            "c": np.array(["x", "y"] * 150, dtype=object),
            PREDICTION_FEATURE: np.array(["setosa", "versicolor", "virginica"] * 100, dtype=object),
        },
        categorical=["c", PREDICTION_FEATURE],
    )
    return {
        "start": "2026-11-20T00:00:00+00:00",
        "end": "2026-11-20T06:00:00+00:00",
        "champion": "1",
        "champion_metric": champion_metric,
        "reference": reference.to_dict(),
        "classes": IRIS.to_json(),
    }


def answer(cls: str) -> dict[str, Any]:
    return {"prediction": cls, "probabilities": {k: 0.8 if k == cls else 0.1 for k in IRIS.keys}}


def window(mix: list[str]) -> dict[str, Any]:
    rows = served([answer(c) for c in mix])
    rows["inputs"] = [json.dumps({"a": float(v), "c": "xy"[i % 2]}) for i, v in enumerate(np.linspace(-2, 2, len(mix)))]
    hour = summarize_hour(rows, CONFIG, DriftReference.from_dict(plan()["reference"]), SampleRates())
    return dict(json.loads(json.dumps(hour)))


def test_prediction_drift_compares_the_distribution_of_the_predicted_class() -> None:
    steady = window(["setosa", "versicolor", "virginica"] * 100)
    shifted = window(["setosa"] * 240 + ["versicolor"] * 30 + ["virginica"] * 30)
    no_labels = pd.DataFrame(columns=["request_id", "label"])

    calm = evaluate_window(plan(), [steady], CONFIG, no_labels)
    drifted = evaluate_window(plan(), [shifted], CONFIG, no_labels)

    assert steady["summary"][PREDICTION_FEATURE]["kind"] == "categorical"
    assert calm.scores[PREDICTION_FEATURE]["status"] == "ok"
    assert drifted.scores[PREDICTION_FEATURE]["status"] == "act"
    assert "prediction drift at act level" in drifted.reasons


def test_a_class_the_champion_never_predicted_shows_as_unseen() -> None:
    hour = window(["setosa", "versicolor", "virginica"] * 50 + ["rose"] * 150)
    result = evaluate_window(plan(), [hour], CONFIG, pd.DataFrame(columns=["request_id", "label"]))

    assert result.scores[PREDICTION_FEATURE]["status"] == "act"


# --- performance on delayed labels ---------------------------------------------------------------------------


def test_performance_scores_multiclass_answers_with_the_champions_classes() -> None:
    answers, y = iris_answers()
    rows = served(answers)
    truth = labels([(f"r{i}", y[i]) for i in range(150)])

    perf = performance_on_labels(rows, truth, "f1_macro", 0.9, IRIS)

    assert perf.labelled == 150 and perf.error is None and perf.invalid_answers == 0
    assert perf.value == pytest.approx(f1_score(y, [a["prediction"] for a in answers], average="macro"))
    ovr = performance_on_labels(rows, truth, "roc_auc_ovr", 0.9, IRIS)
    assert ovr.value is not None and 0.5 < ovr.value <= 1.0


def test_performance_through_the_window_uses_the_plans_classes() -> None:
    answers, y = iris_answers()
    hour = window(["setosa", "versicolor", "virginica"] * 50)
    hour["answers"] = [[f"r{i}", json.dumps(a)] for i, a in enumerate(answers)]  # the sampled answers
    truth = labels([(f"r{i}", y[i]) for i in range(150)])

    result = evaluate_window(plan(champion_metric=0.99), [hour], CONFIG, truth)

    expected = f1_score(y, [a["prediction"] for a in answers], average="macro")
    assert result.performance["value"] == pytest.approx(expected)
    assert result.performance["breached"] is True  # 0.99 -> well below: a drop past max_performance_drop
    assert result.performance["invalid_answers"] == 0


def test_hostile_answers_and_labels_are_left_out_and_counted() -> None:
    good = [answer("setosa"), answer("versicolor"), answer("virginica")] * 5
    bad: list[Any] = [
        {"prediction": "setosa"},  # no probabilities
        {"prediction": "rose", "probabilities": {"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0}},
        {"prediction": "setosa", "probabilities": {"setosa": "high", "versicolor": 0.0, "virginica": 0.0}},
        {"prediction": "setosa", "probabilities": {"setosa": float("nan"), "versicolor": 0.0, "virginica": 0.0}},
        {"prediction": "setosa", "score": 0.9},  # a binary answer
        "[]",
    ]
    rows = served(good + bad)
    truth = [(f"r{i}", ["setosa", "versicolor", "virginica"][i % 3]) for i in range(len(good))]
    truth += [(f"r{len(good) + i}", "setosa") for i in range(len(bad))]
    truth += [("r0", "virginica")]  # a later label cannot rewrite the first
    junk = [("x1", 0), ("x2", True), ("x3", "SETOSA"), ("x4", None)]

    perf = performance_on_labels(rows, labels(truth + junk), "accuracy", 1.0, IRIS)

    assert (perf.labelled, perf.invalid_answers, perf.invalid_labels, perf.duplicate_labels) == (15, 6, 4, 1)
    assert perf.value == pytest.approx(1.0) and perf.error is None


def test_a_binary_model_with_labelled_classes_is_judged_on_its_positive_class() -> None:
    classes = ClassSet(("no", "yes"), "no")
    answers = [
        {"prediction": "no", "score": 0.9},
        {"prediction": "no", "score": 0.8},
        {"prediction": "yes", "score": 0.3},
        {"prediction": "yes", "score": 0.1},
    ]
    truth = labels([("r0", "no"), ("r1", "yes"), ("r2", "no"), ("r3", "yes"), ("r4", 1)])

    perf = performance_on_labels(served(answers), truth, "roc_auc", 0.9, classes)
    recall = performance_on_labels(served(answers), truth, "recall", 0.9, classes)

    assert perf.value == pytest.approx(0.75) and perf.invalid_labels == 1  # 1 is not a class of this model
    assert recall.value == pytest.approx(0.5)  # of the two "no" rows, one predicted "no"
    as_zero_one = performance_on_labels(served(answers), truth, "roc_auc", 0.9)  # no classes: 0/1, all refused
    assert as_zero_one.labelled == 0 and as_zero_one.invalid_labels == 4
