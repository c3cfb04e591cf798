"""Read what the Models pages show: configs, MLflow registry and runs, audit trail, prediction log, approvals.

Every reader returns the plain records of :mod:`airflow_mlops.ui.data`; a failing source becomes an
error text on the model (credentials redacted), never a failed page. MLflow is reached through the
model's Airflow connection (:class:`~airflow_mlops.hooks.mlflow.MlflowHook`) as an explicit client
(``get_conn()``): nothing changes process-wide MLflow settings, so concurrent requests (and models on
different MLflow servers) are read in parallel, and a slow or unreachable server holds up only the
requests that need it.

Heavy libraries (mlflow, pandas, pyarrow, Airflow's ORM) are imported inside the functions: importing
this module is cheap, because the plugin is loaded by every Airflow process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from airflow_mlops.monitoring.verdicts import monitoring_experiment
from airflow_mlops.ui.data import (
    ApprovalRecord,
    AuditRecord,
    ModelDetail,
    ModelSummary,
    MonitoringRecord,
    VersionRecord,
    choose_bucket,
    drift_chart,
    metric_chart,
    mlflow_ui_base,
    redact,
    secret_values,
    summarize,
    traffic_charts,
    version_rows,
)
from airflow_mlops.vocabulary import ALIASES

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from airflow_mlops.config.loader import LoadedConfig
    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.hooks.mlflow import MlflowHook

log = logging.getLogger(__name__)

AUDIT_ENTRIES = 10
MONITORING_RUNS_LIST = 1
MONITORING_RUNS_DETAIL = 200
VERSIONS_DETAIL = 50
TRAFFIC_CHARTS = ("error_rate", "latency_p95", "requests")
TRAFFIC_COLUMNS = ("ts", "version", "role", "latency_ms", "error")

_T = TypeVar("_T")


# -- configs and Airflow ------------------------------------------------------------------------------


@dataclass
class Configs:
    models: list[LoadedConfig]
    errors: dict[str, str]


def load_model_configs() -> Configs:
    """The model configs of ``$AIRFLOW_MLOPS_CONFIG_DIR`` (broken files become errors by file name)."""
    from airflow_mlops.config.loader import config_files, default_config_dir, load_configs

    result = load_configs(config_files(default_config_dir()))
    return Configs(models=list(result.configs), errors={path.name: str(exc) for path, exc in result.errors.items()})


def airflow_base_path() -> str:
    """The path the Airflow UI is served under (``[api] base_url``), ending in ``/``."""
    try:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    except Exception:  # pragma: no cover - no Airflow config at all
        base_url = ""
    path = urlsplit(base_url).path or "/"
    return path if path.endswith("/") else path + "/"


def model_dag_ids(loaded: LoadedConfig) -> list[str]:
    return list(loaded.config.dag_ids.values())


def read_approvals(dag_ids: Iterable[str], limit: int = 100) -> list[ApprovalRecord]:
    """Unanswered HITL requests of running task instances of these DAGs, from Airflow's metadata DB."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import State
    from sqlalchemy import or_, select

    ids = sorted(set(dag_ids))
    if not ids:
        return []
    finished = [getattr(s, "value", s) for s in State.finished]
    query = (
        select(
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.state,
            HITLDetail.subject,
            HITLDetail.created_at,
            HITLDetail.assignees,
        )
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(
            HITLDetail.responded_at.is_(None),
            TaskInstance.dag_id.in_(ids),
            or_(TaskInstance.state.is_(None), TaskInstance.state.not_in(finished)),
        )
        .order_by(HITLDetail.created_at.desc())
        .limit(limit)
    )
    with create_session() as session:
        rows = session.execute(query).all()
    return [
        ApprovalRecord(
            dag_id=str(row.dag_id),
            run_id=str(row.run_id),
            task_id=str(row.task_id),
            map_index=int(row.map_index if row.map_index is not None else -1),
            subject=str(row.subject),
            created_at=row.created_at,
            state=str(row.state.value if hasattr(row.state, "value") else row.state) if row.state else None,
            assignees=[str(a.get("id")) for a in (row.assignees or []) if isinstance(a, dict)],
        )
        for row in rows
    ]


# -- MLflow --------------------------------------------------------------------------------------------


def mlflow_ui_url(hook: MlflowHook) -> str | None:
    """The MLflow UI base URL of the hook's connection: extra ``ui_url``, else an http(s) tracking URI."""
    if isinstance(getattr(type(hook), "ui_url", None), property):  # once MlflowHook has it
        value = hook.ui_url  # type: ignore[attr-defined]
        return str(value) if value else None
    conn = hook.get_connection(hook.mlflow_conn_id)
    return mlflow_ui_base(hook.tracking_uri, (conn.extra_dejson or {}).get("ui_url"))


