"""Which served answers ever receive a label: coverage per version, decision and slice group, and a warning
when labels arrive for one decision only.

Delayed labels usually come from a process the model itself steers: only the transactions it flagged are
reviewed, only the tickets it routed to a team get a verdict. The live metric is then measured on a sample
the model chose, and a model that wrongly lets cases through is never shown its mistakes (a hidden feedback
loop). The monitor therefore reports, for the window's sampled answers, the share that received a usable
label — per version, per *decision* (a classifier's predicted class; a regressor's prediction quartile) and
per group of each ``gates.slices`` column that is a feature (audit columns never reach the gateway) — and
warns when one decision is labelled and another, answered often enough, is not (or far less often).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops.config.schema import ModelConfig

#: Longest slice-group name kept from a logged input (the rest is cut).
MAX_GROUP_TEXT = 200

__all__ = ["Coverage", "LabelCoverage", "Sampled", "label_coverage", "sampled_answer", "slice_groups"]


@dataclass(frozen=True)
class Coverage:
    """How many sampled answers a group has, and how many of them received a usable label."""

    answered: int
    labelled: int

    @property
    def share(self) -> float:
        return self.labelled / self.answered if self.answered else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"answered": self.answered, "labelled": self.labelled, "coverage": round(self.share, 6)}


@dataclass(frozen=True)
class Sampled:
    """One sampled served answer: its request, logged answer JSON, version, and its slice groups."""

    request_id: str
    output: str
    version: str = ""
    groups: Mapping[str, str] = field(default_factory=dict)


def sampled_answer(item: Sequence[Any]) -> Sampled:
    """A ``summarize_hour`` answer entry: ``[request_id, output]`` (before coverage was recorded) or
    ``[request_id, output, version, {slice column: group}]``."""
    request_id, output = str(item[0]), str(item[1])
    version = str(item[2]) if len(item) > 2 and item[2] is not None else ""
    groups = item[3] if len(item) > 3 and isinstance(item[3], Mapping) else {}
    return Sampled(request_id, output, version, {str(k): str(v) for k, v in groups.items()})


@dataclass
class LabelCoverage:
    overall: Coverage
    by_version: dict[str, Coverage] = field(default_factory=dict)
    #: ``"class"`` (classifiers: the predicted class) or ``"quartile"`` (regressors: of the prediction).
    decision_kind: str = "class"
    by_decision: dict[str, Coverage] = field(default_factory=dict)
    by_slice: dict[str, dict[str, Coverage]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.overall.to_dict(),
            "by_version": {k: v.to_dict() for k, v in self.by_version.items()},
            "decision_kind": self.decision_kind,
            "by_decision": {k: v.to_dict() for k, v in self.by_decision.items()},
            "by_slice": {c: {g: v.to_dict() for g, v in groups.items()} for c, groups in self.by_slice.items()},
            "warnings": self.warnings,
        }


def _count(keys: Iterable[str], labelled: Iterable[bool]) -> dict[str, Coverage]:
    answered: dict[str, int] = {}
    hits: dict[str, int] = {}
    for key, hit in zip(keys, labelled, strict=True):
        answered[key] = answered.get(key, 0) + 1
        hits[key] = hits.get(key, 0) + int(hit)
    return {key: Coverage(answered[key], hits[key]) for key in sorted(answered)}


def _decision(output: str, task: str) -> str | float | None:
    """A classifier's predicted class as its key, a regressor's prediction; ``None`` when the answer has none."""
    from airflow_mlops.monitoring.window import class_label
    from airflow_mlops.prediction_log.records import finite_number, logged_answer

    prediction = logged_answer(output).get("prediction")
    if prediction is None:
        return None
    # a class as prediction drift names it (1.0 is the class 1); a list or NaN is no decision
    return class_label(prediction) if task == "classification" else finite_number(prediction)


def _quartiles(values: list[float]) -> list[str]:
    """Each prediction's quartile of the window's predictions (``q1`` lowest .. ``q4`` highest). Ties fall in
    the lower bin, so predictions with few distinct values fill fewer (and uneven) quartiles."""
    import numpy as np

    edges = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return [f"q{int(np.searchsorted(edges, v, side='left')) + 1}" for v in values]


def _warnings(by_decision: Mapping[str, Coverage], kind: str, min_answers: int, max_ratio: float) -> list[str]:
    """One-sided feedback: a decision answered at least ``min_answers`` times with no label (or a coverage
    ``max_ratio`` times lower) while another decision — however rare, flagged cases often are — is labelled."""
    labelled = {k: c for k, c in by_decision.items() if c.labelled}
    if not labelled:
        return []
    best_key, best = max(labelled.items(), key=lambda item: (item[1].share, item[0]))
    found = []
    for key, c in by_decision.items():
        if key == best_key or c.answered < min_answers:
            continue
        if c.labelled == 0 or best.share / c.share > max_ratio:
            found.append(
                f"labels arrive for {c.share:.1%} of {c.answered} answers with {kind} {key!r} but for "
                f"{best.share:.1%} of those with {kind} {best_key!r}: the live metric is measured mostly on what "
                "the model flagged (a hidden feedback loop?)"
            )
    return found


def label_coverage(
    answers: Sequence[Sampled], labelled_ids: Iterable[str], config: ModelConfig
) -> LabelCoverage | None:
    """Label coverage of the window's sampled served answers; ``None`` when there are none."""
    if not answers:
        return None
    labels = set(labelled_ids)
    hit = [a.request_id in labels for a in answers]
    settings = config.monitoring.label_coverage
    by_version = _count((a.version or "?" for a in answers), hit)
    decisions = [_decision(a.output, config.task) for a in answers]
    known = [(d, h) for d, h in zip(decisions, hit, strict=True) if d is not None]
    kind = "class" if config.task == "classification" else "quartile"
    if kind == "class":
        by_decision = _count((str(d) for d, _ in known), (h for _, h in known))
    else:
        values = [float(d) for d, _ in known]  # type: ignore[arg-type]
        by_decision = _count(_quartiles(values), (h for _, h in known)) if values else {}
    by_slice: dict[str, dict[str, Coverage]] = {}
    for column in dict.fromkeys(rule.column for rule in config.gates.slices if rule.column in config.features.all):
        keyed = [(a.groups[column], h) for a, h in zip(answers, hit, strict=True) if column in a.groups]
        if keyed:
            groups = _count((g for g, _ in keyed), (h for _, h in keyed))
            largest = sorted(groups, key=lambda g: (-groups[g].answered, g))[: settings.max_groups]
            by_slice[column] = {g: groups[g] for g in sorted(largest)}
    warnings = _warnings(by_decision, kind, settings.min_answers, settings.max_ratio)
    return LabelCoverage(
        overall=Coverage(len(answers), sum(hit)),
        by_version=by_version,
        decision_kind=kind,
        by_decision=by_decision,
        by_slice=by_slice,
        warnings=warnings,
    )


def slice_groups(inputs: str | None, columns: Sequence[str]) -> dict[str, str]:
    """The slice group of each of ``columns`` in one logged input record (its JSON text): missing is
    ``(missing)``, as the gate names it; an unreadable record has none."""
    from airflow_mlops.gates.checks import MISSING_GROUP

    if not columns or not inputs:
        return {}
    try:
        record = json.loads(inputs)
    except (TypeError, ValueError):
        return {}
    if not isinstance(record, Mapping):
        return {}
    groups = {}
    for column in columns:
        value = record.get(column)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        # as the gate names its groups; a client's value is cut, so one request cannot bloat the hour's summary
        groups[column] = MISSING_GROUP if missing else str(value)[:MAX_GROUP_TEXT]
    return groups
