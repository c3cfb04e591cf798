"""Our drift engine vs a straightforward pandas/scipy version vs evidently's DataDriftPreset, on the same columns.

Generates (seeded numpy) a reference and a current table of ``--rows`` rows x 20 numeric + 5 categorical
columns; the current table is shifted in 6 numeric and 2 categorical columns, has NaNs / missing values in
a few columns and one category the reference never saw. Then times, on the same pandas DataFrames:

    (a) ours         build_reference + summarize + drift_scores (+ decide), single pass; also summarize
                     over ``--partitions`` partitions + merge + drift_scores (the mapped-task path)
    (b) pandas/scipy pd.qcut decile bins + pd.cut/value_counts PSI + scipy.stats.ks_2samp per numeric column;
                     value_counts PSI + scipy.stats.chi2_contingency per categorical column
    (c) evidently    Report([DataDriftPreset()]).run(current_data=..., reference_data=...) with an explicit
                     DataDefinition (20 numerical + 5 categorical columns), DO_NOT_TRACK=1

and prints seconds and ratios (evidently / ours, pandas-scipy / ours; target: evidently >= 30x slower), plus
max |PSI ours - PSI from the formula written out directly| over all 25 columns (must be <= 1e-9; the direct
version bins the raw arrays with the reference's edges itself and sums (a - e) * ln(a / e) in a Python loop).

Import times are not counted (evidently's first import takes ~5-11 s). ``--evidently-rows N`` runs evidently
on the first N rows of both tables and extrapolates its time linearly to ``--rows`` (labelled EXTRAPOLATED;
evidently grows faster than linearly per STACK-NOTES, so that ratio understates the gap).

    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--evidently-rows N] [--partitions 10] [--skip-evidently]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

os.environ.setdefault("DO_NOT_TRACK", "1")

from airflow_mlops.monitoring.drift import (
    EPSILON,
    CategoricalReference,
    DriftReference,
    FeatureDrift,
    NumericReference,
    build_reference,
    decide,
    drift_scores,
    merge,
    summarize,
)

N_NUMERIC, N_CATEGORICAL = 20, 5
TARGET_RATIO = 30.0
PSI_TOLERANCE = 1e-9
T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """Best wall time of ``repeat`` runs (after a gc), and the last result."""
    best, result = math.inf, None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


# --- data ----------------------------------------------------------------------------------------------------


SHIFTED_NUMERIC = {0, 3, 6, 9, 12, 15}
SHIFTED_CATEGORICAL = {0, 3}


def numeric_column(rng: np.random.Generator, rows: int, i: int, shift: bool) -> np.ndarray:
    """Five shapes in turn (normal, lognormal, exponential, Poisson, uniform); a shift moves or stretches them."""
    s = 1.0 if shift else 0.0
    makers: list[Callable[[], np.ndarray]] = [
        lambda: rng.normal(loc=0.5 * s, scale=1.0, size=rows),
        lambda: rng.lognormal(mean=3.0 + 0.4 * s, sigma=0.8, size=rows),
        lambda: rng.exponential(scale=10.0 * (1 + 0.5 * s), size=rows),
        lambda: rng.poisson(lam=3.0 + s, size=rows).astype(np.float64),  # discrete: ties in the deciles
        lambda: rng.uniform(0.0, 100.0 + 30 * s, size=rows),
    ]
    values = makers[i % len(makers)]()
    if i % 7 == 1:
        values[rng.random(rows) < 0.03] = np.nan
    return values


def categorical_column(rng: np.random.Generator, rows: int, i: int, shift: bool) -> np.ndarray:
    """4 to 50 levels; a shift reverses the mix and adds 3 % of a category the reference never saw."""
    n_levels = (4, 8, 12, 30, 50)[i]
    labels = np.array([f"c{i}_{k:02d}" for k in range(n_levels)] + [f"c{i}_new"], dtype=object)
    weights = np.linspace(1.0, 3.0, n_levels)
    if shift:
        weights = weights[::-1] ** 1.5
    p = np.append(weights / weights.sum() * (0.97 if shift else 1.0), 0.03 if shift else 0.0)
    values = labels[rng.choice(len(labels), size=rows, p=p / p.sum())]
    if i == 1:
        values[rng.random(rows) < 0.02] = None
    return values


def make_tables(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    numeric = [f"num_{i:02d}" for i in range(N_NUMERIC)]
    categorical = [f"cat_{i}" for i in range(N_CATEGORICAL)]
    tables = []
    for current in (False, True):
        data: dict[str, np.ndarray] = {}
        for i, name in enumerate(numeric):
            data[name] = numeric_column(rng, rows, i, current and i in SHIFTED_NUMERIC)
        for i, name in enumerate(categorical):
            data[name] = categorical_column(rng, rows, i, current and i in SHIFTED_CATEGORICAL)
        tables.append(pd.DataFrame(data))
    return tables[0], tables[1], numeric, categorical


def as_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in frame.columns}


# --- (a) ours ------------------------------------------------------------------------------------------------


def ours_full(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str]) -> dict[str, FeatureDrift]:
    drift_reference = build_reference(as_arrays(reference), categorical)
    scores = drift_scores(drift_reference, summarize(drift_reference, as_arrays(current)))
    decide(scores)
    return scores


def ours_partitioned(reference: DriftReference, current: pd.DataFrame, partitions: int) -> dict[str, FeatureDrift]:
    bounds = np.linspace(0, len(current), partitions + 1).astype(int).tolist()
    parts = [summarize(reference, as_arrays(current.iloc[lo:hi])) for lo, hi in itertools.pairwise(bounds)]
    return drift_scores(reference, merge(parts))


# --- direct formula ------------------------------------------------------------------------------------------


def formula(e: list[float], a: list[float]) -> float:
    total = 0.0
    for expected, actual in zip(e, a, strict=True):
        expected, actual = max(expected, EPSILON), max(actual, EPSILON)
        total += (actual - expected) * math.log(actual / expected)
    return total


def direct_psi(drift_reference: DriftReference, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """PSI straight from the definition, binning the raw arrays with the reference's edges / categories."""
    out: dict[str, float] = {}
    for name, column in drift_reference.columns.items():
        if isinstance(column, NumericReference):
            proportions = []
            for frame in (reference, current):
                values = frame[name].to_numpy()
                values = values[~np.isnan(values)]
                bins = np.searchsorted(column.edges, values, side="left")  # (e[i-1], e[i]]
                proportions.append((np.bincount(bins, minlength=len(column.edges) + 1) / len(values)).tolist())
        else:
            assert isinstance(column, CategoricalReference)
            proportions = []
            for frame in (reference, current):
                counts = frame[name].dropna().astype(str).value_counts()
                total = counts.sum()
                seen = [counts.get(c, 0) / total for c in column.categories]
                proportions.append([*seen, 1.0 - sum(counts.get(c, 0) for c in column.categories) / total])
        out[name] = formula(proportions[0], proportions[1])
    return out


