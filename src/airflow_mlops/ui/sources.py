"""Read what the Models pages show: configs, MLflow registry and runs, audit trail, prediction log, approvals.

Every reader returns the plain records of :mod:`airflow_mlops.ui.data`; a failing source becomes an
error text on the model (credentials redacted), never a failed page. MLflow is reached through the
model's Airflow connection (:class:`~airflow_mlops.hooks.mlflow.MlflowHook`) as an explicit client
(``get_conn()``): nothing changes process-wide MLflow settings, so concurrent requests (and models on
different MLflow servers) are read in parallel, and a slow or unreachable server holds up only the
requests that need it.

A page does not wait for MLflow longer than ``[mlops] ui_mlflow_deadline`` seconds (:func:`summaries_within`,
:meth:`ModelSources.detail`): the reads run on a per-process pool of worker threads (:class:`MlflowReaders`),
and a model whose read is not done by the deadline is shown with the error
``MLflow did not answer within N s`` while its read is abandoned. MLflow's own per-call bounds
(``MLFLOW_HTTP_REQUEST_TIMEOUT``, default 120 s, and ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7 with
backoff) are read by mlflow from ``os.environ`` at every call (``mlflow.utils.rest_utils.http_request``), and
``MlflowClient`` has no per-client setting for them; they are not changed here (that would be process-wide
state). They decide how long an abandoned read keeps its worker: set them in the api-server's environment
to free workers sooner.

Heavy libraries (mlflow, pandas, pyarrow, Airflow's ORM) are imported inside the functions: importing
this module is cheap, because the plugin is loaded by every Airflow process.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
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
from airflow_mlops.vocabulary import ALIASES, Tag

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from airflow_mlops.config.loader import LoadedConfig
    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.registry.card import ModelCard

log = logging.getLogger(__name__)

AUDIT_ENTRIES = 10
MONITORING_RUNS_LIST = 1
MONITORING_RUNS_DETAIL = 200
VERSIONS_DETAIL = 50
TRAFFIC_CHARTS = ("error_rate", "latency_p95", "requests")
TRAFFIC_COLUMNS = ("ts", "version", "role", "latency_ms", "error")
#: Worker threads per process that read MLflow for the Models pages (I/O-bound: one model's reads each).
MLFLOW_READERS = 8

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
    #: The registered model's ``mlops.target.applied`` tag (raw, untrusted): the endpoint layout a cloud
    #: target last applied. Shown as "last applied", never as what the endpoint serves now.
    target_applied: str | None = None


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
        READERS.check_wanted()
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
    """Aliases, canary share, applied endpoint layout, versions (with metrics when ``detail``) and monitoring
    runs of one model. The registered model (aliases and tags) is one ``get_registered_model`` call."""
    from airflow_mlops.deploy.promotion import read_state_and_tags
    from airflow_mlops.exceptions import RegistryError

    snap = MlflowSnapshot()
    try:
        client = hook.get_conn()
    except Exception as exc:
        snap.errors.append(_error("MLflow connection", exc, secrets))
        return snap
    try:
        state, tags = read_state_and_tags(client, model)
        snap.registered = True
        snap.aliases = {alias: getattr(state, alias) for alias in ALIASES}
        snap.canary_percent = state.canary_percent
        snap.target_applied = tags.get(Tag.TARGET_APPLIED)
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

    def summary(
        self, *, detail: bool = False, secrets: list[str] | None = None
    ) -> tuple[ModelSummary, MlflowSnapshot, str | None, list[str]]:
        """Everything read from MLflow and the audit trail (blocks as long as they do: see :func:`summaries_within`)."""
        name = self.loaded.name
        errors: list[str] = []
        hook = self.hook()
        if secrets is None:
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
            target=self.loaded.config.rollout.target,
            endpoint=self.endpoint(),
            target_applied=snap.target_applied,
        )
        return summary, snap, base, secrets

    def endpoint(self) -> str | None:
        """A cloud target's endpoint name (config ``rollout.target_options.endpoint_name``); ``None`` for local."""
        name = getattr(self.loaded.config.rollout.target_options, "endpoint_name", None)
        return str(name) if name else None

    def unavailable(self, message: str) -> ModelSummary:
        """The list row of a model whose MLflow read did not finish in time: its config, approvals and ``message``."""
        return summarize(
            name=self.loaded.name,
            description=self.loaded.config.description,
            aliases={},
            canary_percent=0.0,
            versions=[],
            monitoring=[],
            audit=[],
            approvals=self.approvals,
            mlflow_base=None,
            airflow_base=airflow_base_path(),
            errors=[message, *([self.approvals_error] if self.approvals_error else [])],
            target=self.loaded.config.rollout.target,
            endpoint=self.endpoint(),
        )

    def detail(self, hours: int, deadline: float) -> ModelDetail:
        """The model page. MLflow is read on :data:`READERS` while this thread reads the prediction log, and is
        waited for until ``deadline`` seconds after the call (then the page shows it as unavailable)."""
        from airflow_mlops.config.schema import LOWER_IS_BETTER

        cfg = self.loaded.config
        until = time.monotonic() + deadline
        secrets = connection_secrets(self.hook())
        read = READERS.submit(lambda: self.summary(detail=True, secrets=secrets))
        traffic_errors: list[str] = []
        frame = _guard(traffic_errors, "prediction log", secrets, None, lambda: read_traffic(self.loaded, hours))
        READERS.wait([read], until)
        result = _settled(read, deadline)
        if isinstance(result, str):
            summary, snap, base = self.unavailable(result), MlflowSnapshot(), None
        else:
            summary, snap, base, _ = result
        summary.errors.extend(traffic_errors)
        rows = version_rows(snap.versions, snap.aliases, cfg.primary_metric, base, cfg.name)
        bucket = choose_bucket(hours)
        higher = cfg.primary_metric not in LOWER_IS_BETTER
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


