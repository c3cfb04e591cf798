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
from airflow_mlops.training.classes import ClassSet, same_label
from airflow_mlops.training.metrics import compute_metric, higher_is_better

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


#: The slice group of rows whose column is missing (e.g. an audit attribute nobody stated).
MISSING_GROUP = "(missing)"


@dataclass(frozen=True)
class HoldOut:
    """The held-out rows: the model's inputs ``x``, the truth ``y`` and, aligned with them, the ``audit``
    columns (``data.audit_columns``: in the data, never given to the model)."""

    x: pd.DataFrame
    y: pd.Series
    audit: pd.DataFrame | None = None

    def column(self, name: str) -> pd.Series:
        """A feature or audit column of the held-out rows (a feature wins)."""
        if name in self.x.columns:
            return self.x[name]
        if self.audit is not None and name in self.audit.columns:
            return self.audit[name]
        raise KeyError(f"held-out rows have no column {name!r} among the features or data.audit_columns")


def _classes(model: Any, config: ModelConfig) -> ClassSet | None:
    """A classifier's classes (its own ``classes_``, the config's positive class); ``None`` for a regressor."""
    from airflow_mlops.training.trainer import model_classes

    return model_classes(model, config) if config.task == "classification" else None


def _scores(model: Any, x: pd.DataFrame, config: ModelConfig) -> tuple[np.ndarray, np.ndarray | None]:
    from airflow_mlops.training.trainer import predict_scores

    scores, labels = predict_scores(model, x, config.task, _classes(model, config))
    return scores, labels


def _metric(model: Any, metric: str, x: pd.DataFrame, y: Any, config: ModelConfig) -> float:
    scores, labels = _scores(model, x, config)
    return compute_metric(metric, y, scores, labels, _classes(model, config))


def metric_on(model: Any, metric: str, x: pd.DataFrame, y: Any, config: ModelConfig) -> float:
    """``metric`` of ``model`` on rows ``x`` with truth ``y``."""
    return _metric(model, metric, x, y, config)


def group_labels(column: pd.Series) -> np.ndarray:
    """Each row's slice group as a string; a missing value is a group of its own, one name whatever the
    column's type (not "nan", "None", "<NA>")."""
    labels: np.ndarray = column.astype(object).where(column.notna(), MISSING_GROUP).astype(str).to_numpy()
    return labels


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


#: Columns of a behaviour-cases CSV that state what the model must answer.
BEHAVIOUR_COLUMNS = ("expected", "expected_not", "expected_min", "expected_max")


def behaviour_checks(model: Any, cases: pd.DataFrame, config: ModelConfig, source: str) -> list[CheckResult]:
    """One result per case row.

    A case states ``expected`` (the class, or a regressor's exact value), ``expected_not`` (a class the model
    must not answer), and/or ``expected_min``/``expected_max``: bounds on a regressor's value, or on the
    probability of the class in ``probability_of`` (default: the positive class with two classes, the
    ``expected`` class with more).
    """
    missing = [c for c in config.features.all if c not in cases.columns]
    if missing:
        raise ValueError(f"{source}: behaviour cases lack feature columns {missing}")
    if not set(BEHAVIOUR_COLUMNS) & set(cases.columns):
        raise ValueError(f"{source}: behaviour cases need a column {' or '.join(map(repr, BEHAVIOUR_COLUMNS))}")
    if "expected_not" in cases.columns and config.task != "classification":
        raise ValueError(f"{source}: 'expected_not' names a class; model {config.name!r} is a regressor")
    if cases.empty:
        raise ValueError(f"{source}: behaviour cases file has no rows")
    x = cases[config.features.all]
    if config.task != "classification":
        values = _scores(model, x, config)[0]
        return [_regression_case(i, row, float(values[i]), source) for i, row in enumerate(cases.to_dict("records"))]
    import numpy as np

    classes = _classes(model, config)
    assert classes is not None
    proba = np.asarray(model.predict_proba(x))
    labels = classes.labels(model.predict(x))
    return [
        _classification_case(i, row, labels[i], proba[i], classes, source)
        for i, row in enumerate(cases.to_dict("records"))
    ]


