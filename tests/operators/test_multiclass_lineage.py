"""A multiclass model with string labels through the real train/register/gate operators (issue 13).

The classes are recorded where users and the rest of the loop read them: the MLflow run (tag, param),
the registered version's tag and the model's MLmodel file; the gate refuses a candidate trained on a
class the champion never saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris

from airflow_mlops.exceptions import GateFailedError
from airflow_mlops.vocabulary import Alias, Tag
from support import train_version

pytestmark = pytest.mark.integration

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def write_iris(path: Path, *, hybrid: bool = False) -> None:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=FEATURES)
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[data.target]
    if hybrid:  # a fourth class, spread over the rows so both sides of the split hold it
        frame.loc[frame.index % 10 == 0, "species"] = "hybrid"
    frame.to_csv(path, index=False)


def write_config(workspace: Any, data: Path, **overrides: Any) -> Path:
    raw: dict[str, Any] = {
        "name": "iris",
        "task": "classification",
        "data": {"uri": str(data)},
        "target": "species",
        "features": {"numeric": FEATURES},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "evaluation": {"metrics": ["f1_macro", "accuracy", "roc_auc_ovr"], "primary_metric": "f1_macro"},
        "gates": {
            "thresholds": [{"metric": "f1_macro", "min": 0.7}],
            "champion": {"metric": "f1_macro", "max_regression": 1.0},
        },
        **overrides,
    }
    path = workspace.config_dir / "iris.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_classes_are_recorded_with_the_run_version_and_model(workspace: Any) -> None:
    import mlflow

    data = workspace.root / "iris.csv"
    write_iris(data)
    version = train_version(write_config(workspace, data), "manual__iris_1")
    client = workspace.client()
    recorded = {"classes": ["setosa", "versicolor", "virginica"], "positive": None}

    mv = client.get_model_version("iris", version)
    run = client.get_run(mv.run_id)
    assert json.loads(run.data.tags[Tag.CLASSES]) == recorded
    assert json.loads(mv.tags[Tag.CLASSES]) == recorded
    assert run.data.params["n_classes"] == "3"
    assert mv.tags[Tag.GATE] == "passed"
    mlflow.set_tracking_uri(workspace.tracking_uri)
    info = mlflow.models.get_model_info(f"models:/iris/{version}")
    assert info.metadata == {"mlops_classes": recorded}
    assert info.signature.outputs.to_dict() == [{"type": "string", "name": "species", "required": True}]
    holdout = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/evaluation/holdout_predictions.csv")
    assert holdout.splitlines()[0] == "row,y_true,prediction,proba:setosa,proba:versicolor,proba:virginica"


def test_gate_fails_a_candidate_with_a_class_the_champion_never_saw(workspace: Any) -> None:
    data = workspace.root / "iris.csv"
    write_iris(data)
    config = write_config(workspace, data)
    first = train_version(config, "manual__iris_1")
    client = workspace.client()
    client.set_registered_model_alias("iris", Alias.CHAMPION, first)

    write_iris(data, hybrid=True)
    with pytest.raises(GateFailedError, match=r"classes:champion \(fail: 1 new vs within champion v1's classes"):
        train_version(config, "manual__iris_2")
    second = client.get_model_version("iris", "2")
    assert second.tags[Tag.GATE] == "failed"
    report = json.loads(
        Path(client.download_artifacts(second.run_id, "gate/gate_report.json", str(workspace.root))).read_text()
    )
    check = next(c for c in report["checks"] if c["name"] == "classes:champion")
    assert check["detail"] == ("classes ['hybrid'] are new: champion v1 never saw them; retire it or promote by hand")
