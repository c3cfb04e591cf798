"""Drift statistics: PSI against the formula, exact merging, the KS grid bound against scipy, edge cases, decisions.

Every dataset is drawn from a seeded numpy generator, so the numbers are the same on every run.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from airflow_mlops.examples.fraud import generate_transactions
from airflow_mlops.exceptions import DataError
from airflow_mlops.monitoring.drift import (
    EPSILON,
    CategoricalReference,
    ColumnSummary,
    DriftReference,
    DriftThresholds,
    FeatureDrift,
    NumericReference,
    build_reference,
    decide,
    drift_scores,
    merge,
    psi,
    summarize,
)

CATEGORIES = np.array(["grocery", "fuel", "travel", "online", "atm"], dtype=object)


def direct_psi_numeric(edges: np.ndarray, reference: np.ndarray, current: np.ndarray) -> float:
    """PSI written out from its definition: bins (-inf, e0], (e0, e1], ..., (e_last, inf); NaN left out."""
    reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    bounds = [-np.inf, *edges.tolist(), np.inf]
    total = 0.0
    for low, high in itertools.pairwise(bounds):
        e = max(np.count_nonzero((reference > low) & (reference <= high)) / len(reference), EPSILON)
        a = max(np.count_nonzero((current > low) & (current <= high)) / len(current), EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def direct_psi_categorical(reference: list[Any], current: list[Any]) -> float:
    reference = [v for v in reference if v is not None]
    current = [v for v in current if v is not None]
    categories = sorted(set(reference))
    total = 0.0
    for category in categories:
        e = max(reference.count(category) / len(reference), EPSILON)
        a = max(current.count(category) / len(current), EPSILON)
        total += (a - e) * math.log(a / e)
    unseen = max(sum(v not in categories for v in current) / len(current), EPSILON)
    total += (unseen - EPSILON) * math.log(unseen / EPSILON)
    return total


def mixed_columns(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Three numeric columns (one with NaNs, one discrete) and one categorical with None."""
    gaussian = rng.normal(loc=shift, scale=1.0, size=n)
    with_nan = rng.exponential(scale=2.0 + shift, size=n)
    with_nan[rng.random(n) < 0.05] = np.nan
    counts = rng.poisson(lam=3.0 + shift, size=n).astype(float)
    mix = np.array([0.4, 0.3, 0.2, 0.1, 0.0]) if not shift else np.array([0.2, 0.2, 0.2, 0.3, 0.1])
    category = CATEGORIES[rng.choice(len(CATEGORIES), size=n, p=mix)].copy()
    category[rng.random(n) < 0.02] = None
    return {"gaussian": gaussian, "with_nan": with_nan, "counts": counts, "category": category}


@pytest.fixture(scope="module")
def mixed() -> tuple[DriftReference, dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    reference_data = mixed_columns(rng, 40_000)
    current = mixed_columns(rng, 30_000, shift=0.3)
    return build_reference(reference_data, ["category"]), reference_data, current


# --- PSI -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_numeric_psi_equals_the_formula_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference_values = rng.gamma(shape=2.0, scale=3.0, size=20_000)
    current_values = rng.gamma(shape=2.0 + rng.random(), scale=3.0 + 2 * rng.random(), size=15_000)
    current_values[rng.random(15_000) < 0.1] = np.nan
    reference = build_reference({"x": reference_values})
    score = drift_scores(reference, summarize(reference, {"x": current_values}))["x"]

    column = reference["x"]
    assert isinstance(column, NumericReference)
    assert score.psi == pytest.approx(direct_psi_numeric(column.edges, reference_values, current_values), abs=1e-12)
    assert score.psi > 0


def test_categorical_psi_equals_the_formula_with_unseen_and_missing() -> None:
    rng = np.random.default_rng(3)
    reference_values = list(rng.choice(["a", "b", "c", "d"], size=5000, p=[0.5, 0.3, 0.15, 0.05]))
    current_values = list(rng.choice(["a", "b", "c", "new", "newer"], size=4000, p=[0.3, 0.3, 0.3, 0.07, 0.03]))
    current_values[:100] = [None] * 100
    reference = build_reference({"c": np.array(reference_values, dtype=object)}, ["c"])
    score = drift_scores(reference, summarize(reference, {"c": np.array(current_values, dtype=object)}))["c"]

    assert score.psi == pytest.approx(direct_psi_categorical(reference_values, current_values), abs=1e-12)
    assert score.unseen_share == pytest.approx(sum(v in ("new", "newer") for v in current_values) / 3900)
    assert score.nan_share == pytest.approx(100 / 4000)
    assert "'new'" in score.message and "'newer'" in score.message


def test_psi_function_floors_at_epsilon() -> None:
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - EPSILON) * math.log((1) / EPSILON))
    with pytest.raises(ValueError, match="differ in shape"):
        psi([0.5, 0.5], [1.0])


