"""One monitoring window, as plain Python: hourly summaries in, a drift-and-performance decision out.

``<model>__monitor`` maps :func:`summarize_hour` over the hour partitions of the window and hands the
results to :func:`evaluate_window`; nothing reads the whole window a second time. Besides the PSI /
chi-square summary (merged exactly), each hour keeps two *samples* of its served rows, chosen by a
hash of the request id: the answers whose delayed labels the performance check joins, and the inputs
the evidently report compares with the reference. A row is in a sample when the hash of its request id
falls below the sample's rate; the rates come from the window's row count (read from the Parquet
footers by the plan), so the samples merged over all hours are a uniform sample of the window of the
expected size, and the whole window when it is smaller than the cap.

The decision (:class:`WindowEvaluation`) is what the operator records in MLflow and what
``emit_drift`` announces; the cooldown is the operator's (it needs the registry).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from airflow_mlops.vocabulary import SERVED_ROLES

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.config.schema import ModelConfig
    from airflow_mlops.monitoring.coverage import LabelCoverage
    from airflow_mlops.monitoring.drift import DriftReference

__all__ = [
    "PERFORMANCE_SAMPLE_ROWS",
    "PREDICTION_FEATURE",
    "REPORT_SAMPLE_ROWS",
    "SampleRates",
    "WindowEvaluation",
    "evaluate_window",
    "in_sample",
    "summarize_hour",
]

#: The model's served score (binary classifiers), predicted class (more classes: a categorical column) or
#: prediction (regressors), scored for drift like a feature.
PREDICTION_FEATURE: Final = "__prediction__"
#: Expected size of the window's sample of served answers joined with delayed labels.
PERFORMANCE_SAMPLE_ROWS: Final = 50_000
#: Expected size of the window's sample of served inputs for the evidently report (its ``max_rows``).
REPORT_SAMPLE_ROWS: Final = 5_000
_HASH_SPACE: Final = float(2**64)


@dataclass(frozen=True)
class SampleRates:
    """The share of the window's rows each sample keeps (1.0 = every row)."""

    performance: float = 1.0
    report: float = 1.0

    @classmethod
    def for_window(
        cls, rows: int, performance_rows: int = PERFORMANCE_SAMPLE_ROWS, report_rows: int = REPORT_SAMPLE_ROWS
    ) -> SampleRates:
        def rate(cap: int) -> float:
            return 1.0 if rows <= cap else cap / rows

        return cls(performance=rate(performance_rows), report=rate(report_rows))

    def to_dict(self) -> dict[str, float]:
        return {"performance": self.performance, "report": self.report}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SampleRates:
        data = data or {}
        rates = {key: float(data.get(key, 1.0)) for key in ("performance", "report")}
        bad = {key: value for key, value in rates.items() if not 0.0 < value <= 1.0}
        if bad:
            raise ValueError(f"sample rates {bad}: expected 0 < rate <= 1")
        return cls(**rates)


def in_sample(request_id: str, rate: float) -> bool:
    """Whether ``request_id`` falls in a sample of ``rate``: the same answer in every task and every run."""
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE < rate


