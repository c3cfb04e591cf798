"""The quality gate's checks and its fail-closed runner, with fixed fake models and one small real model.

Fake models return fixed arrays whatever the input, so every value and message below is exact. The
real model is the shipped fraud config's LogisticRegression fitted on 3,000 generated rows (< 1 s).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config.loader import load_config
from airflow_mlops.config.schema import ChampionComparisonConfig, ModelConfig, SliceConfig, ThresholdConfig
from airflow_mlops.examples.fraud import generate_transactions
from airflow_mlops.gates.checks import (
    GateInputs,
    HoldOut,
    behaviour_checks,
    champion_check,
    evaluate_gate,
    guarded,
    slice_check,
    threshold_check,
)
from airflow_mlops.gates.report import CheckResult, GateReport
from airflow_mlops.training.metrics import compute_metric
from airflow_mlops.training.trainer import TrainOutcome, fit_and_evaluate
from support import toy_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "configs"
SOURCE = "cases.csv"


# --- helpers -----------------------------------------------------------------------------------------------


def make_config(task: str = "classification", **gates: Any) -> ModelConfig:
    return toy_config(task=task, features={"numeric": ["x1", "x2"], "categorical": ["group"]}, gates=gates)


class FixedClassifier:
    """Returns the given positive-class probabilities and labels, and records the columns it was shown."""

    classes_ = np.array([0, 1])

    def __init__(self, proba: Sequence[float], labels: Sequence[int] | None = None) -> None:
        self.proba = np.asarray(proba, dtype=float)
        self.labels = np.asarray(labels) if labels is not None else (self.proba >= 0.5).astype(int)
        self.seen: list[list[str]] = []

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        self.seen.append(list(x.columns))
        assert len(x) == len(self.proba)
        return np.column_stack([1 - self.proba, self.proba])

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        assert len(x) == len(self.labels)
        return self.labels


class FixedRegressor:
    def __init__(self, predictions: Sequence[float]) -> None:
        self.predictions = np.asarray(predictions, dtype=float)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        assert len(x) == len(self.predictions)
        return self.predictions


class Broken:
    """A model whose every prediction raises."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("boom")

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("boom")


def cases_frame(n: int, **columns: Sequence[Any]) -> pd.DataFrame:
    frame = pd.DataFrame({"x1": np.arange(n, dtype=float), "x2": np.ones(n), "group": ["a"] * n})
    for name, values in columns.items():
        frame[name] = list(values)
    return frame


def summary(results: list[CheckResult]) -> list[tuple[str, str, Any, str | None]]:
    return [(r.name, r.status, r.value, r.threshold) for r in results]


# --- threshold_check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "value", "status", "threshold"),
    [
        pytest.param({"min": 0.7}, 0.75, "pass", ">= 0.7", id="min-above"),
        pytest.param({"min": 0.7}, 0.7, "pass", ">= 0.7", id="min-equal-is-inclusive"),
        pytest.param({"min": 0.7}, 0.69, "fail", ">= 0.7", id="min-below"),
        pytest.param({"max": 65}, 64.9, "pass", "<= 65.0", id="max-below"),
        pytest.param({"max": 65}, 65.0, "pass", "<= 65.0", id="max-equal-is-inclusive"),
        pytest.param({"max": 65}, 65.1, "fail", "<= 65.0", id="max-above"),
        pytest.param({"min": 0.5, "max": 0.9}, 0.6, "pass", ">= 0.5 and <= 0.9", id="both-inside"),
        pytest.param({"min": 0.5, "max": 0.9}, 0.95, "fail", ">= 0.5 and <= 0.9", id="both-above"),
        pytest.param({"min": 0.5, "max": 0.9}, 0.4, "fail", ">= 0.5 and <= 0.9", id="both-below"),
        pytest.param({"min": 0.5}, math.nan, "fail", ">= 0.5", id="nan-min"),
        pytest.param({"max": 65}, math.nan, "fail", "<= 65.0", id="nan-max"),
        pytest.param({"min": 0.5}, math.inf, "fail", ">= 0.5", id="inf-is-not-a-pass"),
    ],
)
def test_threshold_check(bounds: dict[str, float], value: float, status: str, threshold: str) -> None:
    rule = ThresholdConfig(metric="roc_auc", **bounds)
    result = threshold_check({"roc_auc": value, "f1": 0.0}, rule)
    assert (result.name, result.kind, result.status, result.threshold, result.detail) == (
        "threshold:roc_auc",
        "threshold",
        status,
        threshold,
        "",
    )
    assert result.value == value or (math.isnan(value) and math.isnan(result.value))  # type: ignore[arg-type]