def test_bins_are_reference_deciles() -> None:
    values = np.random.default_rng(4).normal(size=10_001)
    column = build_reference({"x": values})["x"]
    assert isinstance(column, NumericReference)
    expected_edges = np.quantile(values, np.arange(1, 10) / 10, method="inverted_cdf")
    np.testing.assert_array_equal(column.edges, expected_edges)
    assert np.all(np.abs(column.expected - 0.1) <= 1 / len(values))


def test_same_distribution_is_near_zero_and_a_shift_is_large() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=50_000)
    reference = build_reference({"x": base})

    def score(values: np.ndarray) -> FeatureDrift:
        return drift_scores(reference, summarize(reference, {"x": values}))["x"]

    assert score(base).psi == 0.0
    assert score(base).ks_statistic == 0.0
    same = score(rng.normal(size=50_000))
    assert same.psi is not None and same.psi < 0.005
    assert same.status == "ok"
    shifted = score(rng.normal(loc=1.0, size=50_000))
    assert shifted.psi is not None and shifted.psi > 0.5
    assert shifted.status == "act"
    assert shifted.ks_pvalue is not None and shifted.ks_pvalue < 1e-12


# --- merging ---------------------------------------------------------------------------------------------------


def split(columns: Mapping[str, np.ndarray], cuts: list[int]) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(columns.values())))
    bounds = [0, *cuts, n]
    return [{name: values[lo:hi] for name, values in columns.items()} for lo, hi in itertools.pairwise(bounds)]


@pytest.mark.parametrize("seed", [10, 11, 12, 13], ids=lambda s: f"seed{s}")
def test_chunked_summaries_merge_into_exactly_the_single_pass(
    mixed: tuple[DriftReference, dict[str, np.ndarray], dict[str, np.ndarray]], seed: int
) -> None:
    reference, _, current = mixed
    rng = np.random.default_rng(seed)
    n = len(current["gaussian"])
    cuts = sorted(rng.choice(n, size=int(rng.integers(1, 12)), replace=False).tolist())
    cuts.append(cuts[-1])  # an empty partition too
    parts = [summarize(reference, chunk) for chunk in split(current, cuts)]

    single = summarize(reference, current)
    merged = merge(parts)
    assert {k: v.to_dict() for k, v in merged.items()} == {k: v.to_dict() for k, v in single.items()}
    merged_scores, single_scores = drift_scores(reference, merged), drift_scores(reference, single)
    for name in reference:
        assert merged_scores[name].psi == single_scores[name].psi  # bit for bit, not approx
        assert merged_scores[name].ks_statistic == single_scores[name].ks_statistic
        assert merged_scores[name].chi2 == single_scores[name].chi2
        assert merged_scores[name].js_distance == single_scores[name].js_distance


