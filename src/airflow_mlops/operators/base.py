"""Shared plumbing for our operators: the model config, the MLflow hook, the data URI, the DAG run's MLflow run.

Nothing heavy is imported here: operators are constructed at DAG-parse time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator

from airflow_mlops.config.loader import LoadedConfig, load_config, load_inline_config
from airflow_mlops.exceptions import ConfigError, DataError
from airflow_mlops.hooks.mlflow import MlflowHook
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context
    from mlflow import MlflowClient

T = TypeVar("T")

#: DAG-run params of ``<model>__train``; REST callers override them through ``conf``.
PARAM_DATA_URI = "data_uri"
PARAM_DATA_CONN_ID = "data_conn_id"


def given(value: Any) -> str | None:
    """A templated argument's text, ``None`` when unset: Jinja renders an unset value as "" or "None"."""
    text = str(value).strip() if value is not None else ""
    return text if text and text != "None" else None


def announced_data(events: Any) -> dict[str, Any]:
    """The newest ``data_uri``/``data_conn_id`` carried by a triggering Asset event, if any."""
    found: dict[str, Any] = {}
    for asset_events in (events or {}).values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            if extra.get(PARAM_DATA_URI):
                found = {key: extra.get(key) for key in (PARAM_DATA_URI, PARAM_DATA_CONN_ID)}
    return found


