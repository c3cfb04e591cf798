"""The shipped tickets example (multiclass, string labels, time split) trained, registered and gated through
the real operators on a local MLflow store."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_the_shipped_tickets_config_trains_and_passes_its_gate(workspace: Any) -> None:
    from airflow_mlops.examples.tickets import QUEUES
    from airflow_mlops.examples.tickets_demo import version_lines
    from airflow_mlops.vocabulary import Tag
    from support import train_version

    version = train_version(workspace.write_config("tickets"), "manual__tickets_1")

    client = workspace.client()
    mv = client.get_model_version("tickets", version)
    assert json.loads(mv.tags[Tag.CLASSES]) == {"classes": list(QUEUES), "positive": None}
    run = client.get_run(mv.run_id).data
    assert (run.params["split"], run.params["split.time_column"]) == ("time", "created_at")
    assert run.params["split.test_from"].startswith("2024-04-")  # the newest fifth of January to April
    assert run.params["n_classes"] == "4"
    assert mv.tags[Tag.GATE] == "passed"
    # the config's thresholds sit ~0.05 below what the shipped data scores
    assert run.metrics["f1_macro"] > 0.74 and run.metrics["roc_auc_ovr"] > 0.9 and run.metrics["log_loss"] < 0.6

    lines = version_lines(client, version)  # what `airflow-mlops demo-tickets` prints
    assert lines[0] == f"  v{version}: classes ['account', 'billing', 'sales', 'technical']"
    assert "split time on created_at" in lines[1] and "f1_macro=" in lines[2]
