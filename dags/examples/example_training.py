"""Hand-written DAG (no YAML file): validate, train, register, gate and nominate a challenger.

The model's settings are a plain mapping (``model_config``, checked against the same schema as a
YAML config); the data comes in as a templated argument; each task hands the MLflow run on to the
next as an ``XComArg``. The gate compares the candidate with the current champion on the same
held-out rows and fails closed.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, XComArg, chain

from airflow_mlops.operators.gates import GateModelOperator
from airflow_mlops.operators.registry import SetChallengerOperator
from airflow_mlops.operators.training import (
    FingerprintDataOperator,
    RegisterModelOperator,
    TrainModelOperator,
    ValidateDataOperator,
)

# [START howto_operator_training_config]
FRAUD = {
    "name": "fraud",
    "task": "classification",
    "data": {"uri": "/var/lib/mlops/data/fraud/latest.csv", "format": "csv"},
    "target": "is_fraud",
    "features": {
        "numeric": ["amount", "hour", "distance_from_home_km", "txn_count_24h", "account_age_days", "card_present"],
        "categorical": ["merchant_category"],
    },
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1000}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "is_fraud", "value_set": [0, 1]}},
    ],
    "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}, "seed": 7},
    "evaluation": {"metrics": ["roc_auc", "recall"], "primary_metric": "roc_auc"},
    "gates": {
        "thresholds": [{"metric": "roc_auc", "min": 0.65}],
        "champion": {"metric": "roc_auc", "max_regression": 0.02},
    },
}
# [END howto_operator_training_config]

with DAG(
    dag_id="example_training",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"data_uri": Param("/var/lib/mlops/data/fraud/latest.csv", type="string", description="Training data")},
    tags=["airflow-mlops", "example"],
) as dag:
    # [START howto_operator_training]
    common = {"model_config": FRAUD, "mlflow_conn_id": "mlflow_default"}
    # conf's data_uri (params) is read by the operator and admitted only under the config's data folder or
    # [mlops] data_roots; do not template it into data_uri=, which is trusted as written by the DAG author
    fingerprint = FingerprintDataOperator(task_id="fingerprint_data", multiple_outputs=True, **common)
    run = XComArg(fingerprint, key="mlflow_run_id")  # every later task works on this MLflow run
    validate = ValidateDataOperator(task_id="validate_data", mlflow_run_id=run, **common)
    train = TrainModelOperator(task_id="train_model", mlflow_run_id=run, **common)
    register = RegisterModelOperator(task_id="register_model", mlflow_run_id=run, **common)
    gate = GateModelOperator(task_id="gate_model", mlflow_run_id=run, **common)
    challenger = SetChallengerOperator(task_id="set_challenger", mlflow_run_id=run, **common)
    chain(fingerprint, validate, train, register, gate, challenger)
    # [END howto_operator_training]
