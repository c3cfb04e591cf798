"""One monitoring window without Airflow: hourly summaries with samples, the merged decision, the MLflow run."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.monitoring.drift import build_reference
from airflow_mlops.monitoring.evaluation import (
    PREDICTION_FEATURE,
    SampleRates,
    evaluate_window,
    hour_results,
    in_sample,
    report_inputs,
    summarize_hour,
)
from airflow_mlops.monitoring.recording import compare_with_evidently, record_window
from airflow_mlops.monitoring.report import EvidentlyDrift
from support import toy_config

CONFIG = toy_config(
    monitoring={"drifted_share": 0.5, "max_performance_drop": 0.05}, rollout={"canary": {"min_labels": 10}}
)


def traffic(n: int, *, shift: float, seed: int, prefix: str = "r") -> pd.DataFrame:
    """Served rows whose score tracks the label: ``label = 1`` exactly when ``score >= 0.5``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(shift, 1.0, n)
    score = 1 / (1 + np.exp(-a))
    return pd.DataFrame(
        {
            "request_id": [f"{prefix}{i}" for i in range(n)],
            "role": ["champion" if i % 4 else "canary" for i in range(n)],
            "version": ["3" if i % 4 else "4" for i in range(n)],
            "inputs": [json.dumps({"a": float(v), "c": "xy"[i % 2]}) for i, v in enumerate(a)],
            "output": [json.dumps({"prediction": int(s >= 0.5), "score": float(s)}) for s in score],
            "error": [None] * n,
        }
    )


def plan_for(champion_metric: float | None = 1.0) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 2000)
    reference = build_reference(
        {"a": a, "c": np.array(["x", "y"] * 1000, dtype=object), PREDICTION_FEATURE: 1 / (1 + np.exp(-a))},
        categorical=["c"],
    )
    return {
        "start": "2026-11-20T00:00:00+00:00",
        "end": "2026-11-20T06:00:00+00:00",
        "champion": "3",
        "champion_metric": champion_metric,
        "reference": reference.to_dict(),
    }


def labels_for(frame: pd.DataFrame, *, flip: bool = False) -> pd.DataFrame:
    """Delayed labels for every row: the truth the score predicts (or its opposite, a model gone bad)."""
    truth = [int(json.loads(o)["score"] >= 0.5) ^ int(flip) for o in frame["output"]]
    return pd.DataFrame({"request_id": frame["request_id"], "label": [json.dumps(t) for t in truth]})


def summarize(frame: pd.DataFrame, plan: dict[str, Any], rates: SampleRates) -> dict[str, Any]:
    from airflow_mlops.monitoring.drift import DriftReference

    hour = summarize_hour(frame, CONFIG, DriftReference.from_dict(plan["reference"]), rates)
    return json.loads(json.dumps(hour))  # what XCom hands the next task


def test_summaries_of_hours_decide_exactly_as_one_summary_of_the_window() -> None:
    plan = plan_for()
    window = traffic(3000, shift=1.5, seed=1)
    feedback = labels_for(window)
    whole = summarize(window, plan, SampleRates())
    hours = [summarize(window.iloc[i : i + 1000], plan, SampleRates()) for i in (0, 1000, 2000)]

    split = evaluate_window(plan, hours, CONFIG, feedback)
    single = evaluate_window(plan, [whole], CONFIG, feedback)

    assert split.to_dict() == single.to_dict()
    assert split.rows == 3000 and split.decision["dataset_drift"] is True
    assert split.performance["labelled"] == 3000 and split.performance["value"] == pytest.approx(1.0)
    assert split.samples == {"answers": 3000, "inputs": 3000}
    assert split.act and split.reasons[0].startswith("dataset drift")


def test_a_model_gone_bad_on_labels_breaches_performance_without_drift() -> None:
    plan = plan_for(champion_metric=0.99)
    window = traffic(500, shift=0.0, seed=2)

    result = evaluate_window(plan, [summarize(window, plan, SampleRates())], CONFIG, labels_for(window, flip=True))

    assert result.decision["dataset_drift"] is False
    assert result.performance["breached"] is True and result.performance["value"] == pytest.approx(0.0)
    assert result.reasons == [f"performance roc_auc {result.performance['value']} vs 0.99"]


def test_samples_are_chosen_by_request_id_so_hours_agree_with_the_whole_window() -> None:
    plan = plan_for()
    window = traffic(20_000, shift=0.0, seed=3)
    rates = SampleRates.for_window(len(window), performance_rows=4000, report_rows=1000)
    hours = [summarize(window.iloc[i : i + 5000], plan, rates) for i in range(0, 20_000, 5000)]
    whole = summarize(window, plan, rates)

    assert rates == SampleRates(performance=0.2, report=0.05)
    assert [a for h in hours for a in h["answers"]] == whole["answers"]
    assert report_inputs(hours) == whole["inputs"]
    assert 3600 <= len(whole["answers"]) <= 4400 and 850 <= len(whole["inputs"]) <= 1150
    assert set(whole["inputs"][0]) == {"a", "c"}
    # the drift summary still covers every row, only the samples are thinned
    assert whole["rows"] == 20_000 and sum(h["rows"] for h in hours) == 20_000


