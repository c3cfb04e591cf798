"""Classification beyond 0/1 (issue 13): classes learned from the data, metrics by name, gates for any classes.

Real scikit-learn models on sklearn's bundled iris (string labels) and on small frames built here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from airflow_mlops.config.schema import ModelConfig
from airflow_mlops.exceptions import DataError
from airflow_mlops.gates.checks import GateInputs, HoldOut, behaviour_checks, classes_check, evaluate_gate
from airflow_mlops.training.classes import LEGACY, ClassSet
from airflow_mlops.training.metrics import compute_metric
from airflow_mlops.training.trainer import fit_and_evaluate, holdout_predictions
from support import toy_config

SPECIES = np.array(["setosa", "versicolor", "virginica"])
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_frame() -> pd.DataFrame:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=FEATURES)
    frame["species"] = SPECIES[data.target]
    frame["day"] = np.arange(len(frame)) % 30
    return frame


def iris_config(**overrides: Any) -> ModelConfig:
    raw: dict[str, Any] = {
        "name": "iris",
        "task": "classification",
        "data": {"uri": "iris.csv"},
        "target": "species",
        "features": {"numeric": FEATURES},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "evaluation": {"metrics": ["f1_macro", "accuracy", "roc_auc_ovr", "log_loss", "recall.virginica"]},
    }
    return ModelConfig.model_validate({**raw, **overrides})


@pytest.fixture(scope="module")
def iris() -> tuple[ModelConfig, Any]:
    config = iris_config()
    return config, fit_and_evaluate(iris_frame(), config)


# --- training ----------------------------------------------------------------------------------------------


def test_multiclass_string_labels_train_and_score_like_sklearn(iris: tuple[ModelConfig, Any]) -> None:
    _, outcome = iris
    y, proba = outcome.split.y_test.to_numpy(), outcome.model.predict_proba(outcome.split.x_test)
    hard = outcome.model.predict(outcome.split.x_test)

    assert outcome.classes == ClassSet(("setosa", "versicolor", "virginica"), None)
    assert outcome.scores.shape == (len(y), 3)
    assert outcome.metrics == pytest.approx(
        {
            "f1_macro": skm.f1_score(y, hard, average="macro"),
            "accuracy": skm.accuracy_score(y, hard),
            "roc_auc_ovr": skm.roc_auc_score(y, proba, multi_class="ovr"),
            "log_loss": skm.log_loss(y, proba),
            "recall.virginica": skm.recall_score(y, hard, labels=["virginica"], average=None)[0],
        }
    )
    assert 0.8 < outcome.metrics["accuracy"] <= 1.0


def test_multiclass_holdout_predictions_have_a_column_per_class(iris: tuple[ModelConfig, Any]) -> None:
    _, outcome = iris
    frame = holdout_predictions(outcome)
    assert list(frame.columns) == [
        "row",
        "y_true",
        "prediction",
        "proba:setosa",
        "proba:versicolor",
        "proba:virginica",
    ]
    assert frame.filter(like="proba:").sum(axis=1).to_numpy() == pytest.approx(np.ones(len(frame)))


def test_binary_positive_class_chooses_the_score_and_the_binary_metrics() -> None:
    frame = iris_frame()
    frame = frame[frame["species"] != "setosa"].assign(
        answer=lambda f: np.where(f["species"] == "virginica", "yes", "no")
    )
    base = {"target": "answer", "evaluation": {"metrics": ["recall", "roc_auc", "f1"]}}
    as_no = fit_and_evaluate(frame, iris_config(**base, positive_class="no"))
    as_yes = fit_and_evaluate(frame, iris_config(**base))  # default: the later label, "yes"

    assert (as_yes.classes, as_no.classes) == (ClassSet(("no", "yes"), "yes"), ClassSet(("no", "yes"), "no"))
    proba = as_no.model.predict_proba(as_no.split.x_test)
    np.testing.assert_allclose(as_no.scores, proba[:, 0])
    np.testing.assert_allclose(as_yes.scores, proba[:, 1])
    y, hard = as_no.split.y_test.to_numpy(), as_no.model.predict(as_no.split.x_test)
    assert as_no.metrics["recall"] == pytest.approx(skm.recall_score(y, hard, pos_label="no"))
    assert as_yes.metrics["recall"] == pytest.approx(skm.recall_score(y, hard, pos_label="yes"))
    assert as_no.metrics["roc_auc"] == pytest.approx(as_yes.metrics["roc_auc"])  # the same ranking, seen from both


def test_boolean_labels_are_classes() -> None:
    frame = iris_frame().assign(big=lambda f: f["petal_length"] > 4.0)
    outcome = fit_and_evaluate(frame, iris_config(target="big", evaluation={"metrics": ["f1"]}))
    assert outcome.classes == ClassSet((False, True), True)
    assert json.loads(outcome.classes.to_json()) == {"classes": [False, True], "positive": True}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"positive_class": "daisy", "target": "answer"},
            "positive_class: got 'daisy'; the training data's classes are ['no', 'yes']",
            id="positive-class-not-in-data",
        ),
        pytest.param(
            {"positive_class": "setosa"},
            "positive_class: got 'setosa' for 3 classes; it applies to two classes only "
            "(use per-class metrics such as recall.<class> instead)",
            id="positive-class-with-three-classes",
        ),
        pytest.param(
            {"evaluation": {"metrics": ["accuracy", "f1"]}},
            "evaluation.metrics: 'f1' needs two classes and the target has 3; use f1_macro, f1_weighted or f1.<class>",
            id="binary-metric-for-three-classes",
        ),
        pytest.param(
            {"gates": {"thresholds": [{"metric": "roc_auc", "min": 0.5}]}},
            "gates.thresholds[0].metric: 'roc_auc' needs two classes and the target has 3; use roc_auc_ovr",
            id="binary-threshold-for-three-classes",
        ),
        pytest.param(
            {"evaluation": {"metrics": ["recall.daisy"]}},
            "evaluation.metrics: 'recall.daisy' names class 'daisy', which is not one of "
            "['setosa', 'versicolor', 'virginica']",
            id="per-class-metric-of-no-class",
        ),
    ],
)
def test_classes_the_config_cannot_use_fail_before_fitting(overrides: dict[str, Any], message: str) -> None:
    frame = iris_frame().assign(answer=lambda f: np.where(f["species"] == "virginica", "yes", "no"))
    with pytest.raises(DataError) as e:
        fit_and_evaluate(frame, iris_config(**overrides))
    assert str(e.value) == message


def test_a_class_only_in_the_recent_rows_is_refused_with_a_time_split() -> None:
    frame = iris_frame().assign(t=np.arange(150))
    frame.loc[frame.index[-10:], "species"] = "hybrid"  # appears only in the newest rows
    config = iris_config(evaluation={"metrics": ["accuracy"], "split": "time", "time_column": "t"})
    with pytest.raises(DataError) as e:
        fit_and_evaluate(frame, config)
    assert str(e.value) == (
        "target 'species': the held-out rows hold classes ['hybrid'] that no training row has "
        "(evaluation.split 'time'); a model cannot be evaluated on classes it never learned"
    )


@pytest.mark.parametrize(
    ("metric", "ok"),
    [("f1_macro", True), ("roc_auc_ovo", True), ("recall.setosa", True), ("recall.a b-c.d", True), ("f1_mean", False)],
)
def test_config_validates_metric_names_against_the_task(metric: str, ok: bool) -> None:
    raw = {"evaluation": {"metrics": [metric]}}
    if ok:
        assert toy_config(**raw).metrics == [metric]
    else:
        with pytest.raises(ValueError, match=rf"evaluation.metrics\[0\]: got '{metric}'; expected one of"):
            toy_config(**raw)
    with pytest.raises(ValueError, match=r"for task 'regression'"):
        toy_config(task="regression", **raw)


def test_positive_class_only_for_classification() -> None:
    with pytest.raises(ValueError, match="positive_class: got 'x'; expected it only with task classification"):
        toy_config(task="regression", positive_class="x")


# --- metrics -----------------------------------------------------------------------------------------------


def test_legacy_binary_metrics_are_unchanged() -> None:
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert compute_metric("roc_auc", y, s) == skm.roc_auc_score(y, s)
    assert compute_metric("f1", y, s) == skm.f1_score(y, [0, 0, 0, 1])
    assert compute_metric("log_loss", y, s) == pytest.approx(skm.log_loss(y, s))
    assert compute_metric("f1_macro", y, s, classes=LEGACY) == pytest.approx(
        skm.f1_score(y, [0, 0, 0, 1], average="macro")
    )


def test_multiclass_metric_undefined_on_rows_is_a_value_error() -> None:
    classes = ClassSet(("a", "b", "c"))
    proba = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1]])
    with pytest.raises(ValueError):
        compute_metric("roc_auc_ovr", ["a", "a"], proba, classes=classes)
    assert compute_metric("accuracy", ["a", "b"], proba, classes=classes) == 0.5


def test_class_set_round_trips_and_refuses_edited_tags() -> None:
    classes = ClassSet((1, 2, 3))
    assert ClassSet.from_json(classes.to_json()) == classes
    assert ClassSet.from_json(None) is LEGACY
    for bad in ('{"classes": ["a"]}', '{"classes": [["a"], "b"]}', "[1,2]", '{"classes": ["a", "b"], "positive": "c"}'):
        with pytest.raises(ValueError, match="is not a class set"):
            ClassSet.from_json(bad)
    with pytest.raises(DataError, match="at most 5000 can be recorded"):
        ClassSet(tuple(f"class-{i}" for i in range(1000))).to_json()


# --- gates -------------------------------------------------------------------------------------------------


def test_behaviour_cases_for_classes(iris: tuple[ModelConfig, Any]) -> None:
    config, outcome = iris
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}  # a setosa
    cases = pd.DataFrame(
        [
            {**flower, "case": "is setosa", "expected": "setosa"},
            {**flower, "case": "not virginica", "expected_not": "virginica"},
            {**flower, "case": "not setosa", "expected_not": "setosa"},
            {**flower, "case": "sure", "expected": "setosa", "expected_min": 0.8},
            {**flower, "case": "unlikely virginica", "probability_of": "virginica", "expected_max": 0.05},
            {**flower, "case": "likely virginica", "probability_of": "virginica", "expected_min": 0.5},
        ]
    )
    results = behaviour_checks(outcome.model, cases, config, "cases.csv")
    assert [(r.name, r.status) for r in results] == [
        ("behaviour:is setosa", "pass"),
        ("behaviour:not virginica", "pass"),
        ("behaviour:not setosa", "fail"),
        ("behaviour:sure", "pass"),
        ("behaviour:unlikely virginica", "pass"),
        ("behaviour:likely virginica", "fail"),
    ]
    assert results[3].threshold == "== 'setosa' and P('setosa') >= 0.8"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param(
            {"expected": "daisy"},
            "cases.csv: case 'row 1': expected 'daisy' is not one of the model's classes "
            "['setosa', 'versicolor', 'virginica']",
            id="unknown-class",
        ),
        pytest.param(
            {"expected_min": 0.5},
            "cases.csv: case 'row 1': expected_min/expected_max bound a class's probability; with 3 classes "
            "name the class in 'probability_of' (or 'expected')",
            id="bound-without-class",
        ),
    ],
)
def test_behaviour_case_errors_for_classes(iris: tuple[ModelConfig, Any], case: dict[str, Any], message: str) -> None:
    config, outcome = iris
    cases = pd.DataFrame([{**dict.fromkeys(FEATURES, 1.0), **case}])
    with pytest.raises(ValueError) as e:
        behaviour_checks(outcome.model, cases, config, "cases.csv")
    assert str(e.value) == message


def test_gate_fails_when_the_data_has_classes_the_champion_never_saw(iris: tuple[ModelConfig, Any]) -> None:
    config, outcome = iris
    frame = iris_frame()
    two = frame[frame["species"] != "virginica"]
    champion = LogisticRegression(max_iter=500).fit(two[FEATURES], two["species"])
    config = iris_config(evaluation={"metrics": ["f1_macro"]}, gates={"champion": {"metric": "f1_macro"}})
    report = evaluate_gate(
        GateInputs(
            config=config,
            holdout=HoldOut(outcome.split.x_test, outcome.split.y_test),
            candidate=outcome.model,
            champion=champion,
            champion_version="3",
        ),
        model="iris",
        version="4",
        run_id=None,
    )
    check = next(c for c in report.checks if c.name == "classes:champion")
    assert check.status == "fail" and not report.passed
    assert check.detail == "classes ['virginica'] are new: champion v3 never saw them; retire it or promote by hand"


def test_classes_check_passes_for_the_same_classes_and_fails_a_moved_positive_class() -> None:
    same = classes_check(ClassSet(("a", "b", "c")), ClassSet(("a", "b", "c")), "1", ["a", "c"])
    assert (same.status, same.value) == ("pass", "3 classes")
    moved = classes_check(ClassSet(("no", "yes"), "no"), ClassSet(("no", "yes"), "yes"), "1", [])
    assert moved.status == "fail" and moved.detail == "positive class 'no'; champion v1's is 'yes'"