def summaries_within(sources: Sequence[ModelSources], deadline: float) -> list[ModelSummary]:
    """Every model's list row, read in parallel on :data:`READERS` and waited for at most ``deadline`` seconds.

    A model whose read is not done by then (or could not start: every reader of the process is stuck on
    earlier reads) is shown by :meth:`ModelSources.unavailable`, with ``MLflow did not answer within N s``.
    """
    until = time.monotonic() + deadline
    reads = [READERS.submit(functools.partial(_list_row, source)) for source in sources]
    READERS.wait(reads, until)
    out = []
    for source, read in zip(sources, reads, strict=True):
        result = _settled(read, deadline)
        out.append(source.unavailable(result) if isinstance(result, str) else result)
    return out


def card_within(loaded: LoadedConfig, version: str, deadline: float) -> ModelCard | str | None:
    """``version``'s model card, read on :data:`READERS` and waited for at most ``deadline`` seconds, like every
    page; ``None`` when MLflow has no such version, the error text to show when it could not be read in time."""
    from mlflow.exceptions import MlflowException

    def read() -> ModelCard:
        from airflow_mlops.hooks.mlflow import MlflowHook
        from airflow_mlops.registry.card import CardText, build_card

        hook = MlflowHook(loaded.config.mlflow_conn_id)
        secrets = connection_secrets(hook)
        card = build_card(hook.get_conn(), loaded.name, version, CardText.from_config(loaded.config))
        return replace(card, problems=[redact(p, secrets) for p in card.problems])

    until = time.monotonic() + deadline
    future = READERS.submit(read)
    READERS.wait([future], until)
    if future is not None and future.done() and not future.cancelled():
        exc = future.exception()
        if isinstance(exc, MlflowException) and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
    return _settled(future, deadline)


def _list_row(source: ModelSources) -> ModelSummary:
    return source.summary()[0]


def _settled(read: Future[_T] | None, deadline: float) -> _T | str:
    """The read's result, or the error text to show instead (late, refused, or failed outside its guards)."""
    if read is None:
        busy = "not asked: every MLflow reader of this server process is still waiting on earlier requests"
        return f"MLflow did not answer within {deadline:g} s ({busy})"
    if not read.done() or read.cancelled():
        return f"MLflow did not answer within {deadline:g} s"
    exc = read.exception()
    if exc is not None:
        log.warning("models UI: MLflow read failed: %s", redact(repr(exc)))
        return _error("MLflow", exc, [])
    return read.result()