def test_threshold_check_missing_metric_raises() -> None:
    with pytest.raises(KeyError, match="recall"):
        threshold_check({"roc_auc": 0.9}, ThresholdConfig(metric="recall", min=0.5))


# --- champion_check ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "max_regression", "candidate", "champion", "status", "threshold", "improvement"),
    [
        pytest.param("roc_auc", 0.02, 0.85, 0.81, "pass", ">= 0.7900", "+0.0400", id="higher-better-improved"),
        pytest.param("roc_auc", 0.02, 0.80, 0.81, "pass", ">= 0.7900", "-0.0100", id="higher-better-within"),
        pytest.param("roc_auc", 0.02, 0.75, 0.81, "fail", ">= 0.7900", "-0.0600", id="higher-better-over"),
        pytest.param("roc_auc", 0.0, 0.81, 0.81, "pass", ">= 0.8100", "+0.0000", id="no-regression-allowed-equal"),
        pytest.param("roc_auc", 0.0, 0.8099, 0.81, "fail", ">= 0.8100", "-0.0001", id="no-regression-allowed-worse"),
        pytest.param("rmse", 2.0, 48.0, 50.0, "pass", "<= 52.0000", "+2.0000", id="lower-better-improved"),
        pytest.param("rmse", 2.0, 52.0, 50.0, "pass", "<= 52.0000", "-2.0000", id="lower-better-at-limit"),
        pytest.param("rmse", 2.0, 53.0, 50.0, "fail", "<= 52.0000", "-3.0000", id="lower-better-over"),
        pytest.param("mae", 0.5, 40.25, 40.0, "pass", "<= 40.5000", "-0.2500", id="mae-is-lower-better"),
        pytest.param("log_loss", 0.0, 0.5, 0.25, "fail", "<= 0.2500", "-0.2500", id="log-loss-is-lower-better"),
        pytest.param("r2", 0.0, 0.5, 0.25, "pass", ">= 0.2500", "+0.2500", id="r2-is-higher-better"),
    ],
)
def test_champion_check(
    metric: str,
    max_regression: float,
    candidate: float,
    champion: float,
    status: str,
    threshold: str,
    improvement: str,
) -> None:
    rule = ChampionComparisonConfig(metric=metric, max_regression=max_regression)
    result = champion_check(rule, candidate, champion, "3")
    assert result == CheckResult(
        name=f"champion:{metric}",
        kind="champion",
        status=status,  # type: ignore[arg-type]
        value=candidate,
        threshold=f"{threshold} (champion v3 = {champion:.4f}, max regression {max_regression})",
        detail=f"improvement {improvement} over the champion on the same held-out rows",
    )


@pytest.mark.parametrize("candidate", [math.nan, math.inf], ids=["nan", "inf"])
def test_champion_check_non_finite_candidate_fails(candidate: float) -> None:
    result = champion_check(ChampionComparisonConfig(metric="roc_auc", max_regression=1.0), candidate, 0.8, "1")
    assert result.status == "fail"


def test_champion_check_without_champion_is_skipped() -> None:
    result = champion_check(ChampionComparisonConfig(metric="roc_auc"), 0.9, None, None)
    assert result == CheckResult(
        "champion:roc_auc", "champion", "skipped", None, None, "no champion yet; absolute thresholds decide"
    )


