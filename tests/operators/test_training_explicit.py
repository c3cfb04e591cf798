"""Training operators from explicit arguments: an inline ``model_config`` and a wired ``mlflow_run_id``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_mlops.exceptions import ConfigError, DataError
from airflow_mlops.operators.training import FingerprintDataOperator, TrainModelOperator, ValidateDataOperator
from support import context

REPO = Path(__file__).parents[2]
BATCH = REPO / "dags" / "data" / "fraud" / "transactions_batch_001.csv"


def inline_config(**changes: Any) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "dags" / "configs" / "fraud.yaml").read_text())
    raw["data"]["uri"] = str(BATCH)
    raw["gates"].pop("behaviour")  # its CSV path is relative to the YAML file
    raw.update(changes)
    return raw


def test_inline_config_and_wired_run_id(workspace: Any) -> None:
    config = inline_config()
    ctx = context(run_id="manual__inline")
    fingerprint = FingerprintDataOperator(task_id="fingerprint", model_config=config, data_uri=str(BATCH))
    found = fingerprint.execute(ctx)
    # a later task in another DAG run still finds the work through the explicit run id
    other_run = context(run_id="manual__elsewhere")
    validated = ValidateDataOperator(
        task_id="validate", model_config=config, mlflow_run_id=found["mlflow_run_id"]
    ).execute(other_run)
    assert validated["mlflow_run_id"] == found["mlflow_run_id"]
    trained = TrainModelOperator(task_id="train", model_config=config, mlflow_run_id=found["mlflow_run_id"]).execute(
        other_run
    )
    assert trained["mlflow_run_id"] == found["mlflow_run_id"]
    tags = workspace.client().get_run(found["mlflow_run_id"]).data.tags
    assert tags["mlops.data_uri"] == str(BATCH)


def test_a_bad_inline_config_names_the_task_and_the_field(workspace: Any) -> None:
    config = inline_config(estimator={"class": "os.system", "params": {}})
    with pytest.raises(ConfigError) as bad:
        FingerprintDataOperator(task_id="fingerprint", model_config=config).execute(context())
    assert str(bad.value).startswith("<fingerprint: model_config>: estimator.class: got 'os.system'; expected a dotted")
    with pytest.raises(ConfigError, match=r"^<fingerprint: model_config>: got \['not', 'a', 'mapping'\]; expected"):
        FingerprintDataOperator(task_id="fingerprint", model_config=["not", "a", "mapping"]).execute(context())
    with pytest.raises(ValueError, match=r"give config_path or model_config, not both"):
        FingerprintDataOperator(task_id="fingerprint", model_config=config, config_path="x.yaml")


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("../../etc/passwd", r"mlflow_run_id: got '\.\./\.\./etc/passwd'; expected a 32-character MLflow run id"),
        ("0" * 32, r"mlflow_run_id: no MLflow run '0{32}'"),
    ],
    ids=["not-an-id", "unknown-run"],
)
def test_a_hostile_run_id_is_refused(workspace: Any, run_id: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ValidateDataOperator(task_id="validate", model_config=inline_config(), mlflow_run_id=run_id).execute(context())


def test_another_models_run_is_refused(workspace: Any) -> None:
    """A run id of another model (e.g. from a forged conf) never becomes this model's training run."""
    other = inline_config(name="credit")
    found = FingerprintDataOperator(task_id="fingerprint", model_config=other).execute(context(run_id="manual__c"))
    with pytest.raises(DataError, match=rf"run {found['mlflow_run_id']} is not a training run of 'fraud'"):
        ValidateDataOperator(
            task_id="validate", model_config=inline_config(), mlflow_run_id=found["mlflow_run_id"]
        ).execute(context(run_id="manual__c"))
