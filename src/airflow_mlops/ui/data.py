"""Page models of the Models UI, built by pure functions from plain inputs (no Airflow, MLflow or I/O).

:mod:`airflow_mlops.ui.sources` reads the registry, the audit trail, the monitoring runs, the prediction
log and Airflow's pending approvals into the small ``*Record`` classes below; the functions here turn
them into what the pages and the JSON API show. Everything returned is made of dataclasses whose
:func:`to_jsonable` form is plain JSON.

Nothing built here may carry a credential: MLflow links are built from the UI base URL with any
``user:password@`` removed (:func:`mlflow_ui_base`), tracking URIs that are not http(s) (``sqlite:``,
``postgresql://user:pw@...``) are never shown, and error texts pass through :func:`redact`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from airflow_mlops.vocabulary import ALIASES, Role, Tag

if TYPE_CHECKING:
    import pandas as pd

PSI_PREFIX = "psi."
#: The endpoint layout last applied is shown in at most this many characters (the tag is untrusted text).
MAX_LAYOUT_TEXT = 200
#: A ``mlops.target.applied`` tag longer than this is not parsed (MLflow allows 8000 characters; ours are short).
MAX_LAYOUT_TAG = 8000

XKind = Literal["time", "category"]


# -- links --------------------------------------------------------------------------------------------


def mlflow_ui_base(tracking_uri: str | None, ui_url: str | None = None) -> str | None:
    """The MLflow UI's base URL for links: ``ui_url`` (connection extra) else an http(s) tracking URI.

    Any ``user:password@`` part, query and fragment are dropped; a non-http(s) URI (``sqlite:``,
    ``postgresql://...``, ``databricks``) gives ``None`` (there is no UI to link to, and such URIs
    may hold credentials).
    """
    for candidate in (ui_url, tracking_uri):
        if not candidate:
            continue
        parts = urlsplit(str(candidate).strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            continue
        host = parts.hostname
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))
    return None


def mlflow_run_url(base: str | None, run_id: str | None, experiment_id: str | None = None) -> str | None:
    """``<base>/#/experiments/<id>/runs/<run>`` (or the direct ``/#/runs/<run>`` route without an experiment)."""
    if not base or not run_id:
        return None
    if experiment_id:
        return f"{base}/#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(run_id, safe='')}"
    return f"{base}/#/runs/{quote(run_id, safe='')}"


def mlflow_model_version_url(base: str | None, model: str, version: str | None) -> str | None:
    if not base or not version:
        return None
    return f"{base}/#/models/{quote(model, safe='')}/versions/{quote(str(version), safe='')}"


def mlflow_model_url(base: str | None, model: str) -> str | None:
    return f"{base}/#/models/{quote(model, safe='')}" if base else None


def required_actions_url(airflow_base: str, *, pending_only: bool = True) -> str:
    """Airflow's global required-actions page (``/required_actions``)."""
    return _join(airflow_base, "required_actions") + ("?response_received=false" if pending_only else "")