# --- (b) straightforward pandas / scipy ----------------------------------------------------------------------


def pandas_scipy(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict[str, dict[str, float]]:
    from scipy import stats

    out: dict[str, dict[str, float]] = {}
    for name in numeric:
        ref, cur = reference[name].dropna(), current[name].dropna()
        _, edges = pd.qcut(ref, 10, retbins=True, duplicates="drop")
        edges[0], edges[-1] = -np.inf, np.inf
        e = pd.cut(ref, edges).value_counts(normalize=True, sort=False).to_numpy()
        a = pd.cut(cur, edges).value_counts(normalize=True, sort=False).to_numpy()
        e, a = np.maximum(e, EPSILON), np.maximum(a, EPSILON)
        ks = stats.ks_2samp(ref, cur)
        out[name] = {"psi": float(np.sum((a - e) * np.log(a / e))), "ks": float(ks.statistic), "p": float(ks.pvalue)}
    for name in categorical:
        ref_counts = reference[name].value_counts()
        cur_counts = current[name].value_counts()
        table = pd.concat([ref_counts, cur_counts], axis=1).fillna(0)
        e = np.maximum(table.iloc[:, 0].to_numpy() / ref_counts.sum(), EPSILON)
        a = np.maximum(table.iloc[:, 1].to_numpy() / cur_counts.sum(), EPSILON)
        chi2, p, _, _ = stats.chi2_contingency(table.to_numpy().T, correction=False)
        out[name] = {"psi": float(np.sum((a - e) * np.log(a / e))), "chi2": float(chi2), "p": float(p)}
    return out


# --- (c) evidently -------------------------------------------------------------------------------------------


def evidently_run(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    result: dict[str, Any] = snapshot.dict()
    return result


def evidently_summary(result: dict[str, Any]) -> str:
    metrics = result["metrics"]
    count = metrics[0]["value"]
    drifted = [
        m["config"]["column"]
        for m in metrics[1:]
        if m["config"].get("type", "").endswith("ValueDrift") and float(m["value"]) >= m["config"]["threshold"]
    ]
    return f"{int(count['count'])} drifted columns (share {count['share']:.2f}): {', '.join(drifted)}"


# --- main ----------------------------------------------------------------------------------------------------


@dataclass
class Results:
    rows: int
    partitions: int
    ours: float
    build: float
    summarize: float
    scores: float
    partitioned: float
    pandas: float
    evidently: float | None = None  # extrapolated to `rows` when evidently_rows < rows
    evidently_measured: float | None = None
    evidently_rows: int = 0
    lines: list[str] = field(default_factory=list)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_evidently(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str], rows: int
) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    import evidently  # noqa: F401 - timed apart: the first import takes seconds

    log(f"evidently: imported in {time.perf_counter() - start:.1f} s; Report.run on {rows:,} rows (minutes at 1M)")
    rss_before = peak_rss_gb()
    seconds, result = timed(lambda: evidently_run(reference.iloc[:rows], current.iloc[:rows], numeric, categorical))
    log(f"evidently: {seconds:.1f} s; peak RSS of this process {rss_before:.2f} -> {peak_rss_gb():.2f} GB")
    return seconds, result


def print_table(r: Results) -> None:
    def row(label: str, seconds: float, ratio: str = "", note: str = "") -> None:
        print(f"  {label:<68} {seconds:>9.3f} {ratio:>8} {note}".rstrip())

    print()
    print(f"Drift on {r.rows:,} rows x ({N_NUMERIC} numeric + {N_CATEGORICAL} categorical), reference vs current")
    print(f"  {'engine':<68} {'seconds':>9} {'x ours':>8}")
    row("(a) ours: build_reference + summarize + drift_scores + decide", r.ours, "1.0")
    row("      build_reference", r.build)
    row("      summarize (one pass)", r.summarize)
    row("      drift_scores", r.scores)
    row(f"      summarize x {r.partitions} partitions + merge + drift_scores", r.partitioned)
    row("(b) pandas/scipy: qcut + value_counts + ks_2samp + chi2_contingency", r.pandas, f"{r.pandas / r.ours:.1f}")
    if r.evidently is not None and r.evidently_measured is not None:
        label = "(c) evidently Report([DataDriftPreset()]).run"
        if r.evidently_rows < r.rows:
            note = f"EXTRAPOLATED linearly from {r.evidently_measured:.1f} s measured on {r.evidently_rows:,} rows"
            row(label, r.evidently, f"{r.evidently / r.ours:.1f}", note)
        else:
            row(label, r.evidently, f"{r.evidently / r.ours:.1f}")
    print()
    for line in r.lines:
        print(f"  {line}")
    if r.evidently is not None:
        ratio = r.evidently / r.ours
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"  target evidently / ours >= {TARGET_RATIO:.0f}x: {ratio:.1f}x -> {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--evidently-rows", type=int, default=None, help="run evidently on this many rows only")
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="best-of repeats for our engine")
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args(argv)
    rows = args.rows
    import scipy.special
    import scipy.stats

    del scipy  # imported only so that no timing below includes the import (ours imports scipy.special lazily)

    log(f"generating reference and current: {rows:,} rows x {N_NUMERIC} numeric + {N_CATEGORICAL} categorical")
    reference, current, numeric, categorical = make_tables(rows)
    size = reference.memory_usage(deep=True).sum() + current.memory_usage(deep=True).sum()
    log(f"tables ready ({size / 1e9:.2f} GB as pandas)")

    # (a) ours
    t_ours, scores = timed(lambda: ours_full(reference, current, categorical), repeat=args.repeat)
    t_build, drift_ref = timed(lambda: build_reference(as_arrays(reference), categorical), repeat=args.repeat)
    t_summarize, summary = timed(lambda: summarize(drift_ref, as_arrays(current)), repeat=args.repeat)
    t_scores, _ = timed(lambda: drift_scores(drift_ref, summary), repeat=args.repeat)
    t_parts, part_scores = timed(lambda: ours_partitioned(drift_ref, current, args.partitions), repeat=args.repeat)
    log(f"ours: {t_ours:.3f} s (build {t_build:.3f} + summarize {t_summarize:.3f} + scores {t_scores:.3f})")

    # (b) pandas / scipy
    t_pandas, pandas_result = timed(lambda: pandas_scipy(reference, current, numeric, categorical))
    log(f"pandas/scipy: {t_pandas:.3f} s")
    results = Results(rows, args.partitions, t_ours, t_build, t_summarize, t_scores, t_parts, t_pandas)

    # (c) evidently
    evidently_text = "skipped (--skip-evidently)"
    if not args.skip_evidently:
        results.evidently_rows = min(args.evidently_rows or rows, rows)
        measured, evidently_result = run_evidently(reference, current, numeric, categorical, results.evidently_rows)
        results.evidently_measured = measured
        results.evidently = measured * rows / results.evidently_rows
        evidently_text = evidently_summary(evidently_result)

    # checks
    direct = direct_psi(drift_ref, reference, current)
    psi_error = max(abs((scores[name].psi or 0.0) - direct[name]) for name in scores)
    same = all(part_scores[n].psi == scores[n].psi and part_scores[n].chi2 == scores[n].chi2 for n in scores)
    pandas_gap = max(abs((scores[n].psi or 0.0) - pandas_result[n]["psi"]) for n in numeric)
    ks_gap = max(abs((scores[n].ks_statistic or 0.0) - pandas_result[n]["ks"]) for n in numeric)
    bound = max(scores[n].ks_error_bound or 0.0 for n in numeric)
    results.lines = [
        f"max |PSI ours - PSI direct formula| over {len(scores)} columns: {psi_error:.3e} (limit {PSI_TOLERANCE:g})",
        f"{args.partitions} partitions merged == single pass (PSI and chi-square, bit for bit): {same}",
        f"max |PSI ours - PSI pandas qcut| over numeric columns: {pandas_gap:.2e} (qcut interpolates its deciles)",
        f"max |KS ours - scipy ks_2samp|: {ks_gap:.2e} (documented bound: {bound:.2e})",
        f"ours: {decide(scores).message}",
        f"evidently: {evidently_text}",
    ]
    print_table(results)

    failures = []
    if psi_error > PSI_TOLERANCE:
        failures.append(f"PSI differs from the direct formula by {psi_error:.3e} > {PSI_TOLERANCE:g}")
    if not same:
        failures.append("partitioned + merged scores differ from the single pass")
    if ks_gap > bound + 1e-12:
        failures.append(f"KS off by {ks_gap:.3e}, more than its bound {bound:.3e}")
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
