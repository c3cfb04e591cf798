"""HTML for the Models pages: self-contained (inline CSS, inline SVG charts, one small inline script).

No CDN, font or image fetch: the pages work on an air-gapped Airflow. Every value is escaped. The
charts are drawn server-side as SVG (hover a point for its value: SVG ``<title>``); their data is
also embedded as JSON (``<script type="application/json" id="mlops-chart-data">``) for tests and
for anyone who wants to export it.

The pages are usually shown inside the Airflow UI (a nav entry renders them in a sandboxed iframe
without ``allow-popups``/``allow-top-navigation``). Links marked ``data-top`` (Airflow pages) and
``data-new-tab`` (MLflow) are therefore opened by the inline script through an anchor in the
(same-origin) parent document; standalone, they are ordinary links.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from airflow_mlops.ui.data import (
    AuditEntry,
    Chart,
    ModelDetail,
    ModelSummary,
    PendingApproval,
    Series,
    parse_time,
    to_jsonable,
)

DASH = "\u2013"

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

CSS = """
:root { color-scheme: light dark; --fg: #1a202c; --muted: #5a6472; --bg: #ffffff; --line: #d9dee5;
  --chip: #eef2f7; --ok: #1e7d32; --bad: #b42318; --warn: #b54708; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #a0a8b5; --bg: #14171c;
  --line: #303641; --chip: #232832; --ok: #6fcf7f; --bad: #ff8a80; --warn: #f6b26b; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); margin: 16px 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; }
a { color: #2b6cb0; } .muted { color: var(--muted); } .small { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
.chip { display: inline-block; background: var(--chip); border-radius: 10px; padding: 0 8px; margin: 1px 2px;
  white-space: nowrap; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
.errors { color: var(--bad); font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
.chart { border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.chart h3 { font-size: 14px; margin: 0 0 4px; }
svg text { fill: var(--fg); font-size: 11px; } svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .grid { stroke: var(--line); stroke-width: 1; } svg .threshold { stroke-dasharray: 4 3; stroke-width: 1.2; }
svg .thr-warn { stroke: var(--warn); } svg .thr-act, svg .thr-max { stroke: var(--bad); }
nav.crumbs { margin-bottom: 12px; }
"""

SCRIPT = """
(function () {
  function embeddedParent() {
    try { if (window.top !== window.self && window.top.document) { return window.top; } } catch (e) {}
    return null;
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-top], a[data-new-tab]") : null;
    var top = link ? embeddedParent() : null;
    if (!top) { return; }
    event.preventDefault();
    var anchor = top.document.createElement("a");
    anchor.href = link.href;
    if (link.hasAttribute("data-new-tab")) { anchor.target = "_blank"; anchor.rel = "noopener noreferrer"; }
    top.document.body.appendChild(anchor);
    anchor.click();
    anchor.remove();
  });
})();
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str, nonce: str, chart_data: dict[str, Any] | None = None) -> str:
    data = ""
    if chart_data is not None:
        text = json.dumps(to_jsonable(chart_data), sort_keys=True, allow_nan=False)
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        data = f'<script type="application/json" id="mlops-chart-data">{text}</script>'
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style nonce='{_e(nonce)}'>{CSS}</style></head><body>"
        f"{body}{data}<script nonce='{_e(nonce)}'>{SCRIPT}</script></body></html>"
    )


def _mlflow_link(url: str | None, text: str) -> str:
    if not url:
        return _e(text)
    return f'<a href="{_e(url)}" data-new-tab target="_blank" rel="noopener noreferrer">{_e(text)}</a>'


def _airflow_link(url: str, text: str) -> str:
    return f'<a href="{_e(url)}" data-top target="_top">{_e(text)}</a>'


def _version(summary: ModelSummary, alias: str) -> str:
    version = getattr(summary, alias)
    if version is None:
        return f"<span class='muted'>{DASH}</span>"
    return _mlflow_link(summary.links.get(f"mlflow_{alias}"), f"v{version}")


def _gate(summary: ModelSummary) -> str:
    gate = summary.last_gate
    if gate is None:
        return f"<span class='muted'>{DASH}</span>"
    css = "ok" if gate.result == "passed" else "bad"
    return f"<span class='{css}'>{_e(gate.result)}</span> " + _mlflow_link(gate.version_url, f"v{gate.version}")


def _drift(summary: ModelSummary) -> str:
    drift = summary.last_drift
    if drift is None:
        return "<span class='muted'>no monitoring run</span>"
    verdict = "<span class='bad'>act</span>" if drift.act else "<span class='ok'>ok</span>"
    top = ""
    if drift.max_feature is not None and drift.max_psi is not None:
        top = f" max PSI {_e(drift.max_feature)} = {drift.max_psi:.3f}"
    scores = " ".join(f"<span class='chip'>{_e(k)} {v:.3f}</span>" for k, v in drift.scores.items())
    when = f"<div class='small muted'>{_e(drift.window_end)}</div>" if drift.window_end else ""
    return f"{_mlflow_link(drift.run_url, 'run')} {verdict}{_e(top)}{when}<div class='small'>{scores}</div>"


def _traffic(summary: ModelSummary) -> str:
    parts = []
    champion, canary, shadow = (summary.traffic.get(k) or {} for k in ("champion", "canary", "shadow"))
    if champion.get("version"):
        parts.append(f"<span class='chip'>champion v{_e(champion['version'])} {float(champion['percent']):g}%</span>")
    if canary.get("version"):
        parts.append(f"<span class='chip'>canary v{_e(canary['version'])} {float(canary['percent']):g}%</span>")
    if shadow.get("version"):
        parts.append(f"<span class='chip'>shadow v{_e(shadow['version'])} mirrored</span>")
    return " ".join(parts) or "<span class='muted'>no traffic</span>"


def _approvals(approvals: Sequence[PendingApproval], all_url: str) -> str:
    if not approvals:
        return "<span class='muted'>none</span>"
    items = "".join(
        f"<li>{_airflow_link(a.url, a.subject or a.task_id)} <span class='small muted'>{_e(a.dag_id)} / "
        f"{_e(a.task_id)}</span></li>"
        for a in approvals
    )
    return f"<ul>{items}</ul>{_airflow_link(all_url, 'all required actions')}"


def _audit_rows(entries: Iterable[AuditEntry]) -> str:
    rows = "".join(
        f"<tr><td class='small'>{_e(e.ts)}</td><td>{_e(e.alias)}</td><td>{_e(e.from_version or DASH)} → "
        f"{_e(e.to_version or DASH)}</td><td>{_e(e.reason)}</td><td class='small muted'>{_e(e.actor)}</td></tr>"
        for e in entries
    )
    return rows or "<tr><td colspan='5' class='muted'>no alias moves yet</td></tr>"


def _audit_compact(entries: Sequence[AuditEntry], limit: int = 5) -> str:
    if not entries:
        return f"<span class='muted'>{DASH}</span>"
    return "".join(
        f"<div class='small'><b>{_e(e.alias)}</b> {_e(e.from_version or DASH)} → {_e(e.to_version or DASH)}: "
        f"{_e(e.reason)} <span class='muted'>({_e(e.ts[:19])}, {_e(e.actor)})</span></div>"
        for e in entries[:limit]
    )


def _errors(errors: Sequence[str]) -> str:
    if not errors:
        return ""
    return "<div class='errors'>" + "<br>".join(_e(e) for e in errors) + "</div>"


def list_page(
    summaries: Sequence[ModelSummary], config_errors: dict[str, str], all_approvals_url: str, nonce: str
) -> str:
    rows = []
    for s in summaries:
        registered = "" if s.registered else "<div class='small muted'>not registered yet</div>"
        rows.append(
            "<tr>"
            f"<td><a href='models/{_e(s.name)}'><b>{_e(s.name)}</b></a>{registered}"
            f"<div class='small muted'>{_e(s.description)}</div>{_errors(s.errors)}</td>"
            f"<td>{_version(s, 'champion')}</td><td>{_version(s, 'challenger')}</td>"
            f"<td>{_version(s, 'canary')}</td><td>{_version(s, 'shadow')}</td>"
            f"<td>{_traffic(s)}</td><td>{_gate(s)}</td><td>{_drift(s)}</td>"
            f"<td>{_approvals(s.pending_approvals, all_approvals_url)}</td>"
            f"<td>{_audit_compact(s.audit)}</td>"
            "</tr>"
        )
    if not rows:
        rows.append("<tr><td colspan='10' class='muted'>No model configs found (setting [mlops] config_dir).</td></tr>")
    broken = ""
    if config_errors:
        items = "".join(f"<li><b>{_e(name)}</b>: {_e(err)}</li>" for name, err in sorted(config_errors.items()))
        broken = f"<h2>Broken configs</h2><ul class='errors'>{items}</ul>"
    body = (
        "<h1>Models</h1><div class='muted'>Deployment state from the MLflow registry, gates, drift, "
        f"approvals and the audit trail of alias moves. {_airflow_link(all_approvals_url, 'Required actions')}</div>"
        "<table><thead><tr><th>Model</th><th>Champion</th><th>Challenger</th><th>Canary</th><th>Shadow</th>"
        "<th>Traffic</th><th>Last gate</th><th>Last drift</th><th>Pending approvals</th><th>Recent alias moves</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{broken}"
    )
    return _page("Models", body, nonce)


def model_page(detail: ModelDetail, all_approvals_url: str, nonce: str) -> str:
    s = detail.summary
    versions = (
        "".join(
            "<tr>"
            f"<td>{_mlflow_link(v.version_url, 'v' + v.version)}</td>"
            f"<td>{' '.join(f'<span class=chip>{_e(a)}</span>' for a in v.aliases)}</td>"
            f"<td>{_fmt(v.metric)}</td>"
            f"<td>{_gate_cell(v.gate)}</td>"
            f"<td>{_mlflow_link(v.run_url, (v.run_id or '')[:12] or DASH)}</td>"
            f"<td class='small'>{_e(v.created_at or '')}</td>"
            f"<td class='small'>{_e(v.rollback_reason or v.rejected_reason or '')}</td>"
            "</tr>"
            for v in reversed(detail.versions)
        )
        or "<tr><td colspan='7' class='muted'>no registered versions</td></tr>"
    )
    charts = "".join(
        f"<div class='chart' id='chart-{_e(c.id)}'><h3>{_e(c.title)}</h3>{svg_chart(c)}"
        + (f"<div class='small muted'>{_e(c.note)}</div>" if c.note else "")
        + "</div>"
        for c in detail.charts
    )
    body = (
        "<nav class='crumbs'><a href='../'>← Models</a></nav>"
        f"<h1>{_e(s.name)}</h1><div class='muted'>{_e(s.description)}</div>{_errors(s.errors)}"
        f"<div>{_mlflow_link(s.links.get('mlflow_model'), 'Registered model in MLflow')}</div>"
        "<table><thead><tr><th>Champion</th><th>Challenger</th><th>Canary</th><th>Shadow</th><th>Previous</th>"
        "<th>Traffic</th><th>Last gate</th><th>Last drift</th><th>Pending approvals</th></tr></thead><tbody><tr>"
        f"<td>{_version(s, 'champion')}</td><td>{_version(s, 'challenger')}</td><td>{_version(s, 'canary')}</td>"
        f"<td>{_version(s, 'shadow')}</td><td>{_version(s, 'previous')}</td><td>{_traffic(s)}</td>"
        f"<td>{_gate(s)}</td><td>{_drift(s)}</td>"
        f"<td>{_approvals(s.pending_approvals, all_approvals_url)}</td></tr></tbody></table>"
        f"<h2>Charts</h2><div class='small muted'>Traffic: last {detail.window_hours} h, per {_e(detail.bucket)}. "
        f"<a href='?hours=1'>1 h</a> · <a href='?hours=6'>6 h</a> · <a href='?hours=24'>24 h</a> · "
        f"<a href='?hours=168'>7 d</a></div><div class='charts'>{charts}</div>"
        f"<h2>Versions</h2><table><thead><tr><th>Version</th><th>Aliases</th><th>{_e(detail.primary_metric)}</th>"
        "<th>Gate</th><th>MLflow run</th><th>Registered</th><th>Rollback / rejection</th></tr></thead>"
        f"<tbody>{versions}</tbody></table>"
        "<h2>Audit trail (latest alias moves)</h2><table><thead><tr><th>Time (UTC)</th><th>Alias</th>"
        f"<th>Move</th><th>Why</th><th>Actor</th></tr></thead><tbody>{_audit_rows(s.audit)}</tbody></table>"
    )
    data = {"model": s.name, "charts": {c.id: c for c in detail.charts}}
    return _page(f"{s.name} · Models", body, nonce, chart_data=data)


def _gate_cell(gate: str | None) -> str:
    if not gate:
        return f"<span class='muted'>{DASH}</span>"
    return f"<span class='{'ok' if gate == 'passed' else 'bad'}'>{_e(gate)}</span>"


def _fmt(value: float | None) -> str:
    if value is None:
        return f"<span class='muted'>{DASH}</span>"
    return f"{value:.4g}"


def message_page(title: str, message: str, nonce: str, link: tuple[str, str] | None = None) -> str:
    extra = f"<p>{_airflow_link(link[0], link[1])}</p>" if link else ""
    return _page(title, f"<h1>{_e(title)}</h1><p>{_e(message)}</p>{extra}", nonce)


# -- SVG charts ---------------------------------------------------------------------------------------

WIDTH, HEIGHT = 560, 250
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 10, 34


def _x_positions(chart: Chart) -> tuple[list[str], dict[str, float]]:
    labels: list[str] = []
    for series in chart.series:
        for x, _ in series.points:
            if x not in labels:
                labels.append(x)
    span = WIDTH - LEFT - RIGHT
    if chart.x_kind == "time":
        times = {x: parse_time(x) for x in labels}
        known = sorted(t.timestamp() for t in times.values() if t is not None)
        if known and known[-1] > known[0]:
            lo, hi = known[0], known[-1]
            labels = sorted(labels, key=lambda x: times[x].timestamp() if times[x] else lo)  # type: ignore[union-attr]
            return labels, {
                x: LEFT + span * (((times[x].timestamp() if times[x] else lo) - lo) / (hi - lo))  # type: ignore[union-attr]
                for x in labels
            }
    if len(labels) == 1:
        return labels, {labels[0]: LEFT + span / 2}
    return labels, {x: LEFT + span * i / max(len(labels) - 1, 1) for i, x in enumerate(labels)}


def _y_range(chart: Chart) -> tuple[float, float]:
    values = [v for s in chart.series for _, v in s.points if v is not None and math.isfinite(v)]
    values += [v for _, v in chart.thresholds]
    lo = min([0.0, *values])
    hi = max(values) if values else 1.0
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi + (hi - lo) * 0.08


def _short(x: str, kind: str) -> str:
    if kind == "time":
        t = parse_time(x)
        if t is not None:
            return t.strftime("%m-%d %H:%M")
    return x


def svg_chart(chart: Chart) -> str:
    """A line chart (time or category x axis) with legend, thresholds and a ``<title>`` per point."""
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {HEIGHT + 18 * _legend_rows(chart)}' "
        f"role='img' aria-label='{_e(chart.title)}' data-chart='{_e(chart.id)}' width='100%'>"
    )
    if chart.empty:
        return head + f"<text x='{WIDTH / 2}' y='{HEIGHT / 2}' text-anchor='middle'>no data</text></svg>"
    labels, xs = _x_positions(chart)
    lo, hi = _y_range(chart)
    plot_h = HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - lo) / (hi - lo))

    parts = [head, *_axes(chart, labels, xs, lo, hi, y)]
    for name, level in chart.thresholds:
        css = "thr-warn" if name == "warn" else ("thr-act" if name == "act" else "thr-max")
        parts.append(
            f"<line class='threshold {css}' x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y(level):.1f}' y2='{y(level):.1f}'>"
            f"<title>{_e(name)} {_e(_tick(level))}</title></line>"
            f"<text x='{WIDTH - RIGHT - 2}' y='{y(level) - 3:.1f}' text-anchor='end'>{_e(name)}</text>"
        )
    for index, series in enumerate(chart.series):
        parts.extend(_series(series, PALETTE[index % len(PALETTE)], xs, y))
    parts.append(_legend(chart))
    parts.append("</svg>")
    return "".join(parts)


