"""A model from the user's own training function goes through the unchanged loop (issue 13): lineage,
registration with a checksum, the gate, and the gateway's verified model cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris

from airflow_mlops.vocabulary import Tag
from support import train_version

pytestmark = pytest.mark.integration

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_workspace(workspace: Any, **sections: Any) -> tuple[pd.DataFrame, Path]:
    """Iris with string labels as the workspace's data, and an ``iris`` config over it with ``sections``."""
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=FEATURES)
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[data.target]
    frame.to_csv(workspace.root / "iris.csv", index=False)
    raw = {
        "name": "iris",
        "task": "classification",
        "data": {"uri": str(workspace.root / "iris.csv")},
        "target": "species",
        "features": {"numeric": FEATURES},
        "gates": {"thresholds": [{"metric": "f1_macro", "min": 0.8}]},
        **sections,
    }
    path = workspace.config_dir / "iris.yaml"
    path.write_text(yaml.safe_dump(raw))
    return frame, path


def test_entrypoint_model_is_registered_gated_and_served(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_mlops.serving.models import ModelCache

    monkeypatch.setenv("AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST", "byo_training")
    frame, path = iris_workspace(
        workspace,
        training={"entrypoint": "byo_training:fit_boosted"},
        estimator={"params": {"max_iter": 30}},
        evaluation={"metrics": ["f1_macro"]},
    )

    version = train_version(path, "manual__byo_1")

    client = workspace.client()
    mv = client.get_model_version("iris", version)
    run = client.get_run(mv.run_id)
    assert mv.tags[Tag.GATE] == "passed" and Tag.MODEL_SHA256 in mv.tags
    assert run.data.params["estimator"] == "entrypoint:byo_training:fit_boosted"
    assert json.loads(mv.tags[Tag.CLASSES])["classes"] == ["setosa", "versicolor", "virginica"]
    loaded = ModelCache(client).load("iris", version)
    answers = loaded.predict(frame[FEATURES].head(3).astype("float64"))
    assert [a["prediction"] for a in answers] == ["setosa", "setosa", "setosa"]


@pytest.mark.parametrize(
    ("prefix", "estimator"),
    [
        ("lightgbm.", {"class": "lightgbm.LGBMClassifier", "params": {"n_estimators": 20, "verbose": -1}}),
        ("xgboost.", {"class": "xgboost.XGBClassifier", "params": {"n_estimators": 20, "verbosity": 0}}),
    ],
    ids=["lightgbm", "xgboost"],
)
def test_an_allow_listed_classifier_from_outside_sklearn_goes_through_the_loop(
    workspace: Any, monkeypatch: pytest.MonkeyPatch, prefix: str, estimator: dict[str, Any]
) -> None:
    """LightGBM and XGBoost (``xgboost-cpu``), installed for the tests, once allow-listed. XGBoost takes only the
    codes 0..k-1 as classes: the pipeline teaches it codes and answers in the string labels."""
    from airflow_mlops.serving.models import ModelCache

    monkeypatch.setenv("AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST", prefix)
    frame, path = iris_workspace(workspace, estimator=estimator, evaluation={"metrics": ["f1_macro", "roc_auc_ovr"]})

    version = train_version(path, f"manual__{prefix}1")

    client = workspace.client()
    assert client.get_model_version("iris", version).tags[Tag.GATE] == "passed"
    loaded = ModelCache(client).load("iris", version)
    final = loaded.estimator.steps[-1][1]
    assert type(final.estimator_).__name__ == estimator["class"].rsplit(".", 1)[1]
    assert final.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    answers = loaded.predict(frame[FEATURES].head(2).astype("float64"))
    assert [a["prediction"] for a in answers] == ["setosa"] * 2
    assert set(answers[0]["probabilities"]) == {"setosa", "versicolor", "virginica"}
