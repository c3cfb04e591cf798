"""airflow-mlops: one YAML file per model becomes governed, reproducible Airflow + MLflow pipelines.

Importing this package is cheap on purpose (DAG files import it at parse time): no mlflow, pandas,
sklearn, great_expectations or evidently here or in ``config`` / ``factories``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["SENSOR_MODULES", "__version__", "get_provider_info"]

INTEGRATION = "airflow-mlops"
"""The one integration every operators/hooks/triggers entry names (Airflow's schema requires a name)."""

# Static on purpose: Airflow reads provider metadata without importing our code, so these lists are not
# discovered at call time; tests/operators/test_operators.py imports every listed module and fails when a
# module defining an operator, sensor or trigger is missing here.
SENSOR_MODULES: list[str] = [
    "airflow_mlops.sensors.approval",
    "airflow_mlops.sensors.base",
    "airflow_mlops.sensors.drift",
    "airflow_mlops.sensors.model_alias",
    "airflow_mlops.sensors.prediction_volume",
]

OPERATOR_MODULES = [
    "airflow_mlops.operators.approval",
    "airflow_mlops.operators.base",
    "airflow_mlops.operators.gates",
    "airflow_mlops.operators.monitoring",
    "airflow_mlops.operators.registry",
    "airflow_mlops.operators.rollout",
    "airflow_mlops.operators.training",
]
HOOK_MODULES = ["airflow_mlops.hooks.mlflow"]
TRIGGER_MODULES = [
    "airflow_mlops.triggers.approval",
    "airflow_mlops.triggers.drift",
    "airflow_mlops.triggers.model_alias",
    "airflow_mlops.triggers.polling",
    "airflow_mlops.triggers.prediction_log",
    "airflow_mlops.triggers.prediction_volume",
    "airflow_mlops.triggers.rollout",
]


def _modules(modules: list[str]) -> list[dict[str, Any]]:
    return [{"integration-name": INTEGRATION, "python-modules": list(modules)}]


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

    Only data: nothing listed here is imported to build it (Airflow imports the paths when it needs them).
    """
    from airflow_mlops.settings import provider_config
    from airflow_mlops.vocabulary import ASSET_SCHEME

    info: dict[str, Any] = {
        "package-name": "airflow-mlops",
        "name": "airflow-mlops",
        "description": "Governed ML pipelines from per-model YAML: validate, train (MLflow), gate, approve, register.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "tags": ["software"],
            }
        ],
        "operators": _modules(OPERATOR_MODULES),
        "hooks": _modules(HOOK_MODULES),
        "triggers": _modules(TRIGGER_MODULES),
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
        # The same class the `airflow.plugins` entry point registers (pyproject.toml), which is what loads it
        # by default. Airflow 3.3 also loads provider-declared plugins when [core] lazy_discover_providers
        # is False, and then reports the second registration ("already registered") as an import error.
        "plugins": [{"name": "airflow-mlops", "plugin-class": "airflow_mlops.ui.plugin.AirflowMlopsPlugin"}],
        "asset-uris": [{"schemes": [ASSET_SCHEME], "handler": "airflow_mlops.vocabulary.normalize_asset_uri"}],
        "config": provider_config(),
    }
    if SENSOR_MODULES:
        info["sensors"] = _modules(SENSOR_MODULES)
    return info
