"""Feature attributions in the gate report: SHAP when installed, permutation importance otherwise, per slice.

The data is made so the answer is known: the label follows the numeric ``a`` and the string ``c`` (which the
trained pipeline one-hot encodes), never ``noise``. Both methods must rank ``a`` and ``c`` above ``noise`` —
per input column, not per encoded column. ``shap`` is installed in the test environment; tests of the fallback
hide it the way a user's environment without the ``explain`` extra looks (``shap_available`` is False).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.gates import attributions
from airflow_mlops.gates.attributions import Attributions, Codec, explain, markdown_lines
from airflow_mlops.gates.checks import GateInputs, HoldOut, evaluate_gate
from airflow_mlops.training.trainer import fit_and_evaluate
from support import toy_config


def rows(n: int = 2000, *, seed: int = 3, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    c = rng.choice(["north", "south", "east"], size=n)
    score = 2.0 * a + np.where(c == "north", 2.5, 0.0) + rng.normal(scale=0.3, size=n)
    if classes == 2:
        y: Any = (score > 1.0).astype(int)
    elif classes == 0:  # regression
        y = score
    else:
        y = np.digitize(score, [0.0, 2.0])  # 0, 1, 2
    region = np.where(rng.random(n) < 0.3, "B", "A")
    return pd.DataFrame({"a": a, "noise": rng.normal(size=n), "c": c, "region": region, "y": y})


def config(**sections: Any) -> Any:
    gates = {
        "thresholds": [{"metric": "accuracy", "min": 0.5}],
        "slices": [{"column": "region", "metric": "accuracy", "max_gap": 0.5, "min_rows": 30}],
        "attributions": {"rows": 200, "slice_rows": 60, "background": 20, "repeats": 2},
    }
    raw: dict[str, Any] = {
        "data": {"uri": "rows.csv", "audit_columns": ["region"]},
        "features": {"numeric": ["a", "noise"], "categorical": ["c"]},
        "gates": gates,
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) and key != "gates" else value
    return toy_config(**raw)


def fitted(df: pd.DataFrame, cfg: Any) -> tuple[Any, HoldOut]:
    outcome = fit_and_evaluate(df, cfg)
    split = outcome.split
    return outcome.model, HoldOut(split.x_test, split.y_test, split.audit_test)


def with_method(method: str, **more: Any) -> dict[str, Any]:
    return {
        "thresholds": [{"metric": "accuracy", "min": 0.5}],
        "slices": [{"column": "region", "metric": "accuracy", "max_gap": 0.5, "min_rows": 30}],
        "attributions": {"method": method, "rows": 200, "slice_rows": 60, "background": 20, "repeats": 2, **more},
    }


def ranked(found: Attributions) -> list[str]:
    return [item.feature for item in found.overall]


@pytest.fixture
def without_shap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv without the ``explain`` extra: ``shap`` cannot be found."""
    monkeypatch.setattr(attributions, "shap_available", lambda: False)


@pytest.mark.usefixtures("without_shap")
def test_permutation_importance_ranks_what_the_label_depends_on() -> None:
    cfg = config(gates=with_method("auto"))
    model, holdout = fitted(rows(), cfg)
    found = explain(model, holdout, cfg)

    assert found is not None and found.method == "permutation" and found.note == ""
    assert set(ranked(found)[:2]) == {"a", "c"} and ranked(found)[-1] == "noise"
    by_feature = {i.feature: i for i in found.overall}
    assert by_feature["a"].value > 0.1 and abs(by_feature["noise"].value) < 0.02
    assert by_feature["a"].spread is not None  # spread over the shuffles
    assert "roc_auc" in found.unit  # the config's primary metric (the default metrics' first)
    assert found.seconds > 0


@pytest.mark.slow
def test_shap_ranks_the_same_features_per_input_column() -> None:
    cfg = config(gates=with_method("shap"))
    model, holdout = fitted(rows(), cfg)
    found = explain(model, holdout, cfg)

    assert found is not None and found.method == "shap" and found.note == ""
    assert ranked(found) == ["a", "c", "noise"] or ranked(found) == ["c", "a", "noise"]  # one entry per column
    assert found.unit == "mean |SHAP value| of the probability of the positive class"
    assert found.overall[-1].value < 0.2 * found.overall[0].value


@pytest.mark.usefixtures("without_shap")
def test_shap_asked_for_but_not_installed_falls_back_and_says_so() -> None:
    cfg = config(gates=with_method("shap"))
    model, holdout = fitted(rows(), cfg)
    found = explain(model, holdout, cfg)

    assert found is not None and found.method == "permutation"
    assert "shap is not installed" in found.note and "airflow-mlops[explain]" in found.note