class MlflowReaders:
    """Worker threads for the Models pages' MLflow reads, shared by every request of the process.

    A page submits its reads and waits for them until its deadline (:meth:`wait`); then it gives up on the rest:
    a read still queued is cancelled and never runs, a read already running keeps its worker until MLflow
    answers or mlflow's own HTTP timeout ends it. So threads never exceed ``workers``, and the queue holds only
    the reads of pages still waiting: a server that never answers cannot pile up threads or work across
    requests. While every worker is held by such an abandoned read, :meth:`submit` refuses at once (``None``)
    and the page shows the model as unavailable without waiting out its deadline.

    An abandoned read also stops asking MLflow: the readers check :meth:`check_wanted` before each call they
    make (a call already waiting on the server cannot be interrupted), so a slow server costs one call per
    abandoned read, not the dozens a model page makes.

    The workers are daemon threads: a read stuck on a server that never answers does not hold up the
    api-server's exit (a ``ThreadPoolExecutor`` joins its threads at exit).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"MlflowReaders needs at least one worker, got {workers}")
        self.workers = workers
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._abandoned: set[Future[Any]] = set()
        self._current = threading.local()  # the read a worker is running

    @property
    def abandoned(self) -> int:
        """Reads that a page gave up on and that still hold a worker."""
        with self._lock:
            return len(self._abandoned)

    def submit(self, read: Callable[[], _T]) -> Future[_T] | None:
        """Queue ``read``; ``None`` when every worker is held by an abandoned read (it would not start in time)."""
        with self._lock:
            if len(self._abandoned) >= self.workers:
                return None
            if self._threads < self.workers:
                threading.Thread(target=self._work, name=f"mlops-ui-mlflow-{self._threads}", daemon=True).start()
                self._threads += 1
        future: Future[_T] = Future()
        self._queue.put((future, read))
        return future

    def wait(self, reads: Iterable[Future[Any] | None], until: float) -> None:
        """Wait for ``reads`` until the ``time.monotonic()`` instant ``until``, then give up on the unfinished ones."""
        pending = [read for read in reads if read is not None]
        _, late = concurrent.futures.wait(pending, timeout=max(0.0, until - time.monotonic()))
        self._abandon(late)

    def check_wanted(self) -> None:
        """Raise :class:`_Abandoned` inside a read whose page gave up on it (a no-op anywhere else)."""
        current = getattr(self._current, "read", None)
        if current is not None:
            with self._lock:
                if current in self._abandoned:
                    raise _Abandoned()

    def _abandon(self, reads: Collection[Future[Any]]) -> None:
        for read in reads:
            if read.cancel():  # still queued: it never runs
                continue
            with self._lock:
                self._abandoned.add(read)
            read.add_done_callback(self._finished)  # runs at once if it finished meanwhile

    def _finished(self, read: Future[Any]) -> None:
        with self._lock:
            self._abandoned.discard(read)

    def _work(self) -> None:
        while True:
            future, read = self._queue.get()
            if future.set_running_or_notify_cancel():
                self._current.read = future
                try:
                    result = read()
                except BaseException as exc:  # handed to the page, like a ThreadPoolExecutor does
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                finally:
                    self._current.read = None
            del future, read  # a finished read's result is the page's, not this idle thread's


class _Abandoned(BaseException):  # a signal, like asyncio.CancelledError, not an error
    """Stops a read whose page gave up on it. A ``BaseException``, so that the ``except Exception`` of every
    source guard lets it through instead of recording it and carrying on with the next MLflow call."""


#: The process's MLflow readers for the Models pages.
READERS = MlflowReaders(MLFLOW_READERS)


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
    READERS.check_wanted()
    try:
        return read()
    except Exception as exc:
        log.warning("models UI: %s failed: %s", what, redact(repr(exc), secrets))
        errors.append(_error(what, exc, secrets))
        return default
