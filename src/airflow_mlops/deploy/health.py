"""Shadow comparison and canary health from prediction-log rows: plain functions, decisions from config.

Rows are the prediction log's columns (request_id, ts, model, version, role, inputs, output,
latency_ms, error). Outputs are JSON objects with ``prediction``, and for classifiers ``score`` (two classes:
the positive class's probability) or ``probabilities`` (more classes: class key -> probability), as
:meth:`~airflow_mlops.training.classes.ClassSet.answers` writes them. A classifier's answers are scored with
its version's :class:`~airflow_mlops.training.classes.ClassSet`; the log is read as hostile input (an answer
that is not this model's is an error of the check, never a pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import CanaryConfig, ShadowConfig
from airflow_mlops.monitoring.labels import LabelSet, task_of_metric, usable_labels
from airflow_mlops.prediction_log.records import finite_number, logged_answer
from airflow_mlops.training.classes import LEGACY, ClassSet
from airflow_mlops.training.metrics import compute_metric, higher_is_better
from airflow_mlops.vocabulary import Role, Tag

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ShadowStats:
    pairs: int
    agreement: float | None
    mean_abs_delta: float | None
    shadow_requests: int
    shadow_error_rate: float
    shadow_latency_p95_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CanaryStats:
    requests: int
    errors: int
    error_rate: float
    latency_p95_ms: float | None
    labelled: int = 0
    champion_labelled: int = 0
    metric: str | None = None
    canary_metric: float | None = None
    champion_metric: float | None = None
    #: Labels left out: not a valid answer for the task, or a later label of an already labelled request.
    invalid_labels: int = 0
    duplicate_labels: int = 0
    #: Why the label metric could not be computed on enough labels (fails the step: fail closed).
    metric_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def _p95(values: Any) -> float | None:
    import numpy as np

    array = np.asarray(values, dtype=float)
    return float(np.percentile(array, 95)) if array.size else None


def answer_distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> float | None:
    """How far apart two answers to one request are; ``None`` when they cannot be compared.

    Classifiers: the total-variation distance between the two probability vectors, ``0.5 * sum |p - q|``
    (``probabilities``: over the union of classes, a class one answer lacks having probability 0), which for
    two classes (``score``) is ``|p - q|``. Regressors: ``|prediction_a - prediction_b|``. Answers of different
    shapes (a binary and a multiclass version), or lacking a number, are not compared.
    """
    if "probabilities" in a or "probabilities" in b:
        p, q = a.get("probabilities"), b.get("probabilities")
        if not isinstance(p, dict) or not isinstance(q, dict):
            return None
        total = 0.0
        for key in {*p, *q}:
            x, y = finite_number(p.get(key, 0.0)), finite_number(q.get(key, 0.0))
            if x is None or y is None:
                return None
            total += abs(x - y)
        return 0.5 * total
    if "score" in a or "score" in b:
        x, y = finite_number(a.get("score")), finite_number(b.get("score"))
    else:
        x, y = finite_number(a.get("prediction")), finite_number(b.get("prediction"))
    return None if x is None or y is None else abs(x - y)


def shadow_stats(rows: pd.DataFrame, champion: str, shadow: str) -> ShadowStats:
    """Pair shadow rows with the champion's answer to the same request id.

    ``agreement``: the share of pairs answering the same prediction (the class, for classifiers);
    ``mean_abs_delta``: the mean :func:`answer_distance` over the pairs that can be compared.
    """
    champ = rows[(rows["role"] == Role.CHAMPION) & (rows["version"] == champion) & rows["error"].isna()]
    shad = rows[(rows["role"] == Role.SHADOW) & (rows["version"] == shadow)]
    errors = int(shad["error"].notna().sum())
    ok = shad[shad["error"].isna()]
    merged = ok.merge(champ, on="request_id", suffixes=("_shadow", "_champion"))
    agreement = delta = None
    if len(merged):
        pairs = [
            (logged_answer(a), logged_answer(b))
            for a, b in zip(merged["output_shadow"], merged["output_champion"], strict=True)
        ]
        same = [a.get("prediction") == b.get("prediction") for a, b in pairs]
        agreement = sum(same) / len(same)
        deltas = [d for d in (answer_distance(a, b) for a, b in pairs) if d is not None]
        delta = sum(deltas) / len(deltas) if deltas else None
    return ShadowStats(
        pairs=len(merged),
        agreement=agreement,
        mean_abs_delta=delta,
        shadow_requests=len(shad),
        shadow_error_rate=errors / len(shad) if len(shad) else 0.0,
        shadow_latency_p95_ms=_p95(ok["latency_ms"]),
    )


def decide_shadow(stats: ShadowStats, config: ShadowConfig) -> Decision:
    reasons = []
    if stats.shadow_requests < config.min_requests:
        reasons.append(f"only {stats.shadow_requests} shadow requests (< min_requests {config.min_requests})")
    if stats.shadow_error_rate > config.max_error_rate:
        reasons.append(f"shadow error rate {stats.shadow_error_rate:.4f} > {config.max_error_rate}")
    if stats.agreement is None:
        reasons.append("no shadow answer could be paired with a champion answer")
    elif stats.agreement < config.min_agreement:
        reasons.append(f"agreement with champion {stats.agreement:.4f} < {config.min_agreement}")
    if stats.shadow_latency_p95_ms is not None and stats.shadow_latency_p95_ms > config.max_latency_p95_ms:
        reasons.append(f"shadow latency p95 {stats.shadow_latency_p95_ms:.1f} ms > {config.max_latency_p95_ms} ms")
    return Decision(passed=not reasons, reasons=reasons)


def canary_stats(
    rows: pd.DataFrame,
    feedback: pd.DataFrame | None,
    canary: str,
    champion: str,
    metric: str | None,
    *,
    classes: Mapping[str, ClassSet | None] | None = None,
) -> CanaryStats:
    """Error rate and latency of the canary; with labels, ``metric`` for canary and champion on their rows.

    :param classes: Each version's classes (version -> its ``mlops.classes``, ``None`` for one that records
        none). A classifier's answers are scored with its own version's classes; labels must be the champion's
        classes (what the gateway's ``/feedback`` accepts). Without them (or for a version left out) a version
        whose answers are 0/1 is scored as the 0/1 models of before classes were recorded; any other fails the
        label check (:attr:`CanaryStats.metric_error`), since its classes cannot be guessed from its answers.
    """
    mine = rows[(rows["role"] == Role.CANARY) & (rows["version"] == canary)]
    errors = int(mine["error"].notna().sum())
    stats = CanaryStats(
        requests=len(mine),
        errors=errors,
        error_rate=errors / len(mine) if len(mine) else 0.0,
        latency_p95_ms=_p95(mine.loc[mine["error"].isna(), "latency_ms"]),
        metric=metric,
    )
    if metric is None or feedback is None or feedback.empty:
        return stats
    task = task_of_metric(metric)
    parts = {
        role: rows[(rows["role"] == role) & (rows["version"] == version) & rows["error"].isna()]
        for role, version in ((Role.CANARY, canary), (Role.CHAMPION, champion))
    }
    versions = {Role.CANARY: canary, Role.CHAMPION: champion}
    known: dict[str, ClassSet | None] = {}
    failures: list[str] = []
    if task == "classification":
        for role, version in versions.items():
            known[role], problem = _classes_of(version, parts[role]["output"], classes)
            if problem:
                failures.append(f"{role} v{version}: {problem}")
    judge = known.get(Role.CHAMPION)
    if task == "classification" and judge is None:  # labels cannot be checked: counted, the check fails closed
        found = _unchecked_labels(feedback)
    else:
        found = usable_labels(feedback, task, judge.classes if judge is not None else LEGACY.classes)
    labels = found.labels
    values: dict[str, float | None] = {Role.CANARY: None, Role.CHAMPION: None}
    counts: dict[str, int] = {}
    for role, version in versions.items():
        part = parts[role][parts[role]["request_id"].isin(labels.index)]
        counts[role] = len(part)
        if task == "classification" and (judge is None or known[role] is None):
            continue
        values[role], error = _label_metric(
            metric, labels.loc[part["request_id"]].to_numpy(), part["output"], known.get(role)
        )
        if error:
            failures.append(f"{role} v{version}: {error}")
    return CanaryStats(
        **{
            **stats.to_dict(),
            "labelled": counts[Role.CANARY],
            "champion_labelled": counts[Role.CHAMPION],
            "canary_metric": values[Role.CANARY],
            "champion_metric": values[Role.CHAMPION],
            "invalid_labels": found.invalid,
            "duplicate_labels": found.duplicates,
            "metric_error": "; ".join(failures) or None,
        }
    )


def classes_by_version(texts: Mapping[str, str | None] | None) -> dict[str, ClassSet | None]:
    """:func:`canary_stats`'s ``classes`` from each version's ``mlops.classes`` text (``None``: none recorded).

    :raises ValueError: a text is not a class set (a tag edited by hand).
    """
    return {str(version): ClassSet.from_json(text) if text else None for version, text in (texts or {}).items()}


def _unchecked_labels(feedback: pd.DataFrame) -> LabelSet:
    """The requests that have a label, unchecked (the classes to check them against are unknown): only counted."""
    import pandas as pd

    first = feedback.drop_duplicates("request_id", keep="first")
    ids = [str(request_id) for request_id in first["request_id"]]
    return LabelSet(pd.Series([None] * len(ids), index=ids, dtype=object), duplicates=len(feedback) - len(first))


def _classes_of(
    version: str, outputs: pd.Series, classes: Mapping[str, ClassSet | None] | None
) -> tuple[ClassSet | None, str | None]:
    """``version``'s classes: given, or (none given) the 0/1 of before classes were recorded when its answers
    fit them; ``(None, why)`` when they do not (its classes are unknown: the label check fails)."""
    given = classes.get(version) if classes is not None else None
    if given is not None:
        return given, None
    answers = [logged_answer(o) for o in outputs]
    if all("score" in a and LEGACY.find(a.get("prediction")) is not None for a in answers):
        return LEGACY, None
    return None, (
        "its classes are not known to the health check (it answers other than 0/1) and cannot be guessed "
        f"from its answers; pass its {Tag.CLASSES} tag"
    )


def _label_metric(
    metric: str, y: Any, outputs: pd.Series, classes: ClassSet | None = None
) -> tuple[float | None, str | None]:
    """``(value, None)``; ``(None, None)`` while the labels cannot define it yet (none, or too few classes for
    AUC); ``(None, why)`` when it fails on labels that should define it (the step then fails)."""
    if len(y) == 0:
        return None, None
    if classes is not None and metric.startswith("roc_auc"):
        present = {classes.find(v) for v in y} - {None}
        if len(present) < (2 if classes.binary else len(classes.classes)):
            return None, None
    try:
        if classes is None:  # regression: the answers' predictions
            scores, hard = _scores(outputs), None
        else:
            answers = [logged_answer(o) for o in outputs]
            scores = classes.scores(answers)
            hard = _hard(answers, classes)
        value = compute_metric(metric, y, scores, hard, classes)
    except (ValueError, TypeError, KeyError) as exc:
        return None, f"{metric} could not be computed on {len(y)} labels: {str(exc)[:300]}"
    if not math.isfinite(value):
        return None, f"{metric} is {value} on {len(y)} labels"
    return value, None


def _hard(answers: list[dict[str, Any]], classes: ClassSet) -> Any:
    """The answers' predicted classes; a prediction that is not one of ``classes`` is not this model's answer."""
    found = [classes.find(a.get("prediction")) for a in answers]
    bad = [a.get("prediction") for a, c in zip(answers, found, strict=True) if c is None]
    if bad:
        raise ValueError(f"answers predict {bad[:3]!r}, not one of the classes {list(classes.classes)[:20]}")
    return classes.labels(found)


def _scores(outputs: pd.Series) -> Any:
    import numpy as np

    values = [finite_number(logged_answer(o).get("prediction")) for o in outputs]
    if any(v is None for v in values):
        raise ValueError("an answer has no numeric prediction")
    return np.asarray(values, dtype=float)


def decide_canary(stats: CanaryStats, config: CanaryConfig, *, final: bool = True) -> Decision:
    """A breach of any limit fails the step. Before the step's end (``final=False``) error rate and latency
    are judged only once the canary has ``min_requests`` answers, so one early error is not a rollback."""
    reasons: list[str] = []
    if not final and stats.requests < config.min_requests:
        return Decision(passed=True, reasons=reasons)
    if stats.error_rate > config.max_error_rate:
        reasons.append(f"canary error rate {stats.error_rate:.4f} > {config.max_error_rate} ({stats.errors} errors)")
    if stats.latency_p95_ms is not None and stats.latency_p95_ms > config.max_latency_p95_ms:
        reasons.append(f"canary latency p95 {stats.latency_p95_ms:.1f} ms > {config.max_latency_p95_ms} ms")
    enough = min(stats.labelled, stats.champion_labelled) >= config.min_labels
    if stats.metric and enough and stats.metric_error:
        reasons.append(f"canary label check failed: {stats.metric_error}")
    if stats.metric and enough and stats.canary_metric is not None and stats.champion_metric is not None:
        sign = 1.0 if higher_is_better(stats.metric) else -1.0
        drop = sign * (stats.champion_metric - stats.canary_metric)
        if math.isfinite(drop) and drop > config.max_metric_regression + 1e-12:  # float noise at the limit
            reasons.append(
                f"canary {stats.metric} {stats.canary_metric:.4f} trails champion {stats.champion_metric:.4f} "
                f"by more than {config.max_metric_regression}"
            )
    return Decision(passed=not reasons, reasons=reasons)