@pytest.mark.parametrize("method", [pytest.param("shap", marks=pytest.mark.slow), "permutation"])
def test_every_group_of_a_slice_column_gets_its_own_ranking_also_for_an_audit_column(method: str) -> None:
    """``region`` is an audit column (never a model input): its groups are explained all the same."""
    cfg = config(gates=with_method(method))
    model, holdout = fitted(rows(), cfg)
    assert "region" not in holdout.x.columns
    found = explain(model, holdout, cfg)

    assert found is not None and found.method == method
    groups = {(g.column, g.group): g for g in found.groups}
    assert set(groups) == {("region", "A"), ("region", "B")}
    for group in groups.values():
        assert group.rows == 60 and group.note == ""
        assert {i.feature for i in group.features} == {"a", "noise", "c"} and group.features[-1].feature == "noise"
    assert found.rows >= 200  # the overall sample (plus the groups' rows SHAP explains)


def test_groups_below_the_slice_minimum_are_left_out_and_the_largest_kept() -> None:
    gates = with_method("permutation", max_groups=1)
    gates["slices"] = [{"column": "c", "metric": "accuracy", "max_gap": 0.9, "min_rows": 30}]
    cfg = config(gates=gates)
    model, holdout = fitted(rows(), cfg)
    found = explain(model, holdout, cfg)

    assert found is not None and len(found.groups) == 1  # max_groups: the largest group of c
    counts = holdout.x["c"].value_counts()
    assert found.groups[0].group == counts.index[0]


@pytest.mark.usefixtures("without_shap")
def test_a_group_that_cannot_be_scored_is_noted_and_the_others_still_ranked() -> None:
    """roc_auc of a group holding one class only is undefined: that group says why, the gate goes on."""
    df = rows()
    df.loc[df["region"] == "B", "y"] = 1
    gates = with_method("permutation")
    cfg = config(gates=gates, evaluation={"metrics": ["roc_auc", "accuracy"]})
    model, holdout = fitted(df, cfg)
    found = explain(model, holdout, cfg)

    assert found is not None and "roc_auc" in found.unit
    groups = {g.group: g for g in found.groups}
    assert groups["A"].features and groups["A"].note == ""
    assert not groups["B"].features and groups["B"].note


@pytest.mark.slow
def test_multiclass_and_regression_models_are_explained() -> None:
    multi = config(gates=with_method("shap"), evaluation={"metrics": ["accuracy", "roc_auc_ovr"]})
    model, holdout = fitted(rows(classes=3), multi)
    found = explain(model, holdout, multi)
    assert found is not None and found.unit.endswith("the class probabilities (averaged over classes)")
    assert ranked(found)[-1] == "noise"

    gates = with_method("shap")
    gates["thresholds"] = [{"metric": "r2", "min": 0.5}]
    gates["slices"] = [{"column": "region", "metric": "rmse", "max_gap": 5.0}]
    regression = config(task="regression", gates=gates, estimator={"class": "sklearn.linear_model.LinearRegression"})
    model, holdout = fitted(rows(classes=0), regression)
    found = explain(model, holdout, regression)
    assert found is not None and found.unit == "mean |SHAP value| of the prediction"
    assert ranked(found)[-1] == "noise"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(attributions, "shap_available", lambda: False)
        found = explain(model, holdout, regression)
    assert found is not None and "rmse" in found.unit  # lower is better: importance is how much it rises
    assert ranked(found)[-1] == "noise" and found.overall[0].value > 0


def test_the_gate_report_carries_them_and_off_means_none() -> None:
    cfg = config(gates=with_method("permutation"))
    model, holdout = fitted(rows(), cfg)
    report = evaluate_gate(GateInputs(config=cfg, holdout=holdout, candidate=model), model="m", version="1", run_id="r")

    assert report.passed and report.attributions is not None
    stored = json.loads(report.to_json())["attributions"]
    read_back = Attributions.from_dict(stored, "here")  # what the gate wrote, as a reader gets it
    assert (read_back.method, read_back.overall, read_back.groups) == (
        report.attributions.method,
        report.attributions.overall,
        report.attributions.groups,
    )
    assert [i["feature"] for i in stored["overall"]][-1] == "noise"
    assert "## Feature attributions" in report.to_markdown() and "region = B" in report.to_markdown()

    off = config(gates=with_method("off"))
    report = evaluate_gate(GateInputs(config=off, holdout=holdout, candidate=model), model="m", version="1", run_id="r")
    assert report.passed and report.attributions is None and "attributions" not in report.to_markdown()