def test_champion_check_exactly_at_the_allowed_regression_passes() -> None:
    result = champion_check(ChampionComparisonConfig(metric="roc_auc", max_regression=0.02), 0.79, 0.81, "3")
    assert result.threshold is not None and result.threshold.startswith(">= 0.7900 ")
    assert result.status == "pass"


# --- behaviour_checks --------------------------------------------------------------------------------------


def test_behaviour_exact_label() -> None:
    config = make_config()
    model = FixedClassifier(proba=[0.2, 0.9, 0.6], labels=[0, 1, 1])
    cases = cases_frame(3, case=["low", "high", "wrong"], expected=[0, 1, 0])

    results = behaviour_checks(model, cases, config, SOURCE)

    assert summary(results) == [
        ("behaviour:low", "pass", 0.0, "== 0"),
        ("behaviour:high", "pass", 1.0, "== 1"),
        ("behaviour:wrong", "fail", 1.0, "== 0"),
    ]
    assert {r.kind for r in results} == {"behaviour"}
    # only the configured features, in config order, reach the model (not 'case' or 'expected')
    assert model.seen == [["x1", "x2", "group"]]


def test_behaviour_bounds_apply_to_the_positive_class_probability() -> None:
    config = make_config()
    # labels deliberately disagree with the probabilities: bounds must use the probability
    model = FixedClassifier(proba=[0.25, 0.75, 0.5, 0.4], labels=[1, 0, 1, 1])
    cases = cases_frame(
        4,
        case=["under max", "under min", "inside both", "label is not the score"],
        expected_min=[math.nan, 0.8, 0.4, 0.5],
        expected_max=[0.3, math.nan, 0.6, math.nan],
    )

    assert summary(behaviour_checks(model, cases, config, SOURCE)) == [
        ("behaviour:under max", "pass", 0.25, "P(1) <= 0.3"),
        ("behaviour:under min", "fail", 0.75, "P(1) >= 0.8"),
        ("behaviour:inside both", "pass", 0.5, "P(1) >= 0.4 and P(1) <= 0.6"),
        ("behaviour:label is not the score", "fail", 0.4, "P(1) >= 0.5"),
    ]


def test_behaviour_label_and_bound_must_both_hold() -> None:
    model = FixedClassifier(proba=[0.65, 0.95], labels=[1, 1])
    cases = cases_frame(2, expected=[1, 1], expected_min=[0.7, 0.7])
    assert summary(behaviour_checks(model, cases, make_config(), SOURCE)) == [
        ("behaviour:row 1", "fail", 0.65, "== 1 and P(1) >= 0.7"),
        ("behaviour:row 2", "pass", 0.95, "== 1 and P(1) >= 0.7"),
    ]


def test_behaviour_regression_uses_predictions() -> None:
    config = make_config("regression")
    model = FixedRegressor([120.0, 250.5, 99.0])
    cases = cases_frame(
        3, expected_min=[40, 200, math.nan], expected_max=[160, 240, math.nan], expected=[math.nan, math.nan, 99.0]
    )
    assert summary(behaviour_checks(model, cases, config, SOURCE)) == [
        ("behaviour:row 1", "pass", 120.0, ">= 40.0 and <= 160.0"),
        ("behaviour:row 2", "fail", 250.5, ">= 200.0 and <= 240.0"),
        ("behaviour:row 3", "pass", 99.0, "== 99.0"),
    ]