def _axes(
    chart: Chart, labels: Sequence[str], xs: dict[str, float], lo: float, hi: float, y: Callable[[float], float]
) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(5):  # horizontal grid + y labels
        level = lo + (hi - lo) * i / 4
        parts.append(f"<line class='grid' x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y(level):.1f}' y2='{y(level):.1f}'/>")
        parts.append(f"<text x='{LEFT - 4}' y='{y(level) + 4:.1f}' text-anchor='end'>{_e(_tick(level))}</text>")
    parts.append(f"<line class='axis' x1='{LEFT}' x2='{LEFT}' y1='{TOP}' y2='{TOP + plot_h}'/>")
    parts.append(f"<line class='axis' x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{TOP + plot_h}' y2='{TOP + plot_h}'/>")
    for x in _tick_labels(labels):
        anchor = "start" if xs[x] <= LEFT + 1 else ("end" if xs[x] >= WIDTH - RIGHT - 1 else "middle")
        parts.append(
            f"<text x='{xs[x]:.1f}' y='{TOP + plot_h + 14}' text-anchor='{anchor}'>{_e(_short(x, chart.x_kind))}</text>"
        )
    middle = TOP + plot_h / 2
    parts.append(
        f"<text x='12' y='{middle:.1f}' transform='rotate(-90 12 {middle:.1f})' text-anchor='middle'>"
        f"{_e(chart.y_label)}</text>"
    )
    return parts