def connection_secrets(hook: MlflowHook) -> list[str]:
    try:
        conn = hook.get_connection(hook.mlflow_conn_id)
    except Exception:
        return []
    return secret_values(conn.password, conn.extra_dejson or {})


@dataclass
class MlflowSnapshot:
    aliases: dict[str, str | None] = field(default_factory=dict)
    canary_percent: float = 0.0
    registered: bool = False
    versions: list[VersionRecord] = field(default_factory=list)
    monitoring: list[MonitoringRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _versions(client: MlflowClient, model: str, limit: int) -> list[VersionRecord]:
    found = client.search_model_versions(f"name = '{model}'", max_results=limit, order_by=["version_number DESC"])
    return [
        VersionRecord(
            version=str(v.version),
            run_id=str(v.run_id) if v.run_id else None,
            created_ms=int(v.creation_timestamp) if v.creation_timestamp else None,
            tags=dict(v.tags or {}),
        )
        for v in found
    ]


def _with_runs(client: MlflowClient, versions: Sequence[VersionRecord]) -> list[VersionRecord]:
    """The versions with their runs' metrics and experiment ids (one ``get_run`` per version)."""
    out = []
    for v in versions:
        if not v.run_id:
            out.append(v)
            continue
        try:
            run = client.get_run(v.run_id)
        except Exception as exc:
            log.warning("models UI: run %s of version %s unreadable: %s", v.run_id, v.version, type(exc).__name__)
            out.append(v)
            continue
        out.append(
            VersionRecord(
                version=v.version,
                run_id=v.run_id,
                experiment_id=str(run.info.experiment_id),
                created_ms=v.created_ms,
                tags=v.tags,
                metrics=dict(run.data.metrics or {}),
            )
        )
    return out


def _monitoring(client: MlflowClient, model: str, limit: int) -> list[MonitoringRecord]:
    experiment = client.get_experiment_by_name(monitoring_experiment(model))
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    return [
        MonitoringRecord(
            run_id=str(run.info.run_id),
            experiment_id=str(run.info.experiment_id),
            start_ms=int(run.info.start_time) if run.info.start_time else None,
            tags=dict(run.data.tags or {}),
            metrics=dict(run.data.metrics or {}),
        )
        for run in runs
    ]


def read_mlflow(hook: MlflowHook, model: str, *, detail: bool, secrets: Sequence[str]) -> MlflowSnapshot:
    """Aliases, canary share, versions (with metrics when ``detail``) and monitoring runs of one model."""
    from airflow_mlops.deploy.promotion import read_state
    from airflow_mlops.exceptions import RegistryError

    snap = MlflowSnapshot()
    try:
        client = hook.get_conn()
    except Exception as exc:
        snap.errors.append(_error("MLflow connection", exc, secrets))
        return snap
    try:
        state = read_state(client, model)
        snap.registered = True
        snap.aliases = {alias: getattr(state, alias) for alias in ALIASES}
        snap.canary_percent = state.canary_percent
    except RegistryError:
        snap.registered = False
    except Exception as exc:
        snap.errors.append(_error("MLflow registry", exc, secrets))
    if snap.registered:
        snap.versions = _guard(
            snap.errors, "MLflow versions", secrets, [], lambda: _versions(client, model, VERSIONS_DETAIL)
        )
        if detail:
            snap.versions = _with_runs(client, snap.versions)
    limit = MONITORING_RUNS_DETAIL if detail else MONITORING_RUNS_LIST
    snap.monitoring = _guard(
        snap.errors, "MLflow monitoring runs", secrets, [], lambda: _monitoring(client, model, limit)
    )
    return snap


# -- prediction log ------------------------------------------------------------------------------------


def prediction_log_location(loaded: LoadedConfig) -> tuple[str | None, str | None]:
    """The prediction log root (config ``serving.prediction_log`` or ``[mlops] prediction_log``)."""
    return loaded.prediction_log()


def read_traffic(loaded: LoadedConfig, hours: int, now: datetime | None = None) -> pd.DataFrame | None:
    from airflow_mlops.hooks.object_storage import prediction_log_storage
    from airflow_mlops.prediction_log import read_predictions

    root, conn_id = prediction_log_location(loaded)
    if root is None:
        return None
    end = now or datetime.now(UTC)
    # only the columns the charts need: inputs and outputs (most of a part file) are never loaded here
    return read_predictions(
        prediction_log_storage(root, conn_id),
        loaded.name,
        end - timedelta(hours=hours),
        end,
        columns=TRAFFIC_COLUMNS,
    )


@functools.lru_cache(maxsize=8)
def audit_trail(url: str) -> AuditTrail:
    """One trail (one connection pool) per state-DB URL per process."""
    from airflow_mlops.deploy.audit import AuditTrail

    return AuditTrail(url)


# -- assembling -----------------------------------------------------------------------------------------


@dataclass
class ModelSources:
    """Reads one model's sources; ``approvals`` were read for all models at once (:func:`collect_approvals`)."""

    loaded: LoadedConfig
    approvals: list[ApprovalRecord] = field(default_factory=list)
    approvals_error: str | None = None

    def hook(self) -> MlflowHook:
        from airflow_mlops.hooks.mlflow import MlflowHook

        return MlflowHook(mlflow_conn_id=self.loaded.config.mlflow_conn_id)

    def audit(self, secrets: Sequence[str], errors: list[str]) -> list[AuditRecord]:
        from airflow_mlops import settings

        def read() -> list[AuditRecord]:
            events = audit_trail(settings.state_db_url()).history(self.loaded.name, limit=AUDIT_ENTRIES)
            return [
                AuditRecord(
                    ts=e.ts,
                    alias=e.alias,
                    from_version=e.from_version,
                    to_version=e.to_version,
                    reason=e.reason,
                    actor=e.actor,
                )
                for e in events
            ]

        return _guard(errors, "audit trail", secrets, [], read)

    def summary(self, *, detail: bool = False) -> tuple[ModelSummary, MlflowSnapshot, str | None, list[str]]:
        name = self.loaded.name
        errors: list[str] = []
        hook = self.hook()
        secrets = connection_secrets(hook)
        base = _guard(errors, "MLflow connection", secrets, None, lambda: mlflow_ui_url(hook))
        snap = MlflowSnapshot()
        if not errors:
            snap = _guard(
                errors,
                "MLflow",
                secrets,
                MlflowSnapshot(),
                lambda: read_mlflow(hook, name, detail=detail, secrets=secrets),
            )
        errors.extend(snap.errors)
        if self.approvals_error:
            errors.append(self.approvals_error)
        summary = summarize(
            name=name,
            description=self.loaded.config.description,
            aliases=snap.aliases,
            canary_percent=snap.canary_percent,
            versions=snap.versions,
            monitoring=snap.monitoring,
            audit=self.audit(secrets, errors),
            approvals=self.approvals,
            mlflow_base=base,
            airflow_base=airflow_base_path(),
            registered=snap.registered,
            errors=errors,
        )
        return summary, snap, base, secrets

    def detail(self, hours: int) -> ModelDetail:
        from airflow_mlops.config.schema import LOWER_IS_BETTER

        cfg = self.loaded.config
        summary, snap, base, secrets = self.summary(detail=True)
        rows = version_rows(snap.versions, snap.aliases, cfg.primary_metric, base, cfg.name)
        bucket = choose_bucket(hours)
        higher = cfg.primary_metric not in LOWER_IS_BETTER
        frame = _guard(summary.errors, "prediction log", secrets, None, lambda: read_traffic(self.loaded, hours))
        canary = cfg.rollout.canary
        thresholds = cfg.monitoring.thresholds
        charts = [
            drift_chart(snap.monitoring, thresholds.psi_warn, thresholds.psi_act),
            *traffic_charts(
                frame, bucket, max_error_rate=canary.max_error_rate, max_latency_p95_ms=canary.max_latency_p95_ms
            ),
            metric_chart(rows, cfg.primary_metric, higher),
        ]
        if frame is None and not any("prediction log" in e for e in summary.errors):
            note = "no prediction log configured (serving.prediction_log or [mlops] prediction_log)"
            charts = [replace(c, note=note) if c.id in TRAFFIC_CHARTS else c for c in charts]
        return ModelDetail(
            summary=summary,
            primary_metric=cfg.primary_metric,
            higher_is_better=higher,
            versions=rows,
            charts=charts,
            window_hours=hours,
            bucket=bucket,
        )


def collect_approvals(
    models: Sequence[LoadedConfig], allowed: Callable[[str], bool]
) -> tuple[dict[str, list[ApprovalRecord]], str | None]:
    """Pending approvals per model, only of DAGs ``allowed(dag_id)`` says the user may see."""
    owner = {dag_id: loaded.name for loaded in models for dag_id in model_dag_ids(loaded)}
    per_model: dict[str, list[ApprovalRecord]] = {loaded.name: [] for loaded in models}
    try:
        records = read_approvals(owner)
    except Exception as exc:
        log.warning("models UI: pending approvals unreadable: %s", exc)
        return per_model, f"pending approvals: unavailable ({type(exc).__name__})"
    for record in records:
        if allowed(record.dag_id):
            per_model[owner[record.dag_id]].append(record)
    return per_model, None


def _error(what: str, exc: BaseException, secrets: Sequence[str]) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"{what}: {type(exc).__name__}" + (f": {text[:300]}" if text else "")
    return redact(message, secrets)


def _guard(errors: list[str], what: str, secrets: Sequence[str], default: _T, read: Callable[[], _T]) -> _T:
    try:
        return read()
    except Exception as exc:
        log.warning("models UI: %s failed: %s", what, redact(repr(exc), secrets))
        errors.append(_error(what, exc, secrets))
        return default
