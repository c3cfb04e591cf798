"""Label coverage: which served answers ever receive a label, and the warning for one-sided feedback.

The traffic is a fraud-like classifier: answers ``1`` (flagged) for a fifth of the requests. In the one-sided
case only flagged requests are reviewed, so only they get labels — the hidden feedback loop the monitor must
name. The monitor's own functions run on prediction-log-shaped frames (``summarize_hour`` → XCom JSON →
``evaluate_window`` → ``record_window`` into a real local MLflow store).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.monitoring.coverage import Coverage, Sampled, label_coverage, sampled_answer, slice_groups
from airflow_mlops.monitoring.drift import DriftReference, build_reference
from airflow_mlops.monitoring.evaluation import SampleRates, evaluate_window, summarize_hour
from airflow_mlops.monitoring.recording import record_window
from support import toy_config

SLICES = {"slices": [{"column": "c", "metric": "accuracy", "max_gap": 0.5}]}
CONFIG = toy_config(gates=SLICES)


def traffic(n: int = 1000, seed: int = 5) -> pd.DataFrame:
    """Served rows: ``prediction`` 1 for about a fifth of them; versions 3 (champion) and 4 (canary)."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    flagged = score >= 0.8
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "role": ["champion" if i % 5 else "canary" for i in range(n)],
            "version": ["3" if i % 5 else "4" for i in range(n)],
            "inputs": [json.dumps({"a": float(s), "c": "xyz"[i % 3]}) for i, s in enumerate(score)],
            "output": [
                json.dumps({"prediction": int(f), "score": float(s)}) for f, s in zip(flagged, score, strict=True)
            ],
            "error": [None] * n,
        }
    )


def reviews(frame: pd.DataFrame, which: Any) -> pd.DataFrame:
    """Labels for the rows ``which`` selects (the truth: what the model answered)."""
    picked = frame[which(frame)]
    truth = [json.loads(o)["prediction"] for o in picked["output"]]
    return pd.DataFrame({"request_id": picked["request_id"], "label": [json.dumps(t) for t in truth]})


def flagged(frame: pd.DataFrame) -> pd.Series:
    return frame["output"].map(lambda o: json.loads(o)["prediction"] == 1)


def window(frame: pd.DataFrame, feedback: pd.DataFrame, config: Any = CONFIG) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    reference = build_reference(
        {"a": rng.random(2000), "c": np.array(list("xyz") * 666 + ["x", "y"], dtype=object)}, categorical=["c"]
    )
    plan = {
        "start": "2026-11-20T00:00:00+00:00",
        "end": "2026-11-21T00:00:00+00:00",
        "champion": "3",
        "champion_metric": 0.9,
        "reference": reference.to_dict(),
    }
    hour = summarize_hour(frame, config, DriftReference.from_dict(plan["reference"]), SampleRates())
    hour = json.loads(json.dumps(hour))  # as XCom hands it on
    return evaluate_window(plan, [hour], config, feedback).to_dict()


def test_labels_only_for_flagged_answers_are_named_a_hidden_feedback_loop() -> None:
    frame = traffic()
    result = window(frame, reviews(frame, flagged))

    coverage = result["coverage"]
    n_flagged = int(flagged(frame).sum())
    assert coverage["answered"] == 1000 and coverage["labelled"] == n_flagged
    assert coverage["decision_kind"] == "class"
    assert coverage["by_decision"]["1"] == {"answered": n_flagged, "labelled": n_flagged, "coverage": 1.0}
    assert coverage["by_decision"]["0"]["labelled"] == 0
    assert set(coverage["by_version"]) == {"3", "4"}
    assert set(coverage["by_slice"]) == {"c"} and set(coverage["by_slice"]["c"]) == {"x", "y", "z"}
    [warning] = coverage["warnings"]
    assert warning.startswith(f"labels arrive for 0.0% of {1000 - n_flagged} answers with class '0' but for 100.0%")
    assert "hidden feedback loop" in warning


def test_labels_for_a_fair_share_of_every_decision_raise_no_warning() -> None:
    frame = traffic()
    sampled = frame["request_id"].str[1:].astype(int) % 3 == 0
    result = window(frame, reviews(frame, lambda f: sampled))

    coverage = result["coverage"]
    assert coverage["warnings"] == []
    assert coverage["by_decision"]["0"]["coverage"] == pytest.approx(1 / 3, abs=0.05)
    assert coverage["by_decision"]["1"]["coverage"] == pytest.approx(1 / 3, abs=0.1)


def test_far_fewer_labels_for_one_decision_warn_past_max_ratio() -> None:
    frame = traffic()
    rng = np.random.default_rng(1)
    is_flagged = flagged(frame).to_numpy()
    some = np.where(is_flagged, True, rng.random(len(frame)) < 0.05)  # 100 % of flagged, ~5 % of the others
    result = window(frame, reviews(frame, lambda f: some))
    assert len(result["coverage"]["warnings"]) == 1

    relaxed = toy_config(gates=SLICES, monitoring={"label_coverage": {"max_ratio": 50}})
    assert window(frame, reviews(frame, lambda f: some), relaxed)["coverage"]["warnings"] == []