def _series(series: Series, color: str, xs: dict[str, float], y: Callable[[float], float]) -> list[str]:
    parts = []
    points = [(x, v) for x, v in series.points if v is not None and math.isfinite(v)]
    segments: list[list[str]] = [[]]
    for x, value in series.points:
        if value is None or not math.isfinite(value):
            segments.append([])
        else:
            segments[-1].append(f"{xs[x]:.1f},{y(value):.1f}")
    for segment in segments:
        if len(segment) > 1:
            parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.8' points='{' '.join(segment)}'/>")
    for x, value in points:
        assert value is not None
        parts.append(
            f"<circle cx='{xs[x]:.1f}' cy='{y(value):.1f}' r='3' fill='{color}'>"
            f"<title>{_e(series.name)} @ {_e(x)}: {_e(_tick(value, precise=True))}</title></circle>"
        )
    return parts


def _legend_rows(chart: Chart) -> int:
    return max(1, math.ceil(len(chart.series) / 4)) if chart.series else 0


def _legend(chart: Chart) -> str:
    out = []
    for index, series in enumerate(chart.series):
        row, col = divmod(index, 4)
        x, y = LEFT + col * ((WIDTH - LEFT) / 4), HEIGHT + row * 18 + 2
        color = PALETTE[index % len(PALETTE)]
        out.append(
            f"<rect x='{x:.1f}' y='{y - 9:.1f}' width='10' height='10' fill='{color}'/>"
            f"<text x='{x + 14:.1f}' y='{y:.1f}'>{_e(series.name[:28])}</text>"
        )
    return "".join(out)


def _tick_labels(labels: Sequence[str], most: int = 6) -> list[str]:
    if len(labels) <= most:
        return list(labels)
    step = math.ceil(len(labels) / most)
    picked = list(labels[::step])
    if picked[-1] != labels[-1]:
        picked[-1] = labels[-1]
    return picked


def _tick(value: float, precise: bool = False) -> str:
    if precise:
        return f"{value:.6g}"
    if value == 0:
        return "0"
    return f"{value:.3g}"