def test_attributions_that_cannot_be_computed_fail_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed, as for every other part of the gate. (A stand-in ``explain`` raises: no real model fails
    only here while passing every check.)"""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("explaining ran out of memory")

    monkeypatch.setattr(attributions, "explain", broken)
    cfg = config(gates=with_method("permutation"))
    model, holdout = fitted(rows(), cfg)
    report = evaluate_gate(GateInputs(config=cfg, holdout=holdout, candidate=model), model="m", version="1", run_id="r")

    assert not report.passed
    failed = {c.name: c for c in report.failures}
    assert failed["attributions"].status == "error" and "out of memory" in failed["attributions"].detail


def test_the_codec_gives_the_model_back_the_frame_it_was_trained_on() -> None:
    frame = pd.DataFrame(
        {
            "f": [1.5, np.nan, 3.0, 4.0],
            "i": np.array([1, 2, 3, 4], dtype="int64"),
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
            "s": ["x", None, "y", "x"],
            "k": pd.Categorical(["lo", "hi", "lo", None]),
            "b": [True, False, True, True],
            "m": [1, "one", 2.5, None],  # mixed types in one object column
        }
    )
    frame["t"] = ["u", np.nan, "v", "u"]  # missing as pandas reads it from a file
    frame["gone"] = pd.Series([None] * 4, dtype=object)  # no value at all in these rows
    codec = Codec.fit(frame)
    matrix = codec.encode(frame)

    assert matrix.dtype == float and matrix.shape == (4, 9)
    assert set(codec.categories) == {"s", "k", "b", "m", "t", "gone"}  # numbers stay numbers; bool is a category
    back = codec.decode(matrix)
    pd.testing.assert_frame_equal(back, frame, check_dtype=True)
    # each column's own missing value: an imputer fitted on NaN must see NaN, not None (assert_frame_equal
    # takes the two for equal)
    assert back["s"][1] is None and isinstance(back["t"][1], float) and np.isnan(back["t"][1])
    assert back["gone"].isna().all()


@pytest.mark.slow
def test_missing_values_of_a_string_feature_reach_the_model_as_missing() -> None:
    """With ``unknown_categories: error`` the pipeline refuses any value it never saw: SHAP's masked rows
    must carry a missing value as the data has it (NaN), or explaining would fail a sound model's gate."""
    df = rows()
    df.loc[df.index % 7 == 0, "c"] = np.nan
    cfg = config(gates=with_method("shap"), features={"unknown_categories": "error"})
    model, holdout = fitted(df, cfg)
    report = evaluate_gate(GateInputs(config=cfg, holdout=holdout, candidate=model), model="m", version="1", run_id="r")

    assert report.passed, report.failures
    assert report.attributions is not None and report.attributions.method == "shap"


def test_stored_attributions_from_mlflow_are_checked_field_by_field() -> None:
    good = {"method": "shap", "unit": "u", "rows": 10, "seconds": 0.5, "overall": [{"feature": "a", "value": 0.1}]}
    assert Attributions.from_dict(good, "v1").overall[0].feature == "a"
    hostile = [
        ([], "attributions: expected an object"),
        ({**good, "overall": "a"}, "attributions.overall: expected a list"),
        ({**good, "overall": [{"feature": 1, "value": 0.1}]}, "overall[0].feature: expected a string"),
        ({**good, "overall": [{"feature": "a", "value": float("nan")}]}, "overall[0].value: expected a finite"),
        ({**good, "overall": [{"feature": "a", "value": True}]}, "overall[0].value: expected a finite"),
        ({**good, "rows": "10"}, "attributions.rows: expected a finite"),
        ({**good, "rows": 10**400}, "attributions.rows: expected a finite"),
        ({**good, "seconds": float("inf")}, "attributions.seconds: expected a finite"),
        ({**good, "groups": [{"column": "c", "group": 3, "rows": 1}]}, "groups[0].group: expected a string"),
        ({key: v for key, v in good.items() if key != "method"}, "attributions.method: expected a string"),
    ]
    for raw, message in hostile:
        with pytest.raises(ValueError, match="v1: ") as caught:
            Attributions.from_dict(raw, "v1")
        assert message in str(caught.value)


def test_markdown_of_outside_values_is_escaped() -> None:
    from airflow_mlops.gates.evidence import cell

    found = Attributions.from_dict(
        {
            "method": "shap",
            "unit": "<img src=x onerror=alert(1)>",
            "rows": 3,
            "seconds": 0.1,
            "overall": [{"feature": "[click](https://evil.example)", "value": 0.3}],
            "groups": [{"column": "c|x", "group": "**g**", "rows": 3, "features": [], "note": "`n`"}],
        },
        "v1",
    )
    text = "\n".join(markdown_lines(found, escape=cell))
    assert "<img" not in text and "](" not in text and "**g**" not in text and "`n`" not in text
    assert "c\\|x" in text
    empty = Attributions("shap", "u", 0, 0.0, ())
    assert markdown_lines(empty)[-1] == "no features ranked"
