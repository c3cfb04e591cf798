"""A monitoring window recorded as an MLflow run, through an explicit ``MlflowClient``.

The run lives in the experiment ``airflow-mlops/<model>/monitoring`` (see
:mod:`airflow_mlops.monitoring.verdicts`, which reads it back) and carries: the tags ``Tag.MODEL``,
``Tag.CHAMPION``, the window bounds, ``Tag.DRIFT_ACT``; metrics per feature (``psi.<feature>``, ...), the
drifted share, live performance, label coverage (``label_coverage``, and per decision; ``Tag.FEEDBACK_WARNING``
when labels arrive for one decision only); ``drift/statistics.json`` (the whole evaluation). When evidently ran,
its HTML report, its verdict under our thresholds (``Tag.DRIFT_EVIDENTLY``, inside the statistics) and,
when the two verdicts differ, ``Tag.DRIFT_DISAGREEMENT``; otherwise ``Tag.DRIFT_REPORT_SKIPPED`` says why
there is no report. No fluent ``mlflow.*`` call: nothing depends on process-wide tracking URIs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlops.monitoring.verdicts import STATISTICS_ARTIFACT, monitoring_experiment
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops.monitoring.report import EvidentlyDrift

__all__ = ["EVIDENTLY_HTML", "compare_with_evidently", "record_window"]

EVIDENTLY_HTML = "drift/evidently_drift_report.html"
_SKIPPED_TEXT = "drift/evidently_report_skipped.txt"
_METRIC_KEYS = ("psi", "ks_statistic", "js_distance")
#: Decisions whose label coverage becomes a metric of its own (all are in ``drift/statistics.json``).
MAX_DECISION_METRICS = 20
_METRIC_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


def compare_with_evidently(result: Mapping[str, Any], evidently: EvidentlyDrift) -> str | None:
    """What evidently concluded differently from our statistics (``None`` when both agree).

    Compared: the dataset verdict, and which features each calls drifted (at ``psi_act``).
    """
    ours_dataset = bool(result["decision"].get("dataset_drift"))
    ours = {name for name, score in result["scores"].items() if score.get("status") == "act"}
    theirs = set(evidently.drifted)
    compared = set(evidently.psi)
    differences = []
    if ours_dataset != evidently.dataset_drift:
        differences.append(
            f"dataset drift: ours {str(ours_dataset).lower()}, evidently {str(evidently.dataset_drift).lower()}"
        )
    only_ours, only_theirs = sorted((ours & compared) - theirs), sorted(theirs - ours)
    if only_ours:
        differences.append(f"drifted only in ours: {', '.join(only_ours)}")
    if only_theirs:
        differences.append(f"drifted only in evidently's: {', '.join(only_theirs)}")
    return "; ".join(differences) or None


def _experiment_id(client: MlflowClient, model: str, artifact_root: str | None) -> str:
    name = monitoring_experiment(model)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    # like the model's experiment: under the connection's artifact_root, not the worker's cwd
    location = f"{artifact_root.rstrip('/')}/{model}-monitoring" if artifact_root else None
    return str(client.create_experiment(name, artifact_location=location, tags={Tag.MODEL: model}))


def _metrics(result: Mapping[str, Any]) -> dict[str, float]:
    metrics = {"rows": float(result["rows"])}
    for name, score in result["scores"].items():
        for key in _METRIC_KEYS:
            if score.get(key) is not None:
                metrics[f"{key}.{name.strip('_')}"] = float(score[key])
    if result["decision"].get("share") is not None:
        metrics["drifted_share"] = float(result["decision"]["share"])
    performance = result["performance"]
    if performance.get("value") is not None:
        metrics[f"live_{performance['metric']}"] = float(performance["value"])
    coverage = result.get("coverage")
    if coverage:
        metrics["label_coverage"] = float(coverage["coverage"])
        kind = coverage.get("decision_kind", "class")
        decisions = coverage.get("by_decision", {})
        # the most answered decisions only: MLflow takes at most 1000 metrics in one batch
        shown = sorted(decisions, key=lambda k: (-decisions[k]["answered"], k))[:MAX_DECISION_METRICS]
        for key in shown:
            if _METRIC_NAME.fullmatch(f"{kind}.{key}"):  # a class named so MLflow takes it as a metric key
                metrics[f"label_coverage.{kind}.{key}"] = float(decisions[key]["coverage"])
    return metrics


def record_window(
    client: MlflowClient,
    model: str,
    result: dict[str, Any],
    *,
    artifact_root: str | None = None,
    evidently: EvidentlyDrift | None = None,
    skipped: str | None = None,
) -> tuple[str, str]:
    """Create the monitoring run of one window; returns ``(run_id, artifact folder of the drift files)``.

    ``result`` is the window's evaluation (:meth:`WindowEvaluation.to_dict`); evidently's verdict and
    any disagreement are added to it before it is stored. The run ends ``FAILED`` if recording breaks
    half-way, so a reader never takes a partial run for a verdict.
    """
    from mlflow.entities import Metric

    window = result["window"]
    tags = {
        Tag.MODEL: model,
        Tag.CHAMPION: str(result["champion"]),
        Tag.WINDOW_START: window["start"],
        Tag.WINDOW_END: window["end"],
        Tag.DRIFT_ACT: str(bool(result["act"])).lower(),
    }
    if evidently is not None:
        result["evidently"] = evidently.to_dict()
        result["disagreement"] = compare_with_evidently(result, evidently)
        tags[Tag.DRIFT_EVIDENTLY] = "drift" if evidently.dataset_drift else "no_drift"
        if result["disagreement"]:
            tags[Tag.DRIFT_DISAGREEMENT] = result["disagreement"][:5000]
    elif skipped is not None:  # the run says why it has no report; our statistics decided anyway
        tags[Tag.DRIFT_REPORT_SKIPPED] = skipped[:5000]
    warnings = (result.get("coverage") or {}).get("warnings") or []
    if warnings:
        tags[Tag.FEEDBACK_WARNING] = "; ".join(warnings)[:5000]
    run = client.create_run(
        _experiment_id(client, model, artifact_root), run_name=f"monitor-{window['end']}", tags=tags
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(key, value, now, 0) for key, value in _metrics(result).items()])
        client.log_text(run_id, json.dumps(result, indent=2, default=str), STATISTICS_ARTIFACT)
        if evidently is not None:
            client.log_text(run_id, evidently.html.read_text(), EVIDENTLY_HTML)
        elif skipped is not None:
            client.log_text(run_id, skipped + "\n", _SKIPPED_TEXT)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id, f"{run.info.artifact_uri}/drift"