def required_action_url(airflow_base: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The required-actions tab of one task instance, as the Airflow 3 UI routes it."""
    path = f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    if map_index is not None and map_index >= 0:
        path += f"/mapped/{map_index}"
    return _join(airflow_base, path + "/required_actions")


def _join(base: str, path: str) -> str:
    return (base if base.endswith("/") else base + "/") + path


# -- redaction ----------------------------------------------------------------------------------------

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SECRET_KEY = re.compile(r"pass|secret|token|key|credential|auth|sas", re.IGNORECASE)


def secret_values(password: str | None, extra: Mapping[str, Any] | None) -> list[str]:
    """The values of a connection that must never be shown: its password and secret-looking extras."""
    found = [password] if password else []
    for key, value in (extra or {}).items():
        if isinstance(value, str) and value and _SECRET_KEY.search(str(key)):
            found.append(value)
    return found


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret replaced by ``***`` and URL credentials (``user:pw@``) removed."""
    out = _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        out = out.replace(secret, "***")
    return out


# -- inputs (read by sources.py) ---------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRecord:
    """One registered model version, as read from the registry (and its run, when read)."""

    version: str
    run_id: str | None = None
    experiment_id: str | None = None
    created_ms: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitoringRecord:
    """One run of the monitoring experiment ``airflow-mlops/<model>/monitoring``."""

    run_id: str
    experiment_id: str | None = None
    start_ms: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def window_end(self) -> str | None:
        return self.tags.get(Tag.WINDOW_END) or _iso_ms(self.start_ms)

    @property
    def act(self) -> bool | None:
        raw = self.tags.get(Tag.DRIFT_ACT)
        return None if raw is None else raw.strip().lower() == "true"

    @property
    def disagreement(self) -> str | None:
        return self.tags.get(Tag.DRIFT_DISAGREEMENT) or None

    @property
    def feedback_warning(self) -> str | None:
        return self.tags.get(Tag.FEEDBACK_WARNING) or None

    @property
    def label_coverage(self) -> float | None:
        value = self.metrics.get("label_coverage")
        return float(value) if value is not None and _finite(value) else None

    @property
    def psi(self) -> dict[str, float]:
        return {
            key[len(PSI_PREFIX) :]: float(value)
            for key, value in self.metrics.items()
            if key.startswith(PSI_PREFIX) and _finite(value)
        }


@dataclass(frozen=True)
class AuditRecord:
    ts: datetime
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str


@dataclass(frozen=True)
class ApprovalRecord:
    """A HITL request of one of the model's DAGs that nobody answered yet."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    subject: str
    created_at: datetime | None
    state: str | None = None
    assignees: Sequence[str] = ()


# -- outputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    version: str
    result: str
    report: str | None = None
    version_url: str | None = None


@dataclass(frozen=True)
class DriftResult:
    run_id: str
    window_end: str | None
    act: bool | None
    scores: dict[str, float]
    max_feature: str | None
    max_psi: float | None
    run_url: str | None = None
    #: What evidently (same PSI thresholds) concluded differently from our statistics, if anything.
    disagreement: str | None = None
    #: Share of the window's sampled answers that received a label.
    label_coverage: float | None = None
    #: Labels arrived for one decision only (a hidden feedback loop?).
    feedback_warning: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    ts: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str


@dataclass(frozen=True)
class PendingApproval:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    subject: str
    created_at: str | None
    state: str | None
    assignees: list[str]
    url: str


@dataclass(frozen=True)
class VersionRow:
    version: str
    run_id: str | None
    created_at: str | None
    gate: str | None
    gate_report: str | None
    metric: float | None
    aliases: list[str]
    rollback_reason: str | None
    rejected_reason: str | None
    run_url: str | None
    version_url: str | None


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[str, float | None]]


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    x_kind: XKind
    y_label: str
    series: list[Series]
    thresholds: list[tuple[str, float]] = field(default_factory=list)
    note: str = ""

    @property
    def empty(self) -> bool:
        return not any(value is not None for s in self.series for _, value in s.points)


@dataclass
class ModelSummary:
    """One row of the list page (and the head of the model page)."""

    name: str
    description: str = ""
    champion: str | None = None
    challenger: str | None = None
    canary: str | None = None
    shadow: str | None = None
    previous: str | None = None
    canary_percent: float = 0.0
    traffic: dict[str, Any] = field(default_factory=dict)
    last_gate: GateResult | None = None
    last_drift: DriftResult | None = None
    pending_approvals: list[PendingApproval] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    links: dict[str, str | None] = field(default_factory=dict)
    registered: bool = True
    errors: list[str] = field(default_factory=list)
    #: The config's ``rollout.target``: ``local`` (the bundled gateway), ``sagemaker`` or ``azureml``.
    target: str = "local"
    #: A cloud target's endpoint (config ``rollout.target_options.endpoint_name``); ``None`` for ``local``.
    endpoint: str | None = None
    #: A cloud target's endpoint layout as airflow-mlops last applied it (registered-model tag
    #: ``mlops.target.applied``, e.g. ``"v1 95%, v2 5%"``), not read from the cloud: ``None`` when unknown
    #: (never applied, unreadable tag, or not read). ``airflow-mlops status <model>`` shows the live endpoint.
    endpoint_layout: str | None = None


@dataclass
class ModelDetail:
    summary: ModelSummary
    primary_metric: str
    higher_is_better: bool
    versions: list[VersionRow]
    charts: list[Chart]
    window_hours: int
    bucket: str


def to_jsonable(value: Any) -> Any:
    """Dataclasses, tuples, datetimes and floats -> JSON-ready values (NaN/inf become ``None``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- builders ----------------------------------------------------------------------------------------


def traffic_split(
    champion: str | None, canary: str | None, canary_percent: float, shadow: str | None
) -> dict[str, Any]:
    """Who answers what share of requests; the shadow gets a copy of every request and answers none."""
    percent = min(max(float(canary_percent), 0.0), 100.0) if canary else 0.0
    return {
        "champion": {"version": champion, "percent": (100.0 - percent) if champion else 0.0},
        "canary": {"version": canary, "percent": percent},
        "shadow": {"version": shadow, "mirrored": shadow is not None},
    }


def last_gate(versions: Iterable[VersionRecord], mlflow_base: str | None, model: str) -> GateResult | None:
    """The gate result of the newest version that has one."""
    gated = [v for v in versions if v.tags.get(Tag.GATE)]
    if not gated:
        return None
    newest = max(gated, key=lambda v: _version_key(v.version))
    return GateResult(
        version=newest.version,
        result=newest.tags[Tag.GATE],
        report=newest.tags.get(Tag.GATE_REPORT),
        version_url=mlflow_model_version_url(mlflow_base, model, newest.version),
    )


def drift_result(run: MonitoringRecord, mlflow_base: str | None) -> DriftResult:
    scores = dict(sorted(run.psi.items()))
    top = max(scores.items(), key=lambda item: item[1]) if scores else None
    return DriftResult(
        run_id=run.run_id,
        window_end=run.window_end,
        act=run.act,
        scores=scores,
        max_feature=top[0] if top else None,
        max_psi=top[1] if top else None,
        run_url=mlflow_run_url(mlflow_base, run.run_id, run.experiment_id),
        disagreement=run.disagreement,
        label_coverage=run.label_coverage,
        feedback_warning=run.feedback_warning,
    )


def sort_monitoring(runs: Iterable[MonitoringRecord]) -> list[MonitoringRecord]:
    """Oldest window first (window end, then run start)."""
    return sorted(runs, key=lambda r: (_sortable_time(r.window_end), r.start_ms or 0))


def last_drift(runs: Iterable[MonitoringRecord], mlflow_base: str | None) -> DriftResult | None:
    ordered = sort_monitoring(runs)
    return drift_result(ordered[-1], mlflow_base) if ordered else None


def audit_entries(events: Iterable[AuditRecord]) -> list[AuditEntry]:
    """Newest first."""
    rows = [
        AuditEntry(
            ts=_iso(e.ts),
            alias=e.alias,
            from_version=e.from_version,
            to_version=e.to_version,
            reason=e.reason,
            actor=e.actor,
        )
        for e in events
    ]
    return list(reversed(rows))


def pending_approvals(records: Iterable[ApprovalRecord], airflow_base: str) -> list[PendingApproval]:
    """Newest request first, each with the link to its required-actions page."""
    rows = sorted(records, key=lambda r: r.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return [
        PendingApproval(
            dag_id=r.dag_id,
            run_id=r.run_id,
            task_id=r.task_id,
            map_index=r.map_index,
            subject=r.subject,
            created_at=_iso(r.created_at) if r.created_at else None,
            state=r.state,
            assignees=list(r.assignees),
            url=required_action_url(airflow_base, r.dag_id, r.run_id, r.task_id, r.map_index),
        )
        for r in rows
    ]


def applied_layout_text(raw: str | None) -> str | None:
    """What the ``mlops.target.applied`` tag says was last applied (``"v1 95%, v2 5%"``), at most
    :data:`MAX_LAYOUT_TEXT` characters; ``None`` for a missing, oversized or unreadable tag (never raises:
    the tag is untrusted text from the registry)."""
    if not raw or len(raw) > MAX_LAYOUT_TAG:
        return None
    from airflow_mlops.deploy.sagemaker import EndpointLayout  # imported here: it pulls in SQLAlchemy

    try:
        layout = EndpointLayout.from_json(raw)
        text = layout.describe() if layout is not None else None
    except Exception:  # e.g. RecursionError on deeply nested JSON, which from_json does not catch
        return None
    if text is None:
        return None
    return text if len(text) <= MAX_LAYOUT_TEXT else text[: MAX_LAYOUT_TEXT - 1] + "\u2026"


def summarize(
    *,
    name: str,
    description: str,
    aliases: Mapping[str, str | None],
    canary_percent: float,
    versions: Sequence[VersionRecord],
    monitoring: Sequence[MonitoringRecord],
    audit: Sequence[AuditRecord],
    approvals: Sequence[ApprovalRecord],
    mlflow_base: str | None,
    airflow_base: str,
    registered: bool = True,
    errors: Sequence[str] = (),
    target: str = "local",
    endpoint: str | None = None,
    target_applied: str | None = None,
) -> ModelSummary:
    """The list page's view of one model. ``target_applied`` is the raw ``mlops.target.applied`` tag of the
    registered model (read for a cloud target only; ignored for ``local``)."""
    values = {alias: aliases.get(alias) for alias in ALIASES}
    links: dict[str, str | None] = {"mlflow_model": mlflow_model_url(mlflow_base, name) if registered else None}
    for alias in ALIASES:
        links[f"mlflow_{alias}"] = mlflow_model_version_url(mlflow_base, name, values[alias])
    return ModelSummary(
        name=name,
        description=description,
        champion=values["champion"],
        challenger=values["challenger"],
        canary=values["canary"],
        shadow=values["shadow"],
        previous=values["previous"],
        canary_percent=float(canary_percent) if values["canary"] else 0.0,
        traffic=traffic_split(values["champion"], values["canary"], canary_percent, values["shadow"]),
        last_gate=last_gate(versions, mlflow_base, name),
        last_drift=last_drift(monitoring, mlflow_base),
        pending_approvals=pending_approvals(approvals, airflow_base),
        audit=audit_entries(audit),
        links=links,
        registered=registered,
        errors=list(errors),
        target=target,
        endpoint=endpoint if target != "local" else None,
        endpoint_layout=applied_layout_text(target_applied) if target != "local" else None,
    )


def version_rows(
    versions: Iterable[VersionRecord],
    aliases: Mapping[str, str | None],
    metric: str,
    mlflow_base: str | None,
    model: str,
) -> list[VersionRow]:
    """Every version read, oldest first, with its primary metric, gate and the aliases pointing at it."""
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        if version is not None:
            by_version.setdefault(str(version), []).append(alias)
    rows = []
    for v in sorted(versions, key=lambda v: _version_key(v.version)):
        value = v.metrics.get(metric)
        rows.append(
            VersionRow(
                version=v.version,
                run_id=v.run_id,
                created_at=_iso_ms(v.created_ms),
                gate=v.tags.get(Tag.GATE),
                gate_report=v.tags.get(Tag.GATE_REPORT),
                metric=float(value) if value is not None and _finite(value) else None,
                aliases=sorted(by_version.get(v.version, [])),
                rollback_reason=v.tags.get(Tag.ROLLBACK_REASON),
                rejected_reason=v.tags.get(Tag.REJECTED_REASON),
                run_url=mlflow_run_url(mlflow_base, v.run_id, v.experiment_id),
                version_url=mlflow_model_version_url(mlflow_base, model, v.version),
            )
        )
    return rows


def metric_chart(rows: Sequence[VersionRow], metric: str, higher_is_better: bool) -> Chart:
    """The primary metric (held-out evaluation) across versions."""
    points = [(f"v{r.version}", r.metric) for r in rows]
    better = "higher" if higher_is_better else "lower"
    return Chart(
        id="primary_metric",
        title=f"{metric} across versions ({better} is better)",
        x_kind="category",
        y_label=metric,
        series=[Series(metric, points)],
    )


def drift_chart(runs: Iterable[MonitoringRecord], psi_warn: float, psi_act: float) -> Chart:
    """PSI per feature over time (one series per feature), with the warn/act thresholds."""
    ordered = sort_monitoring(runs)
    features = sorted({name for run in ordered for name in run.psi})
    series = [Series(name, [(run.window_end or "", run.psi.get(name)) for run in ordered]) for name in features]
    return Chart(
        id="drift",
        title="Drift per feature (PSI) by monitoring window",
        x_kind="time",
        y_label="PSI",
        series=series,
        thresholds=[("warn", float(psi_warn)), ("act", float(psi_act))],
    )


def choose_bucket(hours: int) -> str:
    """Minute buckets for short windows (<= 3 h), hourly buckets otherwise."""
    return "minute" if hours <= 3 else "hour"


def traffic_charts(
    frame: pd.DataFrame | None,
    bucket: str,
    *,
    max_error_rate: float | None = None,
    max_latency_p95_ms: float | None = None,
) -> list[Chart]:
    """Error rate and p95 latency per (version, role) and time bucket, from the prediction log's rows.

    ``frame`` has the prediction log's columns ``ts`` (UTC), ``version``, ``role``, ``latency_ms`` and
    ``error`` (``None`` when the request succeeded); ``bucket`` is ``"minute"`` or ``"hour"``.
    """
    error_series: list[Series] = []
    latency_series: list[Series] = []
    requests_series: list[Series] = []
    if frame is not None and len(frame):
        import pandas as pd

        data = pd.DataFrame(
            {
                "ts": pd.to_datetime(frame["ts"], utc=True).dt.floor("min" if bucket == "minute" else "h"),
                "key": "v" + frame["version"].astype(str) + " " + frame["role"].astype(str),
                "failed": frame["error"].notna() & (frame["error"].astype(str) != ""),
                "latency": pd.to_numeric(frame["latency_ms"], errors="coerce"),
            }
        )
        grouped = data.groupby(["key", "ts"], sort=True)
        stats = pd.DataFrame(
            {
                "requests": grouped.size(),
                "error_rate": grouped["failed"].mean(),
                "p95": grouped["latency"].quantile(0.95),
            }
        ).reset_index()
        buckets = sorted(stats["ts"].unique())
        labels = {ts: _iso(pd.Timestamp(ts).to_pydatetime()) for ts in buckets}
        for key in sorted(stats["key"].unique(), key=_series_order):
            part = stats[stats["key"] == key].set_index("ts")
            error_series.append(Series(key, [(labels[ts], _cell(part, ts, "error_rate")) for ts in buckets]))
            latency_series.append(Series(key, [(labels[ts], _cell(part, ts, "p95")) for ts in buckets]))
            requests_series.append(Series(key, [(labels[ts], _cell(part, ts, "requests")) for ts in buckets]))
    per = "minute" if bucket == "minute" else "hour"
    return [
        Chart(
            id="error_rate",
            title=f"Error rate per {per}: canary vs champion",
            x_kind="time",
            y_label="error rate",
            series=error_series,
            thresholds=[("canary max", float(max_error_rate))] if max_error_rate is not None else [],
        ),
        Chart(
            id="latency_p95",
            title=f"Latency p95 (ms) per {per}: canary vs champion",
            x_kind="time",
            y_label="ms",
            series=latency_series,
            thresholds=[("canary max", float(max_latency_p95_ms))] if max_latency_p95_ms is not None else [],
        ),
        Chart(
            id="requests",
            title=f"Requests per {per}",
            x_kind="time",
            y_label="requests",
            series=requests_series,
        ),
    ]


def _series_order(key: str) -> tuple[int, str]:
    role = key.rsplit(" ", 1)[-1]
    return ({Role.CHAMPION: 0, Role.CANARY: 1, Role.SHADOW: 2}.get(role, 3), key)


def _cell(part: Any, ts: Any, column: str) -> float | None:
    if ts not in part.index:
        return None
    value = float(part.at[ts, column])
    return value if math.isfinite(value) else None


# -- helpers -----------------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if str(version).isdigit() else (-1, str(version))


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_ms(ms: int | None) -> str | None:
    return _iso(datetime.fromtimestamp(ms / 1000, tz=UTC)) if ms else None


def parse_time(text: str | None) -> datetime | None:
    """An ISO-8601 time (``Z`` allowed) as an aware UTC datetime, or ``None`` when it is not one."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sortable_time(text: str | None) -> float:
    value = parse_time(text)
    return value.timestamp() if value else float("-inf")
