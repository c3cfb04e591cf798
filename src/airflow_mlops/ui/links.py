"""Operator extra links: from our train / register / gate tasks to the MLflow run and model version.

Airflow 3 computes an operator's own extra links on the worker when the task finishes
(``finalize`` in the task runner calls ``get_link(operator, ti_key=<the running task instance>)``)
and stores each URL as the XCom ``_link_<LinkClass>``; the api-server shows them from there. So the
links are declared on the operators (``operator_extra_links = (MlflowRunLink(), ...)``), not in the
plugin: a plugin's ``operator_extra_links`` would be evaluated inside the api-server at display time,
where the task's XComs and the MLflow connection are read differently.

``get_link`` reads the task's return value (``{"mlflow_run_id": ..., "version": ...}``, as our
operators return it) and, when there is none (a failed gate raises), the operator attribute
``mlflow_link_info`` if the operator set one. The MLflow UI base URL comes from the operator's MLflow
connection (extra ``ui_url``, else an http(s) tracking URI). An empty string means "no link".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from airflow_mlops.ui.data import mlflow_model_version_url, mlflow_run_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

LINK_INFO_ATTR = "mlflow_link_info"


def _return_value(ti_key: Any) -> dict[str, Any]:
    from airflow.sdk.execution_time.xcom import XCom

    try:
        value = XCom.get_value(ti_key=ti_key, key="return_value")
    except Exception as exc:  # no XCom backend reachable, deleted XCom...
        log.debug("extra link: no return value for %s: %s", ti_key, exc)
        return {}
    return dict(value) if isinstance(value, dict) else {}


def link_info(operator: Any, ti_key: Any) -> dict[str, Any]:
    """``mlflow_run_id`` / ``version`` of the task: its return value, else ``operator.mlflow_link_info``."""
    info = _return_value(ti_key)
    fallback = getattr(operator, LINK_INFO_ATTR, None)
    if isinstance(fallback, dict):
        info = {**fallback, **{k: v for k, v in info.items() if v is not None}}
    return info


def mlflow_base_for(operator: Any) -> str | None:
    """The MLflow UI base URL of the operator's MLflow connection (``mlflow_conn_id``)."""
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.ui.sources import mlflow_ui_url

    try:
        return mlflow_ui_url(MlflowHook(mlflow_conn_id=getattr(operator, "mlflow_conn_id", "mlflow_default")))
    except Exception as exc:
        log.warning("extra link: MLflow connection unreadable: %s", type(exc).__name__)
        return None


def model_name_for(operator: Any, info: dict[str, Any]) -> str | None:
    if info.get("model"):
        return str(info["model"])
    name = getattr(operator, "model_name", None)  # MlopsBaseOperator: explicit, or set by the DAG factory
    return str(name) if name else None


class MlflowRunLink(BaseOperatorLink):
    """The MLflow run of the DAG run (the one the train / gate task logged to)."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        info = link_info(operator, ti_key)
        run_id = info.get("mlflow_run_id")
        if not run_id:
            return ""
        return mlflow_run_url(mlflow_base_for(operator), str(run_id)) or ""


class MlflowModelVersionLink(BaseOperatorLink):
    """The registered model version the task registered or gated."""

    name = "MLflow model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        info = link_info(operator, ti_key)
        version = info.get("version")
        model = model_name_for(operator, info) if version else None
        if not version or not model:
            return ""
        return mlflow_model_version_url(mlflow_base_for(operator), model, str(version)) or ""
