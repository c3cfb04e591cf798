"""The gate's checks as plain functions over held-out data and models, and the fail-closed runner."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import (
    BehaviourConfig,
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
    ok = math.isfinite(delta) and delta >= -rule.max_regression
    op = ">=" if better_up else "<="
    limit = champion - rule.max_regression if better_up else champion + rule.max_regression
    return CheckResult(
        name=name,
        kind="champion",
        status="pass" if ok else "fail",
        value=candidate,
        threshold=f"{op} {limit:.4f} (champion v{champion_version} = {champion:.4f}, max regression {rule.max_regression})",
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
        return CheckResult(name, "slice", "skipped", None, f"<= {rule.max_gap}",
                           f"fewer than 2 groups with >= {rule.min_rows} held-out rows")
    gap = float(max(per_group.values()) - min(per_group.values()))
    shown = ", ".join(f"{k}={v:.3f}" for k, v in per_group.items())
    return CheckResult(
        name, "slice", "pass" if np.isfinite(gap) and gap <= rule.max_gap else "fail", gap, f"<= {rule.max_gap}", shown
    )


def guarded(name: str, kind: Any, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """Run a check; any exception becomes an ``error`` result, which fails the gate (fail closed)."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - fail closed on anything
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


def evaluate_gate(inputs: GateInputs, *, model: str, version: str | None, run_id: str | None) -> GateReport:
    """Evaluate every configured check. Never raises: errors are reported and fail the gate."""
    cfg = inputs.config
    gates = cfg.gates
    report = GateReport(model=model, version=version, run_id=run_id)
    metrics: dict[str, float] = {}

    def candidate_metrics() -> list[CheckResult]:
        scores, labels = _scores(inputs.candidate, inputs.holdout.x, cfg.task)
        for name in sorted({*cfg.metrics, *(t.metric for t in gates.thresholds)}):
            metrics[name] = compute_metric(name, inputs.holdout.y, scores, labels)
        return []

    report.checks += guarded("evaluate:candidate", "gate", candidate_metrics)
    for rule in gates.thresholds:
        report.checks += guarded(f"threshold:{rule.metric}", "threshold", lambda r=rule: [threshold_check(metrics, r)])
    if gates.champion is not None:
        rule_c = gates.champion

        def compare() -> list[CheckResult]:
            cand_scores, cand_labels = _scores(inputs.candidate, inputs.holdout.x, cfg.task)
            candidate = compute_metric(rule_c.metric, inputs.holdout.y, cand_scores, cand_labels)
            champion = None
            if inputs.champion is not None:
                champ_scores, champ_labels = _scores(inputs.champion, inputs.holdout.x, cfg.task)
                champion = compute_metric(rule_c.metric, inputs.holdout.y, champ_scores, champ_labels)
            return [champion_check(rule_c, candidate, champion, inputs.champion_version)]

        report.checks += guarded(f"champion:{rule_c.metric}", "champion", compare)
    if gates.behaviour is not None:
        loader = inputs.behaviour_cases
        if loader is None:
            report.checks.append(CheckResult("behaviour", "behaviour", "error", detail="behaviour cases not loaded"))
        else:

            def behaviour() -> list[CheckResult]:
                cases, source = loader()
                return behaviour_checks(inputs.candidate, cases, cfg, source)

            report.checks += guarded("behaviour", "behaviour", behaviour)
    for rule_s in gates.slices:
        report.checks += guarded(
            f"slice:{rule_s.column}:{rule_s.metric}",
            "slice",
            lambda r=rule_s: [slice_check(r, inputs.holdout, inputs.candidate, cfg.task)],
        )
    return report


__all__ = [
    "BehaviourConfig",
    "GateInputs",
    "HoldOut",
    "behaviour_checks",
    "champion_check",
    "evaluate_gate",
    "guarded",
    "slice_check",
    "threshold_check",
]