def test_summaries_travel_as_json_between_tasks(
    mixed: tuple[DriftReference, dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    reference, _, current = mixed
    parts = [summarize(reference, chunk) for chunk in split(current, [1000, 20_000])]
    wire = [json.loads(json.dumps({k: v.to_dict() for k, v in part.items()}, allow_nan=False)) for part in parts]
    restored = [{k: ColumnSummary.from_dict(v) for k, v in part.items()} for part in wire]
    assert drift_scores(reference, merge(restored)) == drift_scores(reference, summarize(reference, current))


def test_merge_refuses_summaries_of_different_references() -> None:
    rng = np.random.default_rng(0)
    one = build_reference({"x": rng.normal(size=1000)})
    other = build_reference({"x": rng.normal(size=1000)}, ks_grid_size=100)
    data = {"x": rng.normal(size=100)}
    with pytest.raises(ValueError, match="same reference"):
        merge([summarize(one, data), summarize(other, data)])
    with pytest.raises(DataError, match="same reference"):
        drift_scores(one, summarize(other, data))
    with pytest.raises(ValueError, match="no summaries"):
        merge([])
    with pytest.raises(ValueError, match="different columns"):
        merge([summarize(one, data), {}])


# --- KS --------------------------------------------------------------------------------------------------------


def ks_case(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if name == "continuous":
        return rng.normal(size=6000), rng.normal(loc=0.1, scale=1.2, size=4000)
    if name == "same":
        return rng.normal(size=6000), rng.normal(size=4000)
    if name == "discrete":
        return rng.poisson(3.0, size=6000).astype(float), rng.poisson(3.4, size=4000).astype(float)
    if name == "ties_and_tails":  # a point mass at 0 plus a long tail; current has values outside the reference
        ref = np.where(rng.random(6000) < 0.4, 0.0, rng.lognormal(size=6000))
        return ref, np.where(rng.random(4000) < 0.3, 0.0, rng.lognormal(mean=0.3, size=4000) - 0.5)
    raise AssertionError(name)


@pytest.mark.parametrize("grid", [1000, 100, 20], ids=lambda k: f"K={k}")
@pytest.mark.parametrize("case", ["continuous", "same", "discrete", "ties_and_tails"])
def test_grid_ks_is_within_its_bound_of_scipy(case: str, grid: int) -> None:
    reference_values, current_values = ks_case(case, np.random.default_rng(len(case) + grid))
    reference = build_reference({"x": reference_values}, ks_grid_size=grid)
    score = drift_scores(reference, summarize(reference, {"x": current_values}))["x"]
    exact = stats.ks_2samp(reference_values, current_values)

    assert score.ks_statistic is not None and score.ks_error_bound is not None and score.ks_pvalue is not None
    assert score.ks_error_bound <= 1 / grid
    assert score.ks_statistic <= exact.statistic + 1e-12
    assert exact.statistic <= score.ks_statistic + score.ks_error_bound + 1e-12
    assert 0.0 <= score.ks_pvalue <= 1.0
    if grid == 1000:  # the asymptotic p-value agrees with scipy's for the same statistic, up to the grid error
        asymptotic = stats.ks_2samp(reference_values, current_values, method="asymp").pvalue
        assert score.ks_pvalue == pytest.approx(asymptotic, abs=0.05)


def test_ks_pvalue_is_large_for_the_same_distribution_and_tiny_for_a_shift() -> None:
    rng = np.random.default_rng(8)
    reference = build_reference({"x": rng.normal(size=20_000)})
    same = drift_scores(reference, summarize(reference, {"x": rng.normal(size=20_000)}))["x"]
    moved = drift_scores(reference, summarize(reference, {"x": rng.normal(loc=0.2, size=20_000)}))["x"]
    assert same.ks_pvalue is not None and same.ks_pvalue > 0.05
    assert moved.ks_pvalue is not None and moved.ks_pvalue < 1e-10


# --- categorical tests -----------------------------------------------------------------------------------------


def test_chi_square_and_js_match_scipy_with_unseen_categories() -> None:
    rng = np.random.default_rng(9)
    reference_values = rng.choice(["a", "b", "c"], size=3000, p=[0.5, 0.3, 0.2])
    current_values = rng.choice(["a", "b", "c", "z"], size=2000, p=[0.4, 0.3, 0.2, 0.1])
    reference = build_reference({"c": reference_values}, ["c"])
    score = drift_scores(reference, summarize(reference, {"c": current_values}))["c"]

    table = np.array(
        [[np.sum(reference_values == v) for v in "abcz"], [np.sum(current_values == v) for v in "abcz"]], dtype=float
    )
    chi2, pvalue, dof, _ = stats.chi2_contingency(table, correction=False)
    assert score.chi2 == pytest.approx(chi2, rel=1e-12)
    assert score.chi2_pvalue == pytest.approx(pvalue, rel=1e-9, abs=1e-300)
    assert score.chi2_dof == dof == 3
    assert score.js_distance == pytest.approx(jensenshannon(table[0] / 3000, table[1] / 2000, base=2), abs=1e-12)
    assert score.unseen_share == pytest.approx(table[1, 3] / 2000)
    assert score.status == "act"  # 10 % of a category the reference never saw: 0.1 * ln(0.1 / 1e-4) = 0.69


def test_numeric_codes_and_unicode_arrays_work_as_categories() -> None:
    reference = build_reference(
        {"code": np.array([1, 2, 2, 3, 3, 3]), "flag": np.array([True, False, True]), "u": np.array(["x", "y"])},
        ["code", "flag", "u"],
    )
    code = reference["code"]
    assert isinstance(code, CategoricalReference) and code.categories == ("1", "2", "3")
    scores = drift_scores(
        reference,
        summarize(reference, {"code": np.array([1.0, 2.0, np.nan]), "flag": [True], "u": np.array(["x", "y"])}),
    )
    assert scores["code"].unseen_share == pytest.approx(1.0)  # categories compare as str(value): 1.0 is "1.0", not "1"
    assert scores["code"].nan_share == pytest.approx(1 / 3)
    assert scores["flag"].n == 1 and scores["u"].psi == 0.0


# --- edge cases ------------------------------------------------------------------------------------------------


def test_all_nan_columns_give_no_data_not_a_crash() -> None:
    rng = np.random.default_rng(1)
    reference = build_reference(
        {
            "x": rng.normal(size=500),
            "empty_ref": np.full(500, np.nan),
            "c": rng.choice(["a", "b"], size=500).astype(object),
        },
        ["c"],
    )
    current = {"x": np.full(300, np.nan), "empty_ref": rng.normal(size=300), "c": np.full(300, None, dtype=object)}
    scores = drift_scores(reference, summarize(reference, current))

    assert {name: s.status for name, s in scores.items()} == {"x": "no_data", "empty_ref": "no_data", "c": "no_data"}
    assert scores["x"].psi is None and scores["x"].nan_share == 1.0
    assert "current data has no non-missing values (300 missing of 300)" in scores["x"].message
    assert "reference has no non-missing values (500 missing)" in scores["empty_ref"].message
    assert scores["empty_ref"].reference_nan_share == 1.0
    json.dumps({name: s.to_dict() for name, s in scores.items()}, allow_nan=False)

    verdict = decide(scores)
    assert verdict.no_data_features == ("x", "empty_ref", "c")
    assert verdict.share == 0.0 and not verdict.dataset_drift


def test_constant_reference_column_still_sees_any_move() -> None:
    reference = build_reference({"x": np.full(1000, 5.0)})
    column = reference["x"]
    assert isinstance(column, NumericReference)
    np.testing.assert_array_equal(column.edges, [np.nextafter(5.0, -np.inf), 5.0])  # bins: < 5, == 5, > 5
    np.testing.assert_array_equal(column.counts, [0, 1000, 0])

    def score(values: np.ndarray) -> FeatureDrift:
        return drift_scores(reference, summarize(reference, {"x": values}))["x"]

    assert score(np.full(10, 5.0)).psi == 0.0 and score(np.full(10, 5.0)).status == "ok"
    above, below = score(np.full(10, 5.5)), score(np.full(10, 4.0))
    assert above.status == below.status == "act"
    assert above.ks_statistic == below.ks_statistic == 1.0
    assert score(np.array([5.0, 5.0, 5.0, 6.0])).psi == pytest.approx(
        direct_psi_numeric(column.edges, np.full(1000, 5.0), np.array([5.0, 5.0, 5.0, 6.0]))
    )


def test_heavy_point_mass_gets_its_own_bin() -> None:
    rng = np.random.default_rng(2)
    values = np.where(rng.random(10_000) < 0.95, 0.0, rng.exponential(size=10_000))
    reference = build_reference({"x": values})
    column = reference["x"]
    assert isinstance(column, NumericReference)
    np.testing.assert_array_equal(column.edges, [np.nextafter(0.0, -np.inf), 0.0])
    more_positive = np.where(rng.random(10_000) < 0.7, 0.0, rng.exponential(size=10_000))
    assert drift_scores(reference, summarize(reference, {"x": more_positive}))["x"].status == "act"


def test_reference_round_trips_through_json(
    mixed: tuple[DriftReference, dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    reference, reference_data, current = mixed
    extra = build_reference(
        {**reference_data, "tails": np.array([-np.inf, 1.0, 2.0, np.inf]), "nothing": np.full(3, np.nan)},
        ["category"],
        ks_grid_size=50,
        epsilon=1e-3,
    )
    for original in (reference, extra):
        text = json.dumps(original.to_dict(), allow_nan=False)  # strict JSON: no Infinity / NaN literals
        restored = DriftReference.from_dict(json.loads(text))
        assert restored == original
        assert restored.to_dict() == original.to_dict()
        assert (restored.epsilon, restored.ks_grid_size) == (original.epsilon, original.ks_grid_size)
        assert restored.numeric == original.numeric and restored.categorical == original.categorical
    assert drift_scores(DriftReference.from_dict(reference.to_dict()), summarize(reference, current)) == drift_scores(
        reference, summarize(reference, current)
    )
    with pytest.raises(ValueError, match="expected format='airflow-mlops/drift-reference'"):
        DriftReference.from_dict({"format": "evidently", "version": 1})


def test_numeric_object_arrays_with_none_count_as_missing() -> None:
    """What pandas' nullable dtypes hand over (``Series.to_numpy()`` of Int64 / Float64 gives objects)."""
    reference = build_reference({"x": np.array([1, 2, None, 3.5, float("nan")], dtype=object)})
    column = reference["x"]
    assert isinstance(column, NumericReference) and (column.n, column.nan_count) == (3, 2)
    score = drift_scores(reference, summarize(reference, {"x": np.array([None, 2], dtype=object)}))["x"]
    assert score.nan_share == 0.5 and score.n == 1


def test_reference_arrays_are_read_only_copies() -> None:
    values = np.arange(100, dtype=float)
    column = build_reference({"x": values})["x"]
    assert isinstance(column, NumericReference)
    values[:] = 0
    with pytest.raises(ValueError, match="read-only"):
        column.edges[0] = 1.0
    assert column.edges[0] == 9.0


def test_bad_inputs_raise_errors_that_name_the_column() -> None:
    with pytest.raises(DataError, match=r"column 'merchant'.*list the column in `categorical`"):
        build_reference({"merchant": np.array(["a", "b"])})
    with pytest.raises(ValueError, match=r"categorical columns \['typo'\] are not among"):
        build_reference({"x": np.zeros(3)}, ["typo"])
    with pytest.raises(ValueError, match="ks_grid_size=15"):
        build_reference({"x": np.zeros(3)}, ks_grid_size=15)
    with pytest.raises(DataError, match="1-D array"):
        build_reference({"x": np.zeros((2, 2))})
    unhashable = np.empty(2, dtype=object)
    unhashable[:] = [[1], [2]]
    with pytest.raises(DataError, match="categories must be hashable"):
        build_reference({"c": unhashable}, ["c"])
    with pytest.raises(DataError, match="strings are not numbers"):
        build_reference({"x": np.array(["1.5", "2"])})
    reference = build_reference({"x": np.zeros(3), "y": np.ones(3)})
    with pytest.raises(DataError, match=r"columns \['y'\] of the drift reference are missing from the data"):
        summarize(reference, {"x": np.zeros(2)})
    with pytest.raises(DataError, match=r"columns \['y'\] of the drift reference are missing from the summary"):
        drift_scores(reference, {"x": summarize(reference, {"x": np.zeros(2), "y": np.zeros(2)})["x"]})


# --- decisions -------------------------------------------------------------------------------------------------


def feature(name: str, psi_value: float | None) -> FeatureDrift:
    return FeatureDrift(name=name, kind="numeric", psi=psi_value, status="ok" if psi_value is not None else "no_data")


def test_decide_uses_per_feature_thresholds_and_the_drifted_share() -> None:
    scores = {
        "a": feature("a", 0.30),
        "b": feature("b", 0.12),
        "c": feature("c", 0.05),
        "d": feature("d", 0.26),
        "e": feature("e", None),
    }
    verdict = decide(scores)
    assert verdict.statuses == {"a": "act", "b": "warn", "c": "ok", "d": "act", "e": "no_data"}
    assert verdict.drifted_features == ("a", "b", "d") and verdict.share == 0.75 and verdict.dataset_drift
    assert verdict.act_features == ("a", "d") and verdict.warn_features == ("b",)
    assert verdict.no_data_features == ("e",)

    tuned = decide(
        scores,
        thresholds={"a": {"psi_act": 0.5}, "d": DriftThresholds(psi_warn=0.3, psi_act=0.6), "c": {"psi_warn": 0.01}},
        drifted_share=0.8,
    )
    assert tuned.statuses == {"a": "warn", "b": "warn", "c": "warn", "d": "ok", "e": "no_data"}
    assert tuned.share == 0.75 and not tuned.dataset_drift
    only_act = decide(scores, default={"psi_act": 0.2}, drifted_at="act", drifted_share=0.5)
    assert only_act.drifted_features == ("a", "d") and only_act.share == 0.5 and only_act.dataset_drift
    assert "2 of 4 features drifted" in only_act.message and "no data for e" in only_act.message
    json.dumps(only_act.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"thresholds": {"amout": {"psi_act": 0.3}}}, r"unknown features \['amout'\]"),
        ({"thresholds": {"a": {"psi_act": 0.05}}}, "0 <= psi_warn <= psi_act"),
        ({"thresholds": {"a": {"act": 0.3}}}, r"unknown keys \['act'\]"),
        ({"drifted_share": 0.0}, "drifted_share=0.0"),
        ({"drifted_at": "ok"}, "drifted_at='ok'"),
    ],
    ids=["typo-feature", "warn-above-act", "typo-key", "zero-share", "bad-level"],
)
def test_decide_rejects_bad_thresholds(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decide({"a": feature("a", 0.2)}, **kwargs)


def test_drift_scores_status_follows_the_given_thresholds() -> None:
    rng = np.random.default_rng(6)
    reference = build_reference({"x": rng.normal(size=5000)})
    summary = summarize(reference, {"x": rng.normal(loc=0.5, size=5000)})
    relaxed = drift_scores(reference, summary, default=DriftThresholds(psi_warn=5, psi_act=10))["x"]
    strict = drift_scores(reference, summary, thresholds={"x": {"psi_warn": 0.0, "psi_act": 0.01}})["x"]
    assert (relaxed.status, strict.status) == ("ok", "act")
    assert FeatureDrift.from_dict(json.loads(json.dumps(strict.to_dict()))) == strict


# --- the fraud generator ---------------------------------------------------------------------------------------

FRAUD_FEATURES = ("amount", "hour", "distance_from_home_km", "txn_count_24h", "account_age_days", "card_present")


def fraud_columns(**kwargs: Any) -> dict[str, np.ndarray]:
    frame = generate_transactions(20_000, **kwargs)
    return {name: frame[name].to_numpy() for name in (*FRAUD_FEATURES, "merchant_category")}


def test_fraud_data_drift_is_flagged_and_a_fresh_sample_is_not() -> None:
    reference = build_reference(fraud_columns(seed=1), ["merchant_category"])
    drifted = decide(drift_scores(reference, summarize(reference, fraud_columns(seed=2, data_drift=0.8))))
    fresh_scores = drift_scores(reference, summarize(reference, fraud_columns(seed=3)))
    fresh = decide(fresh_scores)

    assert drifted.dataset_drift, drifted.message
    assert {"distance_from_home_km", "txn_count_24h"} <= set(drifted.act_features)
    assert {"hour", "account_age_days"}.isdisjoint(drifted.drifted_features)  # untouched by data_drift
    assert not fresh.dataset_drift and fresh.drifted_features == (), fresh.message
    assert all(s.psi is not None and s.psi < 0.01 for s in fresh_scores.values())


# --- import cost -----------------------------------------------------------------------------------------------


def test_importing_the_module_imports_neither_pandas_nor_scipy() -> None:
    code = (
        "import sys, airflow_mlops.monitoring.drift; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'scipy'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
