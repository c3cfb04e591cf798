"""Turn a folder of model configs into Airflow DAGs; a broken config never hides the others.

A config that fails to load becomes a ``<file>__config_error`` DAG whose description shows the
error and whose only task fails with it, so the problem is visible in the Airflow UI, and a
warning (shown by Airflow as a parse warning). Set ``[mlops] strict = true`` to raise instead.
"""

from __future__ import annotations

import gc
import logging
import re
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator

from airflow_mlops import settings
from airflow_mlops.config.loader import config_files, default_config_dir, load_configs
from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.deploy import build_deploy_dag, build_rollback_dag
from airflow_mlops.factories.monitor import build_monitor_dag
from airflow_mlops.factories.train import START_DATE, build_train_dag

log = logging.getLogger(__name__)


class ConfigErrorWarning(UserWarning):
    """A model config could not be loaded; its DAGs were replaced by a ``__config_error`` DAG."""


class ReportConfigErrorOperator(BaseOperator):
    """Fails with the config error, so a run of the placeholder DAG says exactly what to fix."""

    ui_color = "#f4c7c3"

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def execute(self, context: Any) -> None:
        raise ConfigError(self.message)


def error_dag_id(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]", "_", path.name.rsplit(".", 1)[0]) or "config"
    return f"{stem}__config_error"


def build_error_dag(path: Path, error: ConfigError) -> DAG:
    with DAG(
        dag_id=error_dag_id(path),
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=["airflow-mlops", "config-error"],
        description=f"Invalid model config {path.name}: fix the file; the model's DAGs are not built",
        doc_md=f"### Invalid model config `{path}`\n\n```\n{error}\n```\n",
    ) as dag:
        ReportConfigErrorOperator(task_id="report_config_error", message=str(error))
    return dag


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the DAGs are built.

    Building allocates tens of thousands of objects per hundred models and keeps nearly all of them, so
    every automatic full collection walks everything built so far again and frees almost nothing: about
    15 % of a 1,000-model parse, growing with the number of models. The collector comes back (if it was
    on) when the build ends, and collects what little garbage the build left as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_dags(
    namespace: MutableMapping[str, Any] | None = None, config_dir: str | Path | None = None
) -> dict[str, DAG]:
    """Build every model's DAGs from ``config_dir`` (default: the ``[mlops] config_dir`` setting) into ``namespace``."""
    with _gc_paused():
        dags = _build_all(Path(config_dir) if config_dir is not None else default_config_dir())
    if namespace is not None:
        namespace.update(dags)
    return dags


def _build_all(folder: Path) -> dict[str, DAG]:
    result = load_configs(config_files(folder))
    strict = settings.strict()
    dags: dict[str, DAG] = {}
    for path, error in result.errors.items():
        if strict:
            raise error
        log.error("Skipping invalid model config %s:\n%s", path, error)
        warnings.warn(  # stacklevel 3: the DAG file that called build_dags
            f"{path}: invalid model config, its DAGs were not built:\n{error}", ConfigErrorWarning, stacklevel=3
        )
        dags[error_dag_id(path)] = build_error_dag(path, error)
    for loaded in result.configs:
        try:
            builders = [build_train_dag, build_deploy_dag, build_rollback_dag]
            builders += [build_monitor_dag] if loaded.config.monitoring.enabled else []
            built = [builder(loaded) for builder in builders]
        except Exception as exc:  # a builder bug for one model must not hide the others
            if strict:
                raise
            error = ConfigError(f"{loaded.path}: could not build DAGs: {type(exc).__name__}: {exc}")
            log.exception("Could not build DAGs for %s", loaded.path)
            dags[error_dag_id(loaded.path)] = build_error_dag(loaded.path, error)
            continue
        dags.update({dag.dag_id: dag for dag in built})
    return dags
