"""Slice gates on audit columns: a model that is fine overall but unfair to a group it never saw fails its gate.

``group`` is in the data but declared as ``data.audit_columns``: the model is trained without it, and the
slice gate measures per-group metrics on the held-out rows with it. The data is made so that the label follows
``x1`` one way for most rows and the other way for a minority group: a model that cannot see the group learns
the majority's rule, scores well overall, and is wrong for nearly every row of the minority.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.gates.checks import GateInputs, HoldOut, evaluate_gate
from airflow_mlops.training.trainer import fit_and_evaluate
from support import toy_config


def people(n: int = 3000, *, unfair: bool, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    group = np.where(rng.random(n) < 0.15, "B", "A")
    label = x1 > 0
    if unfair:
        label = np.where(group == "B", ~label, label)  # the minority's outcome runs against the majority's rule
    return pd.DataFrame({"x1": x1, "x2": rng.normal(size=n), "group": group, "y": label.astype(int)})


def config(**gates: Any) -> Any:
    return toy_config(
        data={"uri": "people.csv", "audit_columns": ["group"]},
        features={"numeric": ["x1", "x2"], "categorical": []},
        gates=gates,
    )


GATES = {
    "thresholds": [{"metric": "accuracy", "min": 0.75}],
    "slices": [{"column": "group", "metric": "accuracy", "max_gap": 0.2}],
}


def gate(df: pd.DataFrame) -> Any:
    cfg = config(**GATES)
    outcome = fit_and_evaluate(df, cfg)
    split = outcome.split
    assert "group" not in split.x_test.columns and list(outcome.model.feature_names_in_) == ["x1", "x2"]
    return evaluate_gate(
        GateInputs(config=cfg, holdout=HoldOut(split.x_test, split.y_test, split.audit_test), candidate=outcome.model),
        model="people",
        version="1",
        run_id="r",
    )


def test_a_model_fine_overall_but_unfair_to_a_group_fails_the_slice_gate() -> None:
    report = gate(people(unfair=True))

    by_name = {check.name: check for check in report.checks}
    assert by_name["threshold:accuracy"].status == "pass" and by_name["threshold:accuracy"].value > 0.75  # fine overall
    unfair = by_name["slice:group:accuracy"]
    assert unfair.status == "fail" and unfair.value > 0.8
    groups = dict(part.split("=") for part in unfair.detail.split(", "))
    assert float(groups["A"]) > 0.9 and float(groups["B"]) < 0.1  # per-group metrics, in the report
    assert not report.passed


def test_the_same_model_on_fair_data_passes() -> None:
    report = gate(people(unfair=False))

    assert report.passed, [c for c in report.checks if c.status != "pass"]
    assert {c.name for c in report.checks} == {"threshold:accuracy", "slice:group:accuracy"}


def test_rows_missing_the_audit_value_are_a_group_of_their_own() -> None:
    """However the column holds "missing" (NaN, None), those rows form one group, ``(missing)``."""
    from airflow_mlops.config.schema import SliceConfig
    from airflow_mlops.gates.checks import slice_check

    df = people(unfair=False)
    cfg = config(**GATES)
    outcome = fit_and_evaluate(df, cfg)
    audit = outcome.split.audit_test.copy()
    audit.iloc[:100, 0] = None
    audit.iloc[100:200, 0] = np.nan
    rule = SliceConfig(column="group", metric="accuracy", max_gap=1.0, min_rows=10)
    result = slice_check(rule, HoldOut(outcome.split.x_test, outcome.split.y_test, audit), outcome.model, cfg)
    assert sorted(part.split("=")[0] for part in result.detail.split(", ")) == ["(missing)", "A", "B"]


def test_audit_columns_must_be_in_the_data() -> None:
    from airflow_mlops.exceptions import DataError

    df = people(unfair=False).drop(columns=["group"])
    with pytest.raises(DataError, match=r"data is missing columns \['group'\] named in the config"):
        fit_and_evaluate(df, config(**GATES))
