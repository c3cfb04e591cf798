"""Operators of ``<model>__monitor``: plan the window, summarize each hour (mapped), decide, emit drift.

Thin wrappers over :mod:`airflow_mlops.monitoring`: the reference (the champion's training data, found
by its fingerprint) is summarized once in ``plan_window``, which also counts the window's rows to fix
the sample rates; each hour partition of the prediction log is summarized by one mapped task
(:func:`~airflow_mlops.monitoring.evaluation.summarize_hour`); ``evaluate_drift`` merges the hours
(exactly the single-pass PSI and chi-square), checks performance on the sampled answers that got
delayed labels, runs evidently on the sampled inputs, records everything in an MLflow monitoring run
(:func:`~airflow_mlops.monitoring.recording.record_window`) and decides. Nothing reads the window's
predictions a second time. The evidently report is optional (``[reports]`` extra): without it the run
carries ``Tag.DRIFT_REPORT_SKIPPED`` and ``drift/evidently_report_skipped.txt``. ``emit_drift``
announces ``mlops://<model>/drift`` unless the cooldown holds it back (then the decision is recorded only).
``prune_prediction_log`` (only with ``monitoring.retention``) deletes the log's hour partitions past retention
after all that (:func:`~airflow_mlops.prediction_log.retention.prune_partitions`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import LABEL_DELAY, parse_duration
from airflow_mlops.operators.rollout import RolloutBaseOperator
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from airflow_mlops.monitoring.report import EvidentlyDrift

PARAM_WINDOW_END = "window_end"
PLAN_KEY = "plan"


class PlanMonitoringWindowOperator(RolloutBaseOperator):
    """Fix the window, list its hour partitions, and summarize the reference once for all mapped tasks."""

    def execute(self, context: Context) -> list[list[str]]:
        """Returns the hour groups to map over; the plan (window, reference, sample rates) goes to XCom ``plan``."""
        import mlflow

        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.monitoring.drift import build_reference
        from airflow_mlops.monitoring.evaluation import PREDICTION_FEATURE, SampleRates
        from airflow_mlops.monitoring.window import champion_reference, holdout_reference, reference_columns
        from airflow_mlops.prediction_log import count_prediction_parts, hour_partitions
        from airflow_mlops.training.trainer import PREDICTIONS_ARTIFACT

        cfg = self.loaded.config
        params = context.get("params") or {}
        end = datetime.fromisoformat(params[PARAM_WINDOW_END]) if params.get(PARAM_WINDOW_END) else _now()
        start = end - parse_duration(cfg.monitoring.window)
        storage = prediction_log_storage(*self.log_location)
        with self.hook.activate() as client:
            reference = champion_reference(client, cfg)
            columns = reference_columns(reference, cfg)
            run = client.get_run(str(client.get_model_version(cfg.name, reference.version).run_id))
            holdout = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{PREDICTIONS_ARTIFACT}")
        classes = reference.classes  # None: a regressor, or a 0/1 classifier trained before classes were recorded
        multiclass = classes is not None and not classes.binary
        categorical = list(cfg.features.categorical)
        if cfg.monitoring.prediction_drift:  # the score (binary), the predicted class (more classes), the value
            columns[PREDICTION_FEATURE] = holdout_reference(holdout, classes)
            if multiclass:
                categorical.append(PREDICTION_FEATURE)
        drift_reference = build_reference(columns, categorical=categorical)
        groups = hour_partitions(storage, cfg.name, start, end)
        total = count_prediction_parts(storage, [path for group in groups for path in group])
        rates = SampleRates.for_window(total)
        self.log.info(
            "Window %s .. %s: %d hour partitions, %d logged rows (sample rates %s); reference = %s v%s",
            start,
            end,
            len(groups),
            total,
            rates.to_dict(),
            reference.data_uri,
            reference.version,
        )
        plan = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "champion": reference.version,
            "champion_run_id": run.info.run_id,
            "champion_metric": run.data.metrics.get(cfg.primary_metric),
            "classes": classes.to_json() if classes is not None else None,
            "reference_uri": reference.data_uri,
            "reference_files": list(reference.files),
            "reference_conn_id": reference.conn_id,
            "reference_sha256": reference.data_sha256,
            "reference": drift_reference.to_dict(),
            "logged_rows": total,
            "sample_rates": rates.to_dict(),
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
    :param plan: The window plan (``XComArg(plan_window, key="plan")``): window bounds, reference, sample rates.
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "paths", "plan")

    def __init__(self, *, paths: list[str], plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths = paths
        self.plan = plan

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.monitoring.drift import DriftReference
        from airflow_mlops.monitoring.evaluation import SampleRates, summarize_hour
        from airflow_mlops.prediction_log import read_prediction_parts

        plan = _mapping(self.task_id, "plan", self.plan)
        reference = DriftReference.from_dict(plan["reference"])
        storage = prediction_log_storage(*self.log_location)
        start, end = datetime.fromisoformat(plan["start"]), datetime.fromisoformat(plan["end"])
        rows = read_prediction_parts(storage, list(self.paths), start, end)
        hour = summarize_hour(rows, self.loaded.config, reference, SampleRates.from_dict(plan.get("sample_rates")))
        self.log.info(
            "Summarized %d rows from %d part files (sampled: %d answers, %d inputs)",
            hour["rows"],
            len(self.paths),
            len(hour["answers"]),
            len(hour["inputs"]),
        )
        return hour


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
        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.monitoring.evaluation import evaluate_window, hour_results, report_inputs
        from airflow_mlops.monitoring.recording import record_window
        from airflow_mlops.prediction_log import read_feedback

        cfg = self.loaded.config
        plan = _mapping(self.task_id, "plan", self.plan)
        hours = hour_results(self.summaries)
        storage = prediction_log_storage(*self.log_location)
        start, end = datetime.fromisoformat(plan["start"]), datetime.fromisoformat(plan["end"])
        feedback = read_feedback(storage, cfg.name, start, end + LABEL_DELAY)
        result = evaluate_window(plan, hours, cfg, feedback).to_dict()
        with tempfile.TemporaryDirectory(prefix="mlops-evidently-") as tmp:
            evidently, skipped = self._evidently(plan, report_inputs(hours), Path(tmp))
            with self.hook.activate() as client:
                run_id, report = record_window(
                    client,
                    cfg.name,
                    result,
                    artifact_root=self.hook.artifact_root,
                    evidently=evidently,
                    skipped=skipped,
                )
                if result.get("champion"):  # the champion's card gets this window (best effort)
                    self.write_card(client, str(result["champion"]))
        result["mlflow_run_id"], result["report"] = run_id, report
        if result.get("disagreement"):
            self.log.warning("evidently disagrees with our drift statistics: %s", result["disagreement"])
        result["emit"], result["suppressed"] = self._cooldown(result)
        self.log.info(
            "Drift decision for %s: %s (report %s)", cfg.name, result["reasons"] or "no action", result["report"]
        )
        return result

    def _evidently(
        self, plan: dict[str, Any], inputs: list[dict[str, Any]], folder: Path
    ) -> tuple[EvidentlyDrift | None, str | None]:
        """evidently's report and verdict on the sampled window vs the reference (recorded next to ours).

        Returns ``(verdict, None)``, or ``(None, why)`` when there is none: evidently is not installed
        (the ``[reports]`` extra; the reason names the pip install), the window is empty, or evidently failed.
        """
        import pandas as pd

        from airflow_mlops.data.snapshot import read_snapshot
        from airflow_mlops.exceptions import MissingExtraError
        from airflow_mlops.monitoring.report import evidently_drift

        cfg = self.loaded.config
        if not inputs:
            return None, "no predictions in the window"
        current = _typed(pd.DataFrame(inputs, columns=cfg.features.all), cfg.features.numeric)
        # the champion's own training files (its data_uri may be a folder that has grown since), re-verified
        files = plan.get("reference_files") or [plan["reference_uri"]]
        try:
            snapshot = read_snapshot(files, plan.get("reference_conn_id"), cfg.data.format)
        except Exception as exc:  # our statistics (from plan_window's reference) still decide
            self.log.warning("evidently report skipped: cannot read the reference: %s", exc)
            return None, f"cannot read the champion's training data for evidently: {exc}"
        if plan.get("reference_sha256") and snapshot.sha256 != plan["reference_sha256"]:
            return None, f"the champion's training data changed since plan_window read it ({', '.join(files)})"
        reference = snapshot.frame
        monitoring = cfg.monitoring
        act = {
            name: monitoring.feature_thresholds.get(name, monitoring.thresholds).psi_act for name in cfg.features.all
        }
        try:
            return evidently_drift(
                reference,
                current,
                cfg.features.all,
                folder / "report.html",
                act_thresholds=act,
                drifted_share=monitoring.drifted_share,
            ), None
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


def _typed(frame: pd.DataFrame, numeric: Sequence[str]) -> pd.DataFrame:
    """Logged inputs as the reference types them: numeric features as floats (unparseable -> NaN)."""
    import pandas as pd

    for name in numeric:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


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
            "champion": result.get("champion"),  # the version judged: a retrain for it is moot once it is replaced
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = payload
        with self.hook.activate() as client:
            client.set_registered_model_tag(self.model, Tag.DRIFT_LAST_EVENT, _now().isoformat())
        self.log.info("Drift event for %s: %s", self.model, payload)
        return payload


class PrunePredictionLogOperator(RolloutBaseOperator):
    """Delete the model's prediction-log hour partitions (predictions and feedback) older than the retention.

    A thin wrapper over :func:`~airflow_mlops.prediction_log.retention.prune_partitions`; the cutoff is
    ``now - retention`` (wall-clock time, not the monitored window: retention is about the store, and a
    run for an old window must not delete newer hours). ``<model>__monitor`` runs it as a teardown after
    the monitoring tasks, so it runs whatever they concluded and its own failure does not fail the run.

    :param retention: How long hours are kept, e.g. ``"90d"`` or seconds (templated); default: the config's
        ``monitoring.retention``. Unset: the task skips.
    """

    template_fields: Sequence[str] = (*RolloutBaseOperator.template_fields, "retention")

    def __init__(self, *, retention: str | float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retention = retention

    def execute(self, context: Context) -> dict[str, Any]:
        """Returns counts (partitions per kind, files, bytes), the cutoff and the oldest/newest hour deleted."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.hooks.object_storage import prediction_log_storage
        from airflow_mlops.prediction_log.retention import prune_partitions

        retention = self.retention
        if retention is None and self.has_config:
            retention = self.loaded.config.monitoring.retention
        if retention is None or retention == "":
            raise AirflowSkipException("no monitoring.retention: the prediction log is kept forever")
        try:
            keep = parse_duration(retention)
        except ValueError as exc:
            raise ValueError(f"{self.task_id}: retention: got {retention!r}; {exc}") from exc
        storage = prediction_log_storage(*self.log_location)
        result = prune_partitions(storage, self.model, keep, now=_now())
        self.log.info(
            "Deleted %d hour partitions (%d files, %d bytes) of %s in %s that ended before %s",
            result.partitions,
            result.files,
            result.bytes,
            self.model,
            storage.uri,
            result.cutoff.isoformat(),
        )
        return result.to_dict()
