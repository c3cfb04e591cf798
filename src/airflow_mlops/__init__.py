"""airflow-mlops: one YAML file per model becomes governed, reproducible Airflow + MLflow pipelines.

Importing this package is cheap on purpose (DAG files import it at parse time): no mlflow, pandas,
sklearn, great_expectations or evidently here or in ``config`` / ``factories``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""
    from airflow_mlops.settings import provider_config

    return {
        "package-name": "airflow-mlops",
        "name": "airflow-mlops",
        "description": "Governed ML pipelines from per-model YAML: validate, train (MLflow), gate, approve, register.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "airflow_mlops.hooks.mlflow.MlflowHook",
                "connection-type": "mlflow",
            }
        ],
        "extra-links": [
            "airflow_mlops.ui.links.MlflowRunLink",
            "airflow_mlops.ui.links.MlflowModelVersionLink",
        ],
        "config": provider_config(),
    }