def test_decisions_answered_too_rarely_are_not_judged() -> None:
    answers = [Sampled(f"r{i}", json.dumps({"prediction": 1 if i < 10 else 0}), "3") for i in range(200)]
    labelled = [f"r{i}" for i in range(10, 60)]  # a quarter of the 0s; none of the ten 1s (under min_answers)
    coverage = label_coverage(answers, labelled, CONFIG)
    assert coverage is not None and coverage.warnings == []
    strict = toy_config(gates=SLICES, monitoring={"label_coverage": {"min_answers": 5}})
    [warning] = label_coverage(answers, labelled, strict).warnings  # type: ignore[union-attr]
    assert "with class '1'" in warning


def test_a_rare_flagged_decision_that_alone_gets_labels_is_enough_to_warn() -> None:
    """Flagged cases are often rarer than min_answers: only the unlabelled decision needs that many answers."""
    answers = [Sampled(f"r{i}", json.dumps({"prediction": 1 if i < 20 else 0}), "3") for i in range(5020)]
    coverage = label_coverage(answers, [f"r{i}" for i in range(20)], CONFIG)
    assert coverage is not None
    [warning] = coverage.warnings
    assert warning.startswith("labels arrive for 0.0% of 5000 answers with class '0' but for 100.0% of those")


def test_a_class_logged_as_a_float_is_the_same_decision() -> None:
    answers = [
        Sampled("a", '{"prediction": 1}'),
        Sampled("b", '{"prediction": 1.0}'),
        Sampled("c", '{"prediction": [1]}'),
    ]
    coverage = label_coverage(answers, ["a"], CONFIG)
    assert coverage is not None and coverage.by_decision == {"1": Coverage(2, 1)}  # a list is no decision


def test_a_slice_column_with_many_values_reports_its_largest_groups() -> None:
    answers = [Sampled(f"r{i}", '{"prediction": 0}', "3", {"c": "big" if i % 2 else f"v{i}"}) for i in range(400)]
    coverage = label_coverage(answers, [], CONFIG)
    assert coverage is not None and len(coverage.by_slice["c"]) == 20 and coverage.by_slice["c"]["big"].answered == 200


def test_a_regressor_is_judged_by_quartile_of_its_prediction() -> None:
    config = toy_config(task="regression", gates={}, estimator={"class": "sklearn.linear_model.LinearRegression"})
    answers = [Sampled(f"r{i}", json.dumps({"prediction": float(i)}), "1") for i in range(400)]
    top = [f"r{i}" for i in range(300, 400)]  # only the highest predictions are ever checked
    coverage = label_coverage(answers, top, config)

    assert coverage is not None and coverage.decision_kind == "quartile"
    assert {k: c.labelled for k, c in coverage.by_decision.items()} == {"q1": 0, "q2": 0, "q3": 0, "q4": 100}
    assert len(coverage.warnings) == 3 and "quartile 'q1'" in coverage.warnings[0]


def test_invalid_labels_and_unreadable_answers_do_not_count_as_labelled() -> None:
    frame = traffic(300)
    feedback = reviews(frame, lambda f: f.index < 100)
    feedback.loc[feedback.index < 50, "label"] = json.dumps("not a class")  # refused: not one of the classes
    frame.loc[frame.index >= 290, "output"] = "not json"
    result = window(frame, feedback)

    coverage = result["coverage"]
    assert coverage["labelled"] == 50  # only the valid ones
    assert sum(c["answered"] for c in coverage["by_decision"].values()) == 290  # no decision in "not json"
    assert coverage["answered"] == 300


def test_answers_summarized_before_coverage_was_recorded_still_count() -> None:
    old = sampled_answer(["r1", '{"prediction": 1}'])
    assert old == Sampled("r1", '{"prediction": 1}', "", {})
    coverage = label_coverage([old], ["r1"], CONFIG)
    assert coverage is not None and coverage.by_version == {"?": coverage.overall} and coverage.by_slice == {}
    assert label_coverage([], [], CONFIG) is None


def test_slice_groups_are_named_as_the_gate_names_them() -> None:
    assert slice_groups('{"c": "x", "n": 3, "m": null}', ["c", "n", "m", "absent"]) == {
        "c": "x",
        "n": "3",
        "m": "(missing)",
        "absent": "(missing)",
    }
    assert slice_groups("[1, 2]", ["c"]) == {} and slice_groups("not json", ["c"]) == {}
    assert slice_groups('{"c": "x"}', []) == {}
    assert slice_groups(json.dumps({"c": "y" * 10_000}), ["c"]) == {"c": "y" * 200}  # a client's value is cut


def test_the_monitoring_run_carries_coverage_and_the_warning(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    frame = traffic()
    result = window(frame, reviews(frame, flagged))
    result["coverage"]["by_decision"]["bad key/<x>"] = {"answered": 1, "labelled": 0, "coverage": 0.0}

    run_id, _ = record_window(client, "toy", result, artifact_root=str(tmp_path / "artifacts"), skipped="test")

    run = client.get_run(run_id)
    assert run.data.metrics["label_coverage"] == pytest.approx(result["coverage"]["coverage"])
    assert run.data.metrics["label_coverage.class.1"] == 1.0 and run.data.metrics["label_coverage.class.0"] == 0.0
    assert not any("bad key" in key for key in run.data.metrics)  # not a metric name MLflow takes: JSON only
    assert run.data.tags["mlops.feedback.warning"].startswith("labels arrive for 0.0% of ")