def test_in_sample_is_deterministic_and_keeps_about_the_rate() -> None:
    ids = [f"req-{i}" for i in range(50_000)]
    kept = [i for i in ids if in_sample(i, 0.1)]
    assert kept == [i for i in ids if in_sample(i, 0.1)]
    assert 4_600 <= len(kept) <= 5_400
    assert all(in_sample(i, 1.0) for i in ids[:100])
    assert set(kept) <= {i for i in ids if in_sample(i, 0.2)}  # a smaller rate keeps a subset


@pytest.mark.parametrize("rates", [{"performance": 0}, {"report": 1.5}, {"performance": "nan"}])
def test_sample_rates_from_xcom_are_checked(rates: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="expected 0 < rate <= 1"):
        SampleRates.from_dict(rates)


def test_hour_results_accept_one_or_many_and_refuse_anything_else() -> None:
    one = {"rows": 1, "summary": {}}
    assert hour_results(one) == [one]
    assert hour_results([one, None, one]) == [one, one]
    assert hour_results(None) == []
    with pytest.raises(ValueError, match="summaries: got str"):
        hour_results(["not a summary"])


class SliceOnlySequence(Sequence[Any]):
    """Like Airflow's lazy XCom sequence: a slice is one request; reading item by item runs past the end."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, slice):
            raise AssertionError(f"read item by item (index {key}): one request per mapped task, and a 404 at the end")
        return self.items[key]

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("iterated: Airflow asks for each offset until it answers 404 (logged as an error)")


def test_hour_results_read_a_lazy_sequence_with_one_slice() -> None:
    one = {"rows": 1, "summary": {}}
    assert hour_results(SliceOnlySequence([one, one])) == [one, one]


def test_an_empty_window_decides_nothing() -> None:
    result = evaluate_window(plan_for(), [], CONFIG, pd.DataFrame(columns=["request_id", "label"]))
    assert result.rows == 0 and not result.act
    assert result.decision == {"dataset_drift": False, "message": "no served traffic in the window"}


def verdict(
    psi: dict[str, float], drifted: tuple[str, ...], share: float, html: Path = Path("report.html")
) -> EvidentlyDrift:
    return EvidentlyDrift(html=html, psi=psi, drifted=drifted, share=share, drifted_share=0.5)


def test_a_disagreement_with_evidently_is_named() -> None:
    ours = {
        "decision": {"dataset_drift": True},
        "scores": {"a": {"status": "act"}, "c": {"status": "ok"}, PREDICTION_FEATURE: {"status": "act"}},
    }
    assert compare_with_evidently(ours, verdict({"a": 0.4, "c": 0.1}, ("a",), 0.5)) is None
    assert compare_with_evidently(ours, verdict({"a": 0.2, "c": 0.3}, ("c",), 0.5)) == (
        "drifted only in ours: a; drifted only in evidently's: c"
    )
    assert compare_with_evidently(ours, verdict({"a": 0.1, "c": 0.1}, (), 0.0)) == (
        "dataset drift: ours true, evidently false; drifted only in ours: a"
    )


def test_record_window_writes_one_finished_run_through_an_explicit_client(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    plan = plan_for()
    window = traffic(400, shift=1.5, seed=4)
    result = evaluate_window(plan, [summarize(window, plan, SampleRates())], CONFIG, labels_for(window)).to_dict()
    html = tmp_path / "report.html"
    html.write_text("<html>evidently</html>")

    run_id, report = record_window(
        client,
        "toy",
        result,
        artifact_root=str(tmp_path / "artifacts"),
        evidently=verdict({"a": 0.05, "c": 0.0}, (), 0.0, html),
    )

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and report.endswith("/drift")
    assert run.data.tags["mlops.drift.act"] == "true"
    assert run.data.tags["mlops.drift.evidently"] == "no_drift"
    assert run.data.tags["mlops.drift.disagreement"].startswith("dataset drift: ours true, evidently false")
    assert run.data.metrics["rows"] == 400 and run.data.metrics["psi.a"] > 0.25
    assert {a.path for a in client.list_artifacts(run_id, "drift")} == {
        "drift/statistics.json",
        "drift/evidently_drift_report.html",
    }
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "airflow-mlops/toy/monitoring"
    assert experiment.artifact_location.endswith("artifacts/toy-monitoring")


def test_a_recording_that_breaks_half_way_leaves_a_failed_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = evaluate_window(plan_for(), [], CONFIG, pd.DataFrame(columns=["request_id", "label"])).to_dict()
    missing = verdict({}, (), 0.0, tmp_path / "gone.html")  # its HTML file does not exist: the upload fails

    with pytest.raises(OSError):
        record_window(client, "toy", result, evidently=missing)

    experiment = client.get_experiment_by_name("airflow-mlops/toy/monitoring")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