def _case_label(i: int, row: dict[str, Any]) -> str:
    return str(row.get("case") or f"row {i + 1}")


def _given(row: dict[str, Any], column: str) -> Any:
    value = row.get(column)
    return None if value is None or _is_nan(value) or (isinstance(value, str) and not value.strip()) else value


def _regression_case(i: int, row: dict[str, Any], value: float, source: str) -> CheckResult:
    label = _case_label(i, row)
    checks, bounds = [], []
    expected, lo, hi = _given(row, "expected"), _given(row, "expected_min"), _given(row, "expected_max")
    if expected is not None:
        checks.append(value == float(expected))
        bounds.append(f"== {expected}")
    more_checks, more_bounds = _within(value, lo, hi, "")
    checks += more_checks
    bounds += more_bounds
    if not checks:
        raise ValueError(f"{source}: case {label!r} has no expected value or bound")
    ok = all(checks) and math.isfinite(value)
    return CheckResult(f"behaviour:{label}", "behaviour", "pass" if ok else "fail", value, " and ".join(bounds))


def _named_class(row: dict[str, Any], column: str, classes: ClassSet, where: str) -> Any:
    """The class a case's ``column`` names (``None`` if empty); a name that is no class is an error."""
    value = _given(row, column)
    if value is None:
        return None
    found = classes.find(value)
    if found is None:
        raise ValueError(f"{where}: {column} {value!r} is not one of the model's classes {list(classes.classes)[:20]}")
    return found


def _classification_case(
    i: int, row: dict[str, Any], answered: Any, proba: Any, classes: ClassSet, source: str
) -> CheckResult:
    label = _case_label(i, row)
    where = f"{source}: case {label!r}"
    expected = _named_class(row, "expected", classes, where)
    unwanted = _named_class(row, "expected_not", classes, where)
    answer = answered.item() if hasattr(answered, "item") else answered
    checks, bounds = [], []
    if expected is not None:
        checks.append(same_label(answer, expected))
        bounds.append(f"== {expected!r}")
    if unwanted is not None:
        checks.append(not same_label(answer, unwanted))
        bounds.append(f"!= {unwanted!r}")
    value: float | str = (
        float(answer) if isinstance(answer, int | float) and not isinstance(answer, bool) else str(answer)
    )
    probability = _probability_bounds(row, proba, classes, expected, where)
    if probability is not None:
        value, ok, shown = probability
        checks += ok
        bounds += shown
    if not checks:
        raise ValueError(f"{where} has no expected class, expected_not or probability bound")
    return CheckResult(
        f"behaviour:{label}",
        "behaviour",
        "pass" if all(checks) and _all_finite(proba) else "fail",
        value,
        " and ".join(bounds),
        f"answered {answer!r}" if isinstance(value, float) else "",
    )


def _probability_bounds(
    row: dict[str, Any], proba: Any, classes: ClassSet, expected: Any, where: str
) -> tuple[float, list[bool], list[str]] | None:
    """``expected_min``/``expected_max`` on the probability of ``probability_of`` (default: the positive class
    with two classes, the expected class with more): the probability, the checks and their bounds."""
    lo, hi = _given(row, "expected_min"), _given(row, "expected_max")
    if lo is None and hi is None:
        return None
    of = _named_class(row, "probability_of", classes, where)
    if of is None:
        of = classes.positive if classes.binary else expected
    if of is None:
        raise ValueError(
            f"{where}: expected_min/expected_max bound a class's probability; with {len(classes.classes)} classes "
            "name the class in 'probability_of' (or 'expected')"
        )
    value = float(proba[classes.find_index(of)])
    return value, *_within(value, lo, hi, f"P({of!r}) ")


def _within(value: float, lo: Any, hi: Any, prefix: str) -> tuple[list[bool], list[str]]:
    """The checks of ``lo <= value <= hi`` (either bound may be ``None``) and how each reads (``P('a') >= 0.5``)."""
    checks, bounds = [], []
    if lo is not None:
        checks.append(value >= float(lo))
        bounds.append(f"{prefix}>= {lo}")
    if hi is not None:
        checks.append(value <= float(hi))
        bounds.append(f"{prefix}<= {hi}")
    return checks, bounds


