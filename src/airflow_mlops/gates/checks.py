"""The gate's checks as plain functions over held-out data and models, and the fail-closed runner."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import (
    ChampionComparisonConfig,
    ModelConfig,
    SliceConfig,
    ThresholdConfig,
)
from airflow_mlops.gates.report import CheckResult, GateReport
from airflow_mlops.training.metrics import compute_metric, higher_is_better

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class HoldOut:
    """The held-out rows and what a model predicted for them."""

    x: pd.DataFrame
    y: pd.Series


def _scores(model: Any, x: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    from airflow_mlops.training.trainer import predict_scores

    return predict_scores(model, x, task)


def threshold_check(metrics: dict[str, float], rule: ThresholdConfig) -> CheckResult:
    value = metrics[rule.metric]
    bounds = []
    ok = math.isfinite(value)
    if rule.min is not None:
        bounds.append(f">= {rule.min}")
        ok = ok and value >= rule.min
    if rule.max is not None:
        bounds.append(f"<= {rule.max}")
        ok = ok and value <= rule.max
    return CheckResult(
        name=f"threshold:{rule.metric}",
        kind="threshold",
        status="pass" if ok else "fail",
        value=value,
        threshold=" and ".join(bounds),
    )


def champion_check(
    rule: ChampionComparisonConfig, candidate: float, champion: float | None, champion_version: str | None
) -> CheckResult:
    name = f"champion:{rule.metric}"
    if champion is None:
        return CheckResult(name, "champion", "skipped", None, None, "no champion yet; absolute thresholds decide")
    better_up = higher_is_better(rule.metric)
    delta = candidate - champion if better_up else champion - candidate
    # tolerate float noise: 0.79 - 0.81 is -0.020000000000000018, yet it sits exactly at a 0.02 limit
    ok = math.isfinite(delta) and (
        delta >= -rule.max_regression or math.isclose(delta, -rule.max_regression, rel_tol=1e-9, abs_tol=1e-12)
    )
    op = ">=" if better_up else "<="
    limit = champion - rule.max_regression if better_up else champion + rule.max_regression
    return CheckResult(
        name=name,
        kind="champion",
        status="pass" if ok else "fail",
        value=candidate,
        threshold=(
            f"{op} {limit:.4f} (champion v{champion_version} = {champion:.4f}, max regression {rule.max_regression})"
        ),
        detail=f"improvement {delta:+.4f} over the champion on the same held-out rows",
    )


def behaviour_checks(model: Any, cases: pd.DataFrame, config: ModelConfig, source: str) -> list[CheckResult]:
    """One result per case row; a case needs ``expected`` or ``expected_min``/``expected_max``."""
    import numpy as np

    missing = [c for c in config.features.all if c not in cases.columns]
    if missing:
        raise ValueError(f"{source}: behaviour cases lack feature columns {missing}")
    if not {"expected", "expected_min", "expected_max"} & set(cases.columns):
        raise ValueError(f"{source}: behaviour cases need a column 'expected' or 'expected_min'/'expected_max'")
    if cases.empty:
        raise ValueError(f"{source}: behaviour cases file has no rows")
    scores, labels = _scores(model, cases[config.features.all], config.task)
    outputs = labels if labels is not None else scores
    results = []
    for i, row in enumerate(cases.to_dict("records")):
        label = str(row.get("case") or f"row {i + 1}")
        expected = row.get("expected")
        lo, hi = row.get("expected_min"), row.get("expected_max")
        checks, bounds = [], []
        if expected is not None and not _is_nan(expected):
            checks.append(float(outputs[i]) == float(expected))
            bounds.append(f"== {expected}")
        if lo is not None and not _is_nan(lo):
            checks.append(float(scores[i]) >= float(lo))
            bounds.append(f">= {lo}")
        if hi is not None and not _is_nan(hi):
            checks.append(float(scores[i]) <= float(hi))
            bounds.append(f"<= {hi}")
        if not checks:
            raise ValueError(f"{source}: case {label!r} has no expected value or bound")
        value = float(scores[i]) if (bounds and not bounds[0].startswith("==")) else float(outputs[i])
        results.append(
            CheckResult(
                name=f"behaviour:{label}",
                kind="behaviour",
                status="pass" if all(checks) and bool(np.isfinite(value)) else "fail",
                value=value,
                threshold=" and ".join(bounds),
            )
        )
    return results


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def slice_check(rule: SliceConfig, holdout: HoldOut, model: Any, task: str) -> CheckResult:
    """Spread of ``rule.metric`` over the groups of ``rule.column`` with at least ``min_rows`` rows."""
    import numpy as np

    scores, labels = _scores(model, holdout.x, task)
    groups = holdout.x[rule.column].astype(str).to_numpy()
    y = holdout.y.to_numpy()
    per_group: dict[str, float] = {}
    for group in sorted(set(groups)):
        mask = groups == group
        if mask.sum() < rule.min_rows:
            continue
        per_group[group] = compute_metric(rule.metric, y[mask], scores[mask], None if labels is None else labels[mask])
    name = f"slice:{rule.column}:{rule.metric}"
    if len(per_group) < 2:
        return CheckResult(
            name,
            "slice",
            "skipped",
            None,
            f"<= {rule.max_gap}",
            f"fewer than 2 groups with >= {rule.min_rows} held-out rows",
        )
    gap = float(max(per_group.values()) - min(per_group.values()))
    shown = ", ".join(f"{k}={v:.3f}" for k, v in per_group.items())
    return CheckResult(
        name, "slice", "pass" if np.isfinite(gap) and gap <= rule.max_gap else "fail", gap, f"<= {rule.max_gap}", shown
    )


def guarded(name: str, kind: Any, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """Run a check; any exception becomes an ``error`` result, which fails the gate (fail closed)."""
    try:
        return check()
    except Exception as exc:
        return [CheckResult(name, kind, "error", None, None, f"{type(exc).__name__}: {exc}")]


@dataclass
class GateInputs:
    """Everything the gate needs; models are anything with predict (and predict_proba for classifiers)."""

    config: ModelConfig
    holdout: HoldOut
    candidate: Any
    champion: Any | None = None
    champion_version: str | None = None
    behaviour_cases: Callable[[], tuple[pd.DataFrame, str]] | None = None


def _metric_on_holdout(model: Any, metric: str, inputs: GateInputs) -> float:
    scores, labels = _scores(model, inputs.holdout.x, inputs.config.task)
    return compute_metric(metric, inputs.holdout.y, scores, labels)


def _threshold_results(inputs: GateInputs) -> list[CheckResult]:
    rules = inputs.config.gates.thresholds
    metrics: dict[str, float] = {}

    def evaluate() -> list[CheckResult]:
        scores, labels = _scores(inputs.candidate, inputs.holdout.x, inputs.config.task)
        for name in sorted({r.metric for r in rules}):
            metrics[name] = compute_metric(name, inputs.holdout.y, scores, labels)
        return []

    results = guarded("evaluate:candidate", "gate", evaluate) if rules else []
    if results:  # the candidate could not be scored: every threshold is unknown, the gate fails
        unknown = "not evaluated: the candidate could not be scored"
        return results + [CheckResult(f"threshold:{r.metric}", "threshold", "error", detail=unknown) for r in rules]
    return [r for rule in rules for r in guarded(f"threshold:{rule.metric}", "threshold", partial(_one, rule, metrics))]


def _one(rule: ThresholdConfig, metrics: dict[str, float]) -> list[CheckResult]:
    return [threshold_check(metrics, rule)]


def _champion_results(inputs: GateInputs, rule: ChampionComparisonConfig) -> list[CheckResult]:
    def compare() -> list[CheckResult]:
        candidate = _metric_on_holdout(inputs.candidate, rule.metric, inputs)
        champion = None if inputs.champion is None else _metric_on_holdout(inputs.champion, rule.metric, inputs)
        return [champion_check(rule, candidate, champion, inputs.champion_version)]

    return guarded(f"champion:{rule.metric}", "champion", compare)


def _behaviour_results(inputs: GateInputs) -> list[CheckResult]:
    loader = inputs.behaviour_cases
    if loader is None:
        return [CheckResult("behaviour", "behaviour", "error", detail="behaviour cases not loaded")]

    def behaviour() -> list[CheckResult]:
        cases, source = loader()
        return behaviour_checks(inputs.candidate, cases, inputs.config, source)

    return guarded("behaviour", "behaviour", behaviour)


def _slice_results(inputs: GateInputs, rule: SliceConfig) -> list[CheckResult]:
    def check() -> list[CheckResult]:
        return [slice_check(rule, inputs.holdout, inputs.candidate, inputs.config.task)]

    return guarded(f"slice:{rule.column}:{rule.metric}", "slice", check)


def evaluate_gate(inputs: GateInputs, *, model: str, version: str | None, run_id: str | None) -> GateReport:
    """Evaluate every configured check. Never raises: errors are reported and fail the gate."""
    gates = inputs.config.gates
    report = GateReport(model=model, version=version, run_id=run_id)
    report.checks += _threshold_results(inputs)
    if gates.champion is not None:
        report.checks += _champion_results(inputs, gates.champion)
    if gates.behaviour is not None:
        report.checks += _behaviour_results(inputs)
    for rule in gates.slices:
        report.checks += _slice_results(inputs, rule)
    return report
