"""Operators of ``<model>__monitor``: plan the window, summarize each hour (mapped), decide, emit drift.

The reference (the champion's training data, found by its fingerprint) is summarized once in
``plan_window``; each hour partition of the prediction log is summarized by one mapped task; the
summaries are added together (exactly the single-pass PSI and chi-square) in ``evaluate_drift``,
which also checks performance on delayed labels, stores our statistics (JSON) and evidently's
HTML report in an MLflow monitoring run, and decides. The report is optional (``[reports]`` extra):
without it the run carries ``Tag.DRIFT_REPORT_SKIPPED`` and ``drift/evidently_report_skipped.txt``.
``emit_drift`` announces ``mlops://<model>/drift`` unless the cooldown holds it back (then the
decision is recorded only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import parse_duration
from airflow_mlops.monitoring.verdicts import STATISTICS_ARTIFACT, monitoring_experiment
from airflow_mlops.operators.rollout import RolloutBaseOperator
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from airflow.sdk import Context

PREDICTION_FEATURE = "__prediction__"
PARAM_WINDOW_END = "window_end"
PLAN_KEY = "plan"


class PlanMonitoringWindowOperator(RolloutBaseOperator):
    """Fix the window, list its hour partitions, and summarize the reference once for all mapped tasks."""

    def execute(self, context: Context) -> list[list[str]]:
        """Returns the hour groups to map over; the plan (window, reference) goes to XCom key ``plan``."""
        import mlflow
        import numpy as np

        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.monitoring.drift import build_reference
        from airflow_mlops.monitoring.window import champion_reference, reference_columns
        from airflow_mlops.prediction_log import hour_partitions

        cfg = self.loaded.config
        params = context.get("params") or {}
        end = datetime.fromisoformat(params[PARAM_WINDOW_END]) if params.get(PARAM_WINDOW_END) else _now()
        start = end - parse_duration(cfg.monitoring.window)
        storage = prediction_log_storage(*self.log_location)
        with self.hook.activate() as client:
            reference = champion_reference(client, cfg)
            columns = reference_columns(reference, cfg)
            run = client.get_run(str(client.get_model_version(cfg.name, reference.version).run_id))
            holdout = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/evaluation/holdout_predictions.csv")
        scores = np.loadtxt(holdout.splitlines()[1:], delimiter=",", usecols=2, ndmin=1)
        if cfg.monitoring.prediction_drift:
            columns[PREDICTION_FEATURE] = scores
        drift_reference = build_reference(columns, categorical=cfg.features.categorical)
        groups = hour_partitions(storage, cfg.name, start, end)
        self.log.info(
            "Window %s .. %s: %d hour partitions; reference = %s v%s",
            start,
            end,
            len(groups),
            reference.data_uri,
            reference.version,
        )
        plan = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "champion": reference.version,
            "champion_run_id": run.info.run_id,
            "champion_metric": run.data.metrics.get(cfg.primary_metric),
            "reference_uri": reference.data_uri,
            "reference": drift_reference.to_dict(),
        }
        context["ti"].xcom_push(key=PLAN_KEY, value=plan)
        return groups or [[]]


def _now() -> datetime:
    return datetime.now(UTC)


def _mapping(task_id: str, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{task_id}: {field}: got {type(value).__name__}; expected the plan_window task's plan")
    return value


class SummarizePartitionOperator(RolloutBaseOperator):
    """Summarize one hour of served traffic against the reference (mapped over the window's hours).

    :param paths: The part files of one hour partition (templated; mapped).
    :param plan: The window plan (``XComArg(plan_window, key="plan")``): window bounds and reference.
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "paths", "plan")

    def __init__(self, *, paths: list[str], plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths = paths
        self.plan = plan

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.monitoring.drift import DriftReference, summarize
        from airflow_mlops.monitoring.window import served_predictions, window_columns
        from airflow_mlops.prediction_log import read_prediction_parts

        plan = _mapping(self.task_id, "plan", self.plan)
        reference = DriftReference.from_dict(plan["reference"])
        storage = prediction_log_storage(*self.log_location)
        start, end = datetime.fromisoformat(plan["start"]), datetime.fromisoformat(plan["end"])
        rows = read_prediction_parts(storage, list(self.paths), start, end)
        columns: dict[str, Any] = window_columns(rows, self.loaded.config)
        if PREDICTION_FEATURE in reference:
            columns[PREDICTION_FEATURE] = served_predictions(rows)
        summary = summarize(reference, columns)
        self.log.info("Summarized %d rows from %d part files", len(rows), len(self.paths))
        return {"rows": len(rows), "summary": {name: s.to_dict() for name, s in summary.items()}}


class EvaluateDriftOperator(RolloutBaseOperator):
    """Merge the hourly summaries, score drift and performance, record everything in MLflow, decide.

    :param plan: The window plan (``XComArg(plan_window, key="plan")``).
    :param summaries: The hourly summaries (``XComArg(summarize_partition)``, the mapped task's results).
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "plan", "summaries")

    def __init__(self, *, plan: Any, summaries: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.summaries = summaries

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.monitoring.drift import ColumnSummary, DriftReference, decide, drift_scores, merge

        cfg = self.loaded.config
        plan = _mapping(self.task_id, "plan", self.plan)
        pulled = self.summaries or []
        # a single summary may come back as its value, several as a (lazy) sequence of values
        parts = [p for p in ([pulled] if isinstance(pulled, dict) else list(pulled)) if p]
        reference = DriftReference.from_dict(plan["reference"])
        summaries = [{k: ColumnSummary.from_dict(v) for k, v in part["summary"].items()} for part in parts]
        rows = sum(int(part["rows"]) for part in parts)
        monitoring = cfg.monitoring
        per_feature = {k: v.model_dump() for k, v in monitoring.feature_thresholds.items()}
        default = monitoring.thresholds.model_dump()
        if rows == 0:
            decision_dict: dict[str, Any] = {"dataset_drift": False, "message": "no served traffic in the window"}
            scores: dict[str, Any] = {}
        else:
            merged = merge(summaries)
            feature_scores = drift_scores(reference, merged, thresholds=per_feature, default=default)
            decision = decide(
                feature_scores, per_feature, default, drifted_share=monitoring.drifted_share, drifted_at="act"
            )
            scores = {name: score.to_dict() for name, score in feature_scores.items()}
            decision_dict = decision.to_dict()
        performance = self._performance(plan)
        prediction_status = scores.get(PREDICTION_FEATURE, {}).get("status")
        reasons = []
        if decision_dict.get("dataset_drift"):
            reasons.append(f"dataset drift: {decision_dict.get('message', '')}")
        if monitoring.prediction_drift and prediction_status == "act":
            reasons.append("prediction drift at act level")
        if performance.get("breached"):
            reasons.append(
                f"performance {performance['metric']} {performance['value']} vs {performance['champion_eval']}"
            )
        result = {
            "window": {"start": plan["start"], "end": plan["end"]},
            "rows": rows,
            "champion": plan["champion"],
            "scores": scores,
            "decision": decision_dict,
            "performance": performance,
            "act": bool(reasons),
            "reasons": reasons,
        }
        result["mlflow_run_id"], result["report"] = self._record(result, plan)
        result["emit"], result["suppressed"] = self._cooldown(result)
        self.log.info("Drift decision for %s: %s (report %s)", cfg.name, reasons or "no action", result["report"])
        return result

    def _performance(self, plan: dict[str, Any]) -> dict[str, Any]:
        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.monitoring.window import performance_on_labels
        from airflow_mlops.prediction_log import read_feedback, read_predictions
        from airflow_mlops.training.metrics import higher_is_better

        cfg = self.loaded.config
        storage = prediction_log_storage(*self.log_location)
        start, end = datetime.fromisoformat(plan["start"]), datetime.fromisoformat(plan["end"])
        feedback = read_feedback(storage, cfg.name, start, end + timedelta(days=7))
        if feedback.empty:
            return {"metric": cfg.primary_metric, "value": None, "labelled": 0, "breached": False}
        rows = read_predictions(storage, cfg.name, start, end)
        perf = performance_on_labels(rows, feedback, cfg.primary_metric, plan.get("champion_metric"))
        breached = perf.breached(
            cfg.monitoring.max_performance_drop, higher_is_better(cfg.primary_metric), cfg.rollout.canary.min_labels
        )
        return {
            "metric": perf.metric,
            "value": perf.value,
            "labelled": perf.labelled,
            "champion_eval": perf.champion_eval,
            "breached": breached,
        }

    def _record(self, result: dict[str, Any], plan: dict[str, Any]) -> tuple[str, str]:
        """A monitoring run in MLflow: metrics per feature, our statistics (JSON), evidently's report (HTML)."""
        import tempfile
        from pathlib import Path

        import mlflow

        cfg = self.loaded.config
        root = self.hook.artifact_root
        with self.hook.activate() as client:
            experiment = client.get_experiment_by_name(monitoring_experiment(cfg.name))
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment(
                    monitoring_experiment(cfg.name),
                    # like the model's experiment: under the connection's artifact_root, not the worker's cwd
                    artifact_location=f"{root.rstrip('/')}/{cfg.name}-monitoring" if root else None,
                    tags={Tag.MODEL: cfg.name},
                )
            )
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor-{plan['end']}") as run:
                mlflow.set_tags(
                    {
                        Tag.MODEL: cfg.name,
                        Tag.CHAMPION: plan["champion"],
                        Tag.WINDOW_START: plan["start"],
                        Tag.WINDOW_END: plan["end"],
                        Tag.DRIFT_ACT: str(result["act"]).lower(),
                    }
                )
                metrics = {"rows": float(result["rows"])}
                for name, score in result["scores"].items():
                    for key in ("psi", "ks_statistic", "js_distance"):
                        if score.get(key) is not None:
                            metrics[f"{key}.{name.strip('_')}"] = float(score[key])
                if result["decision"].get("share") is not None:
                    metrics["drifted_share"] = float(result["decision"]["share"])
                if result["performance"].get("value") is not None:
                    metrics[f"live_{result['performance']['metric']}"] = float(result["performance"]["value"])
                mlflow.log_metrics(metrics)
                mlflow.log_text(json.dumps(result, indent=2, default=str), STATISTICS_ARTIFACT)
                report, skipped = self._evidently(plan)
                if report is not None:
                    with tempfile.TemporaryDirectory() as tmp:
                        path = Path(tmp) / "evidently_drift_report.html"
                        path.write_text(report)
                        mlflow.log_artifact(str(path), "drift")
                elif skipped is not None:  # the run says why it has no report; our statistics decided anyway
                    mlflow.set_tag(Tag.DRIFT_REPORT_SKIPPED, skipped[:5000])
                    mlflow.log_text(skipped + "\n", "drift/evidently_report_skipped.txt")
                return run.info.run_id, f"{run.info.artifact_uri}/drift"

    def _evidently(self, plan: dict[str, Any]) -> tuple[str | None, str | None]:
        """evidently's HTML on a sample of the window vs the reference (for people; never decides).

        Returns ``(html, None)``, or ``(None, why)`` when there is no report: evidently is not installed
        (the ``[reports]`` extra; the reason names the pip install), the window is empty, or evidently failed.
        """
        import tempfile
        from pathlib import Path

        import pandas as pd

        from airflow_mlops.data.io import read_table
        from airflow_mlops.exceptions import MissingExtraError
        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.monitoring.report import evidently_drift_html
        from airflow_mlops.monitoring.window import window_columns
        from airflow_mlops.prediction_log import read_predictions

        cfg = self.loaded.config
        storage = prediction_log_storage(*self.log_location)
        start, end = datetime.fromisoformat(plan["start"]), datetime.fromisoformat(plan["end"])
        current = pd.DataFrame(window_columns(read_predictions(storage, cfg.name, start, end), cfg))
        if current.empty:
            return None, "no predictions in the window"
        reference, _ = read_table(plan["reference_uri"], None, cfg.data.format)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = evidently_drift_html(reference, current, cfg.features.all, Path(tmp) / "report.html")
                return path.read_text(), None
        except MissingExtraError as exc:
            self.log.warning("evidently report skipped: %s", exc)
            return None, str(exc)
        except Exception as exc:
            self.log.warning("evidently report failed: %s", exc)
            return None, f"evidently report failed: {type(exc).__name__}: {exc}"

    def _cooldown(self, result: dict[str, Any]) -> tuple[bool, bool]:
        """(emit, suppressed): act-level findings inside the cooldown are recorded, not emitted."""
        if not result["act"]:
            return False, False
        cfg = self.loaded.config
        with self.hook.activate() as client:
            last = client.get_registered_model(cfg.name).tags.get(Tag.DRIFT_LAST_EVENT)
            if last and _now() - datetime.fromisoformat(last) < parse_duration(cfg.monitoring.cooldown):
                client.set_tag(result["mlflow_run_id"], Tag.DRIFT_SUPPRESSED, f"cooldown since {last}")
                self.log.warning("Drift found but the last drift event (%s) is inside the cooldown: not emitted", last)
                return False, True
        return True, False


class EmitDriftEventOperator(RolloutBaseOperator):
    """Announce ``mlops://<model>/drift`` (features, scores, window) — or skip, so no event is emitted.

    :param result: The drift decision (``evaluate_drift.output``).
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "result")

    def __init__(self, *, result: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result = result

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        result = self.result
        if not result or not result.get("emit"):
            raise AirflowSkipException(
                "no drift event: " + ("cooldown" if result and result.get("suppressed") else "no action needed")
            )
        drifted = [n for n, s in result["scores"].items() if s.get("status") == "act"]
        payload = {
            "model": self.model,
            "features": drifted,
            "scores": {n: result["scores"][n].get("psi") for n in drifted},
            "window": result["window"],
            "reasons": result["reasons"],
            "monitoring_run_id": result["mlflow_run_id"],
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = payload
        with self.hook.activate() as client:
            client.set_registered_model_tag(self.model, Tag.DRIFT_LAST_EVENT, _now().isoformat())
        self.log.info("Drift event for %s: %s", self.model, payload)
        return payload