def _served(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows the champion or canary answered without error (shadow answers reached no client)."""
    return rows[rows["role"].isin(SERVED_ROLES) & rows["error"].isna()]


def summarize_hour(
    rows: pd.DataFrame, config: ModelConfig, reference: DriftReference, rates: SampleRates
) -> dict[str, Any]:
    """One hour of traffic: drift summary against ``reference`` plus the performance and report samples.

    Returns a JSON-able mapping (the mapped task's XCom): ``rows``, ``summary`` (feature ->
    :class:`~airflow_mlops.monitoring.drift.ColumnSummary` dict), ``answers`` (``[request_id, output, version,
    {slice column: group}]`` of sampled served rows, ``output`` being the logged answer JSON; the groups of the
    ``gates.slices`` columns that are features, for label coverage) and ``inputs`` (sampled served inputs,
    feature -> value).
    """
    from airflow_mlops.monitoring.coverage import slice_groups
    from airflow_mlops.monitoring.drift import summarize
    from airflow_mlops.monitoring.window import served_predictions, window_columns

    columns: dict[str, Any] = window_columns(rows, config)
    if PREDICTION_FEATURE in reference:  # categorical: a classifier of more than two classes (its predicted class)
        columns[PREDICTION_FEATURE] = served_predictions(rows, PREDICTION_FEATURE in reference.categorical)
    summary = summarize(reference, columns)
    served = _served(rows)
    answered = served[served["output"].notna()]
    features = config.features.all
    slices = list(dict.fromkeys(rule.column for rule in config.gates.slices if rule.column in features))
    answers = [
        [str(rid), str(output), str(version), slice_groups(text, slices)]
        for rid, output, version, text in zip(
            answered["request_id"], answered["output"], answered["version"], answered["inputs"], strict=True
        )
        if in_sample(str(rid), rates.performance)
    ]
    inputs = []
    for rid, text in zip(served["request_id"], served["inputs"], strict=True):
        if in_sample(str(rid), rates.report):
            record = json.loads(text)
            inputs.append({name: record.get(name) for name in features})
    return {
        "rows": len(rows),
        "summary": {name: s.to_dict() for name, s in summary.items()},
        "answers": answers,
        "inputs": inputs,
    }


@dataclass
class WindowEvaluation:
    """The monitor's decision for one window (the ``evaluate_drift`` task's result, before recording)."""

    window: dict[str, str]
    rows: int
    champion: str
    scores: dict[str, Any]
    decision: dict[str, Any]
    performance: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    samples: dict[str, int] = field(default_factory=dict)
    #: Which sampled answers received a label (:class:`~airflow_mlops.monitoring.coverage.LabelCoverage`).
    coverage: dict[str, Any] | None = None

    @property
    def act(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "rows": self.rows,
            "champion": self.champion,
            "scores": self.scores,
            "decision": self.decision,
            "performance": self.performance,
            "act": self.act,
            "reasons": self.reasons,
            "samples": self.samples,
            "coverage": self.coverage,
        }


def hour_results(pulled: Any) -> list[Mapping[str, Any]]:
    """The mapped summaries as a list: one comes back as its value, several as a (lazy) sequence.

    A sequence is read with one slice: Airflow's lazy XCom sequence answers a slice in one request, while
    iterating asks item by item until the API answers 404, which Airflow logs as an error on every run.
    """
    if isinstance(pulled, Mapping):
        parts: list[Any] = [pulled]
    elif isinstance(pulled, Sequence) and not isinstance(pulled, str | bytes):
        parts = list(pulled[:])
    else:
        parts = list(pulled or [])
    bad = [type(part).__name__ for part in parts if part and not isinstance(part, Mapping)]
    if bad:
        raise ValueError(f"summaries: got {bad[0]}; expected the summarize task's mappings")
    return [part for part in parts if part]


def evaluate_window(
    plan: Mapping[str, Any], hours: Sequence[Mapping[str, Any]], config: ModelConfig, feedback: pd.DataFrame
) -> WindowEvaluation:
    """Merge the hours, score drift and prediction drift, check performance on the labelled sample, decide.

    :param plan: The window plan: ``start``, ``end``, ``champion``, ``champion_metric``, ``reference``, and
        ``classes`` (the champion's ``mlops.classes``; absent or ``None``: a regressor or a 0/1 classifier).
    :param hours: :func:`summarize_hour` results.
    :param feedback: The delayed labels that may belong to the window's answers (read once by the caller).
    """
    from airflow_mlops.monitoring.drift import ColumnSummary, DriftReference, decide, drift_scores, merge

    monitoring = config.monitoring
    reference = DriftReference.from_dict(plan["reference"])
    rows = sum(int(hour["rows"]) for hour in hours)
    per_feature = {k: v.model_dump() for k, v in monitoring.feature_thresholds.items()}
    default = monitoring.thresholds.model_dump()
    scores: dict[str, Any] = {}
    if rows == 0:
        decision: dict[str, Any] = {"dataset_drift": False, "message": "no served traffic in the window"}
    else:
        merged = merge({k: ColumnSummary.from_dict(v) for k, v in hour["summary"].items()} for hour in hours)
        feature_scores = drift_scores(reference, merged, thresholds=per_feature, default=default)
        decided = decide(feature_scores, per_feature, default, drifted_share=monitoring.drifted_share, drifted_at="act")
        scores = {name: score.to_dict() for name, score in feature_scores.items()}
        decision = decided.to_dict()
    answers = [answer for hour in hours for answer in hour.get("answers", [])]
    performance = _performance(answers, feedback, config, plan.get("champion_metric"), plan.get("classes"))
    coverage = _coverage(answers, feedback, config, plan.get("classes"))
    reasons = []
    if decision.get("dataset_drift"):
        reasons.append(f"dataset drift: {decision.get('message', '')}")
    if monitoring.prediction_drift and scores.get(PREDICTION_FEATURE, {}).get("status") == "act":
        reasons.append("prediction drift at act level")
    if performance["breached"]:
        reasons.append(f"performance {performance['metric']} {performance['value']} vs {performance['champion_eval']}")
    return WindowEvaluation(
        window={"start": str(plan["start"]), "end": str(plan["end"])},
        rows=rows,
        champion=str(plan["champion"]),
        scores=scores,
        decision=decision,
        performance=performance,
        reasons=reasons,
        samples={"answers": len(answers), "inputs": sum(len(hour.get("inputs", [])) for hour in hours)},
        coverage=None if coverage is None else coverage.to_dict(),
    )


def _coverage(
    answers: Sequence[Sequence[Any]], feedback: pd.DataFrame, config: ModelConfig, classes: str | None
) -> LabelCoverage | None:
    """Which of the sampled answers received a usable label (the first valid one per request)."""
    from airflow_mlops.monitoring.coverage import label_coverage, sampled_answer
    from airflow_mlops.monitoring.labels import usable_labels
    from airflow_mlops.training.classes import ClassSet

    if config.task == "classification":
        found = usable_labels(feedback, "classification", ClassSet.from_json(classes).classes)
    else:
        found = usable_labels(feedback, "regression")
    return label_coverage([sampled_answer(a) for a in answers], map(str, found.labels.index), config)


def report_inputs(hours: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The sampled served inputs of every hour (the evidently report's current data)."""
    return [dict(record) for hour in hours for record in hour.get("inputs", [])]


def _performance(
    answers: Sequence[Sequence[str]],
    feedback: pd.DataFrame,
    config: ModelConfig,
    champion_eval: float | None,
    classes: str | None = None,
) -> dict[str, Any]:
    import pandas as pd

    from airflow_mlops.monitoring.window import performance_on_labels
    from airflow_mlops.training.classes import ClassSet
    from airflow_mlops.training.metrics import higher_is_better

    metric = config.primary_metric
    if feedback.empty or not answers:
        return {"metric": metric, "value": None, "labelled": 0, "champion_eval": champion_eval, "breached": False}
    served = pd.DataFrame([answer[:2] for answer in answers], columns=["request_id", "output"])
    champion_classes = ClassSet.from_json(classes) if config.task == "classification" else None
    perf = performance_on_labels(served, feedback, metric, champion_eval, champion_classes)
    breached = perf.breached(
        config.monitoring.max_performance_drop, higher_is_better(metric), config.rollout.canary.min_labels
    )
    return {
        "metric": perf.metric,
        "value": perf.value,
        "labelled": perf.labelled,
        "champion_eval": perf.champion_eval,
        "breached": breached,
        "invalid_labels": perf.invalid_labels,
        "duplicate_labels": perf.duplicate_labels,
        "invalid_answers": perf.invalid_answers,
        "error": perf.error,
    }
