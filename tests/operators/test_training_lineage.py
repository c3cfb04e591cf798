"""MLflow's own dataset lineage on every training run, next to our sha256 tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import context


def test_training_run_logs_its_training_and_evaluation_datasets(workspace: Any) -> None:
    from airflow_mlops.operators.training import FingerprintDataOperator, TrainModelOperator, ValidateDataOperator

    config = workspace.write_config("fraud")
    ctx = context(run_id="manual__datasets")
    for cls in (FingerprintDataOperator, ValidateDataOperator):
        cls(task_id=cls.__name__, config_path=str(config)).execute(ctx)
    trained = TrainModelOperator(task_id="train", config_path=str(config)).execute(ctx)

    run = workspace.client().get_run(trained["mlflow_run_id"])
    inputs = {
        next(tag.value for tag in item.tags if tag.key == "mlflow.data.context"): item.dataset
        for item in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "evaluation"}
    data_uri = run.data.tags["mlops.data_uri"]
    rows = {}
    for context_name, dataset in inputs.items():
        assert dataset.name == f"fraud-{context_name}"
        assert json.loads(dataset.source)["uri"] == data_uri
        rows[context_name] = json.loads(dataset.profile)["num_rows"]
    assert rows["training"] == int(run.data.params["n_train"])
    assert rows["evaluation"] == int(run.data.params["n_test"])


def test_a_source_mlflow_cannot_resolve_is_logged_without_it(tmp_path: Any) -> None:
    """Our own readers accept URIs MLflow has no dataset source for; lineage must not fail training."""
    import mlflow
    import pandas as pd

    from airflow_mlops.config.loader import load_config
    from airflow_mlops.training.trainer import Split, log_datasets

    config = load_config(Path(__file__).parents[2] / "dags/configs/fraud.yaml").config
    frame = pd.DataFrame({"amount": [1.0, 2.0, 3.0], config.target: [0, 1, 0]})
    split = Split(
        frame[["amount"]].iloc[:2],
        frame[["amount"]].iloc[2:],
        frame[config.target].iloc[:2],
        frame[config.target].iloc[2:],
    )
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        log_datasets(split, config, "weird-scheme://bucket/batch.csv")
    inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert sorted(item.dataset.name for item in inputs) == ["fraud-evaluation", "fraud-training"]
    assert all("weird-scheme" not in item.dataset.source for item in inputs)


def test_a_time_split_is_recorded_and_the_gate_scores_the_same_held_out_rows(workspace: Any) -> None:
    """Train, register and gate with ``split: time`` through the real operators: the run's params say how the rows
    were split, and the held-out predictions training logged are exactly the rows a rebuilt split holds out."""
    import pandas as pd

    from airflow_mlops.config.loader import load_config
    from airflow_mlops.training.trainer import PREDICTIONS_ARTIFACT, split_data
    from support import train_version

    evaluation = {
        "split": "time",
        "time_column": "hour",
        "test_size": 0.3,
        "metrics": ["roc_auc", "recall", "precision", "f1", "accuracy"],
        "primary_metric": "roc_auc",
    }
    config = workspace.write_config("fraud", replace={"evaluation": evaluation, "gates": {}})  # late hours: low recall
    version = train_version(config, "manual__time-split")

    client = workspace.client()
    run_id = client.get_model_version("fraud", version).run_id
    params = client.get_run(run_id).data.params
    assert (params["split"], params["split.time_column"], params["split.test_size"]) == ("time", "hour", "0.3")
    cfg = load_config(config).config
    data = pd.read_csv(cfg.data.uri)
    rebuilt = split_data(data, cfg)
    logged = pd.read_csv(client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, str(workspace.root)))
    assert sorted(logged["row"]) == sorted(rebuilt.x_test.index)
    assert data.loc[rebuilt.x_test.index, "hour"].min() == float(params["split.test_from"])
    assert data.loc[rebuilt.x_train.index, "hour"].max() < float(params["split.test_from"])