def test_behaviour_nan_score_fails() -> None:
    model = FixedRegressor([math.nan])
    cases = cases_frame(1, expected_max=[10.0])
    assert behaviour_checks(model, cases, make_config("regression"), SOURCE)[0].status == "fail"


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        pytest.param(
            cases_frame(1, expected=[1]).drop(columns=["x2", "group"]),
            "cases.csv: behaviour cases lack feature columns ['x2', 'group']",
            id="missing-feature-column",
        ),
        pytest.param(
            cases_frame(1, outcome=[1]),
            "cases.csv: behaviour cases need a column 'expected' or 'expected_not' or 'expected_min' or 'expected_max'",
            id="no-expected-column",
        ),
        pytest.param(
            cases_frame(0, expected=[]),
            "cases.csv: behaviour cases file has no rows",
            id="no-rows",
        ),
        pytest.param(
            cases_frame(2, case=["ok", "empty"], expected_min=[0.1, math.nan]),
            "cases.csv: case 'empty' has no expected class, expected_not or probability bound",
            id="row-without-expectation",
        ),
    ],
)
def test_behaviour_case_errors(cases: pd.DataFrame, message: str) -> None:
    model = FixedClassifier(proba=[0.5] * len(cases))
    with pytest.raises(ValueError) as e:
        behaviour_checks(model, cases, make_config(), SOURCE)
    assert str(e.value) == message


# --- slice_check -------------------------------------------------------------------------------------------

#: groups a and b have 3 rows each; c has one row with a huge error that would dominate if it were counted
SLICE_X = pd.DataFrame({"x1": np.zeros(7), "x2": np.zeros(7), "group": ["a", "a", "a", "b", "b", "b", "c"]})
SLICE_Y = pd.Series([1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 10.0])
SLICE_PRED = [1.0, 2.0, 4.0, 2.0, 4.0, 6.0, 0.0]  # MAE: a = 1/3, b = 2, c = 10


@pytest.mark.parametrize(
    ("max_gap", "status"), [pytest.param(1.0, "fail", id="gap-over"), pytest.param(2.0, "pass", id="gap-within")]
)
def test_slice_gap_excludes_small_groups(max_gap: float, status: str) -> None:
    rule = SliceConfig(column="group", metric="mae", max_gap=max_gap, min_rows=2)
    result = slice_check(rule, HoldOut(SLICE_X, SLICE_Y), FixedRegressor(SLICE_PRED), make_config("regression"))
    assert (result.name, result.kind, result.status, result.threshold, result.detail) == (
        "slice:group:mae",
        "slice",
        status,
        f"<= {max_gap}",
        "a=0.333, b=2.000",
    )
    assert result.value == pytest.approx(2.0 - 1 / 3, abs=1e-12)


def test_slice_counts_every_group_at_min_rows() -> None:
    rule = SliceConfig(column="group", metric="mae", max_gap=20, min_rows=1)
    result = slice_check(rule, HoldOut(SLICE_X, SLICE_Y), FixedRegressor(SLICE_PRED), make_config("regression"))
    assert result.detail == "a=0.333, b=2.000, c=10.000"
    assert result.value == pytest.approx(10 - 1 / 3, abs=1e-12)


def test_slice_with_fewer_than_two_groups_is_skipped() -> None:
    rule = SliceConfig(column="group", metric="mae", max_gap=1.0, min_rows=4)
    result = slice_check(rule, HoldOut(SLICE_X, SLICE_Y), FixedRegressor(SLICE_PRED), make_config("regression"))
    assert result == CheckResult(
        "slice:group:mae", "slice", "skipped", None, "<= 1.0", "fewer than 2 groups with >= 4 held-out rows"
    )


def test_slice_classification_uses_labels_for_label_metrics() -> None:
    x = pd.DataFrame({"x1": np.zeros(4), "x2": np.zeros(4), "group": ["a", "a", "b", "b"]})
    y = pd.Series([1, 0, 1, 0])
    # probabilities say all-positive; labels are perfect for 'a' and inverted for 'b'
    model = FixedClassifier(proba=[0.9, 0.9, 0.9, 0.9], labels=[1, 0, 0, 1])
    rule = SliceConfig(column="group", metric="accuracy", max_gap=0.5, min_rows=2)
    result = slice_check(rule, HoldOut(x, y), model, make_config())
    assert (result.status, result.value, result.detail) == ("fail", 1.0, "a=1.000, b=0.000")