class MlopsBaseOperator(BaseOperator):
    """Base for airflow-mlops operators.

    Each operator takes explicit arguments; a model config (``config_path``) is one way to fill the
    ones left unset, read at execute time (the DAG factory passes both).

    :param model_name: Registered model name (templated); defaults to the config's ``name``.
    :param config_path: Path to a model's YAML config (templated, optional): the defaults for every
        argument not given explicitly.
    :param model_config: The same config as a mapping (templated), for DAGs without YAML files;
        validated with the same rules and messages. Give ``config_path`` or ``model_config``, not both.
    :param mlflow_conn_id: Airflow connection of type ``mlflow``.
    :param mlflow_run_id: The training run to work on (templated; e.g. the fingerprint task's
        ``mlflow_run_id`` output); default: the run this DAG run's first task created.
    """

    template_fields: Sequence[str] = ("model_name", "config_path", "model_config", "mlflow_conn_id", "mlflow_run_id")
    template_fields_renderers = {"model_config": "json"}
    ui_color = "#d8ecf3"

    def __init__(
        self,
        *,
        model_name: str | None = None,
        config_path: str | None = None,
        model_config: Mapping[str, Any] | None = None,
        mlflow_conn_id: str = "mlflow_default",
        mlflow_run_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if config_path and model_config is not None:
            raise ValueError(f"{self.task_id}: give config_path or model_config, not both")
        if not model_name and not config_path and model_config is None:
            raise ValueError(f"{self.task_id}: give model_name (and the operator's arguments) or a config_path")
        self.model_name = model_name
        self.config_path = config_path
        self.model_config = model_config
        self.mlflow_conn_id = mlflow_conn_id
        self.mlflow_run_id = mlflow_run_id

    @property
    def has_config(self) -> bool:
        return bool(self.config_path) or self.model_config is not None

    @cached_property
    def loaded(self) -> LoadedConfig:
        if self.model_config is not None:
            return load_inline_config(self.model_config, f"{self.task_id}: model_config")
        if not self.config_path:
            raise ConfigError(
                f"{self.task_id}: this operator was given no config_path, and an argument it needs was not given "
                "explicitly either (see the operator's parameters)"
            )
        return load_config(self.config_path)

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    @property
    def model(self) -> str:
        """The registered model name: ``model_name``, else the config's ``name``."""
        return str(self.model_name) if self.model_name else self.loaded.name

    def write_card(self, client: MlflowClient, version: str | int) -> None:
        """(Re)write ``version``'s model card (:mod:`airflow_mlops.registry.card`) with this model's config.

        Best effort: the card is a view of evidence kept elsewhere (tags, gate report, audit chain), rewritten at
        the next gate, answer or monitoring run; a failed write is logged and never stops the task's own work.
        """
        from airflow_mlops.registry.card import CardText, write_card

        try:
            text = CardText.from_config(self.loaded.config) if self.has_config else CardText()
            write_card(client, self.model, version, text)
        except Exception as exc:
            self.log.warning("model card of %s v%s not written: %s: %s", self.model, version, type(exc).__name__, exc)
            return
        self.log.info("model card of %s v%s written", self.model, version)

    def from_config(self, explicit: T | None, read: Callable[[LoadedConfig], T], what: str) -> T:
        """``explicit`` when given, else what ``read`` takes from the model config (``what`` names it)."""
        if explicit is not None:
            return explicit
        if not self.has_config:
            raise ConfigError(f"{self.task_id}: {what} is not given, and there is no config_path to take it from")
        return read(self.loaded)

    def data_location(
        self, context: Context, uri: str | None = None, conn_id: str | None = None
    ) -> tuple[str, str | None]:
        """The data URI and connection for this DAG run.

        A new-data Asset event's ``data_uri`` wins (the announced data), then the explicit ``uri`` /
        ``conn_id``, then ``conf``/params, then the config. Params always hold the config's default, so
        an override is a value that differs from it. What comes from an Asset event or ``conf`` is
        hostile until admitted (:func:`~airflow_mlops.data.admission.admit_location`: under the config's
        data folder or ``[mlops] data_roots``, an allowed connection); the config and explicit arguments
        are the DAG author's.
        """
        from airflow_mlops.data.admission import admit_location

        cfg = self.loaded.config.data
        params = context.get("params") or {}
        announced = announced_data(context.get("triggering_asset_events"))
        conf_uri = params.get(PARAM_DATA_URI) if params.get(PARAM_DATA_URI) not in (None, "", cfg.uri) else None
        conf_conn = (
            params.get(PARAM_DATA_CONN_ID) if params.get(PARAM_DATA_CONN_ID) not in (None, "", cfg.conn_id) else None
        )
        candidates = [
            ("the triggering Asset event's extra", announced.get(PARAM_DATA_URI), announced.get(PARAM_DATA_CONN_ID)),
            (None, uri, conn_id),
            ("the DAG run's conf", conf_uri, conf_conn),
            (None, cfg.uri, cfg.conn_id),
        ]
        chosen_uri = next((src, value) for src, value, _ in candidates if value)
        chosen_conn = next(((src, value) for src, _, value in candidates if value), (None, None))
        location = self.loaded.resolve(str(chosen_uri[1])) if chosen_uri[0] is None else str(chosen_uri[1])
        connection = str(chosen_conn[1]) if chosen_conn[1] else None
        untrusted = chosen_uri[0] or chosen_conn[0]
        if untrusted is None:
            return location, connection
        return admit_location(
            location,
            connection,
            source=f"{self.task_id}: {untrusted}",
            config_uri=self.loaded.resolve(cfg.uri),
            config_conn_id=cfg.conn_id,
            base=self.loaded.path.parent,
        )

    def dag_run_id(self, context: Context) -> str:
        return str(context["dag_run"].run_id)

    def existing_run(self, client: MlflowClient, context: Context) -> str | None:
        """The MLflow run of this DAG run, if the first task created it already (creates nothing)."""
        from airflow_mlops.registry.versions import experiment_name

        experiment = client.get_experiment_by_name(experiment_name(self.model))
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{Tag.DAG_RUN_ID}` = '{self.dag_run_id(context)}'",
            max_results=1,
        )
        return str(runs[0].info.run_id) if runs else None

    def run_id(self, client: MlflowClient, context: Context) -> str:
        """This DAG run's MLflow run: ``mlflow_run_id`` when given (e.g. the fingerprint task's output),
        else the run the first task created (found by the DAG run id tag).

        Also the run's config check: the config must still be the one the run recorded, so every
        task of a DAG run works with the config its lineage names.
        """
        explicit = given(self.mlflow_run_id)
        if explicit:
            return self._given_run(client, explicit, context)
        run_id = self.existing_run(client, context)
        if run_id is None:
            raise DataError(
                f"no MLflow run for DAG run {self.dag_run_id(context)!r} of {self.model}; "
                "run the fingerprint_data task first"
            )
        self.check_config_unchanged(client.get_run(run_id).data.tags.get(Tag.CONFIG_SHA256), context)
        return run_id

    def _given_run(self, client: MlflowClient, run_id: str, context: Context) -> str:
        """An explicit run id must name a training run of this model (never another model's run)."""
        from mlflow.exceptions import MlflowException

        if not re.fullmatch(r"[0-9a-f]{32}", run_id):
            raise DataError(f"{self.task_id}: mlflow_run_id: got {run_id!r}; expected a 32-character MLflow run id")
        try:
            tags = client.get_run(run_id).data.tags
        except MlflowException as exc:
            raise DataError(f"{self.task_id}: mlflow_run_id: no MLflow run {run_id!r}: {exc}") from exc
        if tags.get(Tag.MODEL) != self.model or Tag.DATA_SHA256 not in tags:
            raise DataError(
                f"{self.task_id}: mlflow_run_id: run {run_id} is not a training run of {self.model!r} "
                f"(its model tag is {tags.get(Tag.MODEL)!r})"
            )
        self.check_config_unchanged(tags.get(Tag.CONFIG_SHA256), context)
        return run_id

    def check_config_unchanged(self, recorded: str | None, context: Context) -> None:
        """Refuse to go on when the YAML changed since this DAG run recorded its hash."""
        if recorded and recorded != self.loaded.sha256:
            raise ConfigError(
                f"{self.loaded.path}: changed during DAG run {self.dag_run_id(context)!r}: the run recorded config "
                f"sha256 {recorded}, the file now has {self.loaded.sha256}; start a new DAG run to use the edited "
                "config (this run keeps the lineage it recorded)"
            )

    def read_verified_data(self, client: MlflowClient, run_id: str) -> pd.DataFrame:
        """Read the data again and insist it is the exact content the run fingerprinted."""
        from airflow_mlops.data.snapshot import read_snapshot, recorded_files

        tags = client.get_run(run_id).data.tags
        snapshot = read_snapshot(
            recorded_files(tags), tags.get(Tag.DATA_CONN_ID) or None, self.loaded.config.data.format
        )
        uri, actual, frame = tags[Tag.DATA_URI], snapshot.sha256, snapshot.frame
        if actual != tags[Tag.DATA_SHA256]:
            raise DataError(
                f"{uri} changed during the DAG run: fingerprinted sha256 {tags[Tag.DATA_SHA256]}, now {actual}; "
                "start a new DAG run to train on the new data"
            )
        return frame