def _all_finite(values: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(values, dtype=float)).all())


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def slice_check(rule: SliceConfig, holdout: HoldOut, model: Any, config: ModelConfig) -> CheckResult:
    """Spread of ``rule.metric`` over the groups of ``rule.column`` with at least ``min_rows`` rows."""
    import numpy as np

    scores, labels = _scores(model, holdout.x, config)
    classes = _classes(model, config)
    groups = group_labels(holdout.column(rule.column))
    y = holdout.y.to_numpy()
    per_group: dict[str, float] = {}
    for group in sorted(set(groups)):
        mask = groups == group
        if mask.sum() < rule.min_rows:
            continue
        per_group[group] = compute_metric(
            rule.metric, y[mask], scores[mask], None if labels is None else labels[mask], classes
        )
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
    return _metric(model, metric, inputs.holdout.x, inputs.holdout.y, inputs.config)


def _threshold_results(inputs: GateInputs) -> list[CheckResult]:
    rules = inputs.config.gates.thresholds
    metrics: dict[str, float] = {}

    def evaluate() -> list[CheckResult]:
        scores, labels = _scores(inputs.candidate, inputs.holdout.x, inputs.config)
        classes = _classes(inputs.candidate, inputs.config)
        for name in sorted({r.metric for r in rules}):
            metrics[name] = compute_metric(name, inputs.holdout.y, scores, labels, classes)
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


def classes_check(candidate: ClassSet, champion: ClassSet, champion_version: str | None, seen: Any) -> CheckResult:
    """The champion must know every class the candidate and the held-out rows have: a class it never saw
    cannot be compared (its answers can never be right) and means the problem changed — a human decides."""
    new = [c for c in (*candidate.classes, *seen) if champion.find(c) is None]
    new = list(dict.fromkeys(new))
    positive_moved = candidate.binary and champion.binary and candidate.positive != champion.positive
    name = "classes:champion"
    threshold = f"within champion v{champion_version}'s classes {list(champion.classes)[:20]}"
    if new:
        detail = (
            f"classes {new[:20]} are new: champion v{champion_version} never saw them; retire it or promote by hand"
        )
        return CheckResult(name, "classes", "fail", f"{len(new)} new", threshold, detail)
    if positive_moved:
        detail = f"positive class {candidate.positive!r}; champion v{champion_version}'s is {champion.positive!r}"
        return CheckResult(name, "classes", "fail", "positive class changed", threshold, detail)
    return CheckResult(name, "classes", "pass", f"{len(candidate.classes)} classes", threshold)


def _classes_results(inputs: GateInputs) -> list[CheckResult]:
    candidate, champion = _classes(inputs.candidate, inputs.config), _classes(inputs.champion, inputs.config)
    assert candidate is not None and champion is not None
    seen = candidate.labels(inputs.holdout.y.unique()).tolist()
    return [classes_check(candidate, champion, inputs.champion_version, seen)]


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
        return [slice_check(rule, inputs.holdout, inputs.candidate, inputs.config)]

    return guarded(f"slice:{rule.column}:{rule.metric}", "slice", check)


def evaluate_gate(inputs: GateInputs, *, model: str, version: str | None, run_id: str | None) -> GateReport:
    """Evaluate every configured check. Never raises: errors are reported and fail the gate."""
    gates = inputs.config.gates
    report = GateReport(model=model, version=version, run_id=run_id)
    if inputs.config.task == "classification" and inputs.champion is not None:
        report.checks += guarded("classes:champion", "classes", partial(_classes_results, inputs))
    report.checks += _threshold_results(inputs)
    if gates.champion is not None:
        report.checks += _champion_results(inputs, gates.champion)
    if gates.behaviour is not None:
        report.checks += _behaviour_results(inputs)
    for rule in gates.slices:
        report.checks += _slice_results(inputs, rule)
    report.checks += guarded("attributions", "gate", partial(_attributions, inputs, report))
    return report


def _attributions(inputs: GateInputs, report: GateReport) -> list[CheckResult]:
    """Evidence, not a verdict; but one that cannot be produced fails the gate like any other error."""
    from airflow_mlops.gates.attributions import explain

    report.attributions = explain(inputs.candidate, inputs.holdout, inputs.config)
    return []