# --- guarded / evaluate_gate -------------------------------------------------------------------------------


def test_guarded_turns_exceptions_into_error_results() -> None:
    def explode() -> list[CheckResult]:
        raise ZeroDivisionError("division by zero")

    assert guarded("slice:x:y", "slice", explode) == [
        CheckResult("slice:x:y", "slice", "error", None, None, "ZeroDivisionError: division by zero")
    ]
    ok = [CheckResult("t", "threshold", "pass", 1.0)]
    assert guarded("t", "threshold", lambda: ok) == ok


def toy_holdout(n: int = 8) -> HoldOut:
    x = pd.DataFrame({"x1": np.arange(n, dtype=float), "x2": np.zeros(n), "group": ["a", "b"] * (n // 2)})
    return HoldOut(x, pd.Series([0, 1] * (n // 2)))


def test_evaluate_gate_fails_closed_when_checks_raise() -> None:
    config = make_config(
        thresholds=[{"metric": "roc_auc", "min": 0.5}],
        champion={"metric": "roc_auc"},
        behaviour={"cases": SOURCE},
        slices=[{"column": "group", "metric": "roc_auc", "max_gap": 0.1, "min_rows": 1}],
    )
    inputs = GateInputs(
        config=config, holdout=toy_holdout(), candidate=Broken(), behaviour_cases=lambda: (cases_frame(1), SOURCE)
    )

    report = evaluate_gate(inputs, model="toy", version="7", run_id="run-1")

    assert [(c.name, c.kind, c.status, c.detail) for c in report.checks] == [
        ("evaluate:candidate", "gate", "error", "RuntimeError: boom"),
        ("threshold:roc_auc", "threshold", "error", "not evaluated: the candidate could not be scored"),
        ("champion:roc_auc", "champion", "error", "RuntimeError: boom"),
        (
            "behaviour",
            "behaviour",
            "error",
            "ValueError: cases.csv: behaviour cases need a column "
            "'expected' or 'expected_not' or 'expected_min' or 'expected_max'",
        ),
        ("slice:group:roc_auc", "slice", "error", "RuntimeError: boom"),
    ]
    assert report.passed is False
    assert report.failures == report.checks
    assert report.to_dict()["result"] == "failed"


def test_evaluate_gate_behaviour_configured_but_not_loaded_is_an_error() -> None:
    config = make_config(behaviour={"cases": SOURCE})
    holdout = toy_holdout()
    report = evaluate_gate(
        GateInputs(config=config, holdout=holdout, candidate=FixedClassifier([0.5] * 8)),
        model="toy",
        version=None,
        run_id=None,
    )
    assert report.checks == [CheckResult("behaviour", "behaviour", "error", detail="behaviour cases not loaded")]
    assert report.passed is False


def test_evaluate_gate_behaviour_loader_error_fails_closed() -> None:
    def missing() -> tuple[pd.DataFrame, str]:
        raise FileNotFoundError("cases.csv not found")

    report = evaluate_gate(
        GateInputs(
            config=make_config(behaviour={"cases": SOURCE}),
            holdout=toy_holdout(),
            candidate=FixedClassifier([0.5] * 8),
            behaviour_cases=missing,
        ),
        model="toy",
        version="1",
        run_id=None,
    )
    assert summary(report.checks) == [("behaviour", "error", None, None)]
    assert report.checks[0].detail == "FileNotFoundError: cases.csv not found"
    assert not report.passed


def test_evaluate_gate_slice_metric_undefined_fails_closed() -> None:
    """A slice group holding a single class makes roc_auc undefined: an error, never a silent pass."""
    x = pd.DataFrame({"x1": np.zeros(4), "x2": np.zeros(4), "group": ["a", "a", "b", "b"]})
    holdout = HoldOut(x, pd.Series([0, 1, 1, 1]))
    config = make_config(slices=[{"column": "group", "metric": "roc_auc", "max_gap": 0.5, "min_rows": 2}])
    report = evaluate_gate(
        GateInputs(config=config, holdout=holdout, candidate=FixedClassifier([0.2, 0.8, 0.7, 0.9])),
        model="toy",
        version="1",
        run_id=None,
    )
    assert summary(report.checks) == [("slice:group:roc_auc", "error", None, None)]
    assert report.checks[0].detail == "ValueError: roc_auc is undefined when the rows hold a single class"
    assert not report.passed


def test_evaluate_gate_with_only_skipped_checks_passes() -> None:
    config = make_config(champion={"metric": "roc_auc", "max_regression": 0.0})
    report = evaluate_gate(
        GateInputs(config=config, holdout=toy_holdout(), candidate=FixedClassifier([0.5] * 8)),
        model="toy",
        version="2",
        run_id="r",
    )
    assert summary(report.checks) == [("champion:roc_auc", "skipped", None, None)]
    assert report.passed is True
    assert report.failures == []
    assert report.to_dict()["result"] == "passed"


# --- with a real LogisticRegression on the fraud generator -------------------------------------------------


@pytest.fixture(scope="module")
def fraud() -> tuple[ModelConfig, TrainOutcome]:
    config = load_config(EXAMPLES / "fraud.yaml").config
    # the shipped gate's checks; attributions are tests/unit/test_attributions.py's (SHAP costs seconds)
    off = config.gates.attributions.model_copy(update={"method": "off"})
    config = config.model_copy(update={"gates": config.gates.model_copy(update={"attributions": off})})
    return config, fit_and_evaluate(generate_transactions(3000, seed=1), config)


@pytest.fixture(scope="module")
def fraud_cases() -> pd.DataFrame:
    return pd.read_csv(EXAMPLES / "fraud_behaviour_cases.csv")


def test_real_model_passes_shipped_gate(fraud: tuple[ModelConfig, TrainOutcome], fraud_cases: pd.DataFrame) -> None:
    config, outcome = fraud
    holdout = HoldOut(outcome.split.x_test, outcome.split.y_test)
    inputs = GateInputs(
        config=config, holdout=holdout, candidate=outcome.model, behaviour_cases=lambda: (fraud_cases, SOURCE)
    )

    report = evaluate_gate(inputs, model="fraud", version="1", run_id="run-1")

    assert [(c.name, c.status) for c in report.checks] == [
        ("threshold:roc_auc", "pass"),
        ("threshold:recall", "pass"),
        ("champion:roc_auc", "skipped"),
        ("behaviour:small grocery purchase near home by day with card present", "pass"),
        ("behaviour:large night purchase far from home without card on a new account", "pass"),
        ("behaviour:typical restaurant bill", "pass"),
        ("slice:merchant_category:roc_auc", "pass"),
    ]
    # the gate recomputes the held-out metrics exactly as training logged them
    assert report.checks[0].value == outcome.metrics["roc_auc"]
    assert report.checks[1].value == outcome.metrics["recall"]
    assert report.passed


def test_real_model_against_champions(fraud: tuple[ModelConfig, TrainOutcome]) -> None:
    config, outcome = fraud
    holdout = HoldOut(outcome.split.x_test, outcome.split.y_test)
    n = len(holdout.y)
    coin = FixedClassifier(np.full(n, 0.5), labels=np.zeros(n, dtype=int))  # AUC exactly 0.5
    config = config.model_copy(update={"gates": config.gates.model_copy(update={"behaviour": None, "slices": []})})

    def gate(candidate: Any, champion: Any) -> CheckResult:
        report = evaluate_gate(
            GateInputs(config=config, holdout=holdout, candidate=candidate, champion=champion, champion_version="4"),
            model="fraud",
            version="5",
            run_id=None,
        )
        return next(c for c in report.checks if c.name.startswith("champion:"))

    same = gate(outcome.model, outcome.model)
    assert (same.status, same.detail) == ("pass", "improvement +0.0000 over the champion on the same held-out rows")

    better = gate(outcome.model, coin)
    assert better.status == "pass"
    assert better.threshold == ">= 0.4800 (champion v4 = 0.5000, max regression 0.02)"

    worse = gate(coin, outcome.model)
    assert worse.status == "fail"
    assert worse.value == 0.5
    auc = compute_metric("roc_auc", holdout.y, outcome.scores)
    assert worse.threshold == f">= {auc - 0.02:.4f} (champion v4 = {auc:.4f}, max regression 0.02)"


# --- GateReport rendering ----------------------------------------------------------------------------------


def sample_report() -> GateReport:
    return GateReport(
        model="fraud",
        version="3",
        run_id="abc123",
        checks=[
            CheckResult("threshold:roc_auc", "threshold", "pass", 0.812345, ">= 0.68"),
            CheckResult("threshold:recall", "threshold", "fail", math.nan, ">= 0.5"),
            CheckResult("champion:roc_auc", "champion", "skipped", None, None, "no champion yet"),
            CheckResult("slice:m:roc_auc", "slice", "pass", 0.1, "<= 0.35", "a|b=0.7\nc=0.8"),
            CheckResult("behaviour:x", "behaviour", "pass", "label", "== 1"),
        ],
    )


def test_report_passed_and_failures() -> None:
    report = sample_report()
    assert report.passed is False
    assert [c.name for c in report.failures] == ["threshold:recall"]
    assert GateReport("m", None, None).passed is True


def test_report_to_dict_and_json() -> None:
    report = sample_report()
    expected = {
        "model": "fraud",
        "version": "3",
        "run_id": "abc123",
        "result": "failed",
        "checks": [
            {
                "name": "threshold:roc_auc",
                "kind": "threshold",
                "status": "pass",
                "value": 0.812345,
                "threshold": ">= 0.68",
                "detail": "",
            },
            {
                "name": "threshold:recall",
                "kind": "threshold",
                "status": "fail",
                "value": "nan",
                "threshold": ">= 0.5",
                "detail": "",
            },
            {
                "name": "champion:roc_auc",
                "kind": "champion",
                "status": "skipped",
                "value": None,
                "threshold": None,
                "detail": "no champion yet",
            },
            {
                "name": "slice:m:roc_auc",
                "kind": "slice",
                "status": "pass",
                "value": 0.1,
                "threshold": "<= 0.35",
                "detail": "a|b=0.7\nc=0.8",
            },
            {
                "name": "behaviour:x",
                "kind": "behaviour",
                "status": "pass",
                "value": "label",
                "threshold": "== 1",
                "detail": "",
            },
        ],
        "attributions": None,
    }
    assert report.to_dict() == expected
    text = report.to_json()
    assert "NaN" not in text  # strict JSON: non-finite values are strings
    assert json.loads(text) == expected


def test_report_to_markdown() -> None:
    assert sample_report().to_markdown() == (
        "# Gate report: fraud v3 — **FAILED**\n"
        "\n"
        "| check | kind | value | threshold | status | detail |\n"
        "|---|---|---|---|---|---|\n"
        "| threshold:roc_auc | threshold | 0.8123 | >= 0.68 | pass |  |\n"
        "| threshold:recall | threshold | nan | >= 0.5 | fail |  |\n"
        "| champion:roc_auc | champion |  |  | skipped | no champion yet |\n"
        "| slice:m:roc_auc | slice | 0.1000 | <= 0.35 | pass | a\\|b=0.7 c=0.8 |\n"
        "| behaviour:x | behaviour | label | == 1 | pass |  |\n"
    )


def test_report_markdown_passed_without_version() -> None:
    report = GateReport("diabetes", None, None, [CheckResult("threshold:r2", "threshold", "pass", 0.5, ">= 0.3")])
    assert report.to_markdown().splitlines()[0] == "# Gate report: diabetes v? — **PASSED**"
    assert report.to_dict()["result"] == "passed"
