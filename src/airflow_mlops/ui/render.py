"""HTML for the Models pages: Jinja2 templates (``ui/templates/``) with the page's CSS and JS (``ui/static/``).

Self-contained pages: no CDN, font or image fetch, so they work on an air-gapped Airflow. The style and
the script are the files of ``ui/static/``, read once per process and inlined under the response's CSP
nonce (:mod:`.app`: ``default-src 'none'``, nonce'd inline style and script only). The charts are SVG
drawn server-side: :func:`chart_layout` computes the coordinates, ``_charts.html`` writes the markup
(hover a point for its value: SVG ``<title>``); their data is also embedded as JSON
(``<script type="application/json" id="mlops-chart-data">``, Jinja's ``tojson``) for tests and for
anyone who wants to export it.

Escaping: the environment autoescapes every value and raises on a missing one (``StrictUndefined``);
no markup is built in Python. A link whose URL is not http(s) or a relative path (``javascript:``,
``data:``) is shown as text (the ``link_url`` test).

The pages are usually shown inside the Airflow UI (a nav entry renders them in a sandboxed iframe
without ``allow-popups``/``allow-top-navigation``). Links marked ``data-top`` (Airflow pages) and
``data-new-tab`` (MLflow) are therefore opened by the inline script through an anchor in the
(same-origin) parent document; standalone, they are ordinary links.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from airflow_mlops.ui.data import (
    Chart,
    ModelDetail,
    ModelSummary,
    parse_time,
    to_jsonable,
)

DASH = "\u2013"
STATIC_FILES = ("models.css", "models.js")

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


# -- the environment ------------------------------------------------------------------------------------


def link_url(url: Any) -> bool:
    """Whether ``url`` may be a link's ``href``: an http(s) URL or a relative path (never ``javascript:``)."""
    if not url:
        return False
    parts = urlsplit(str(url))  # strips leading spaces and control characters, drops tabs and newlines: as browsers do
    if parts.scheme:
        return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
    return not parts.netloc  # a path, ``?query`` or ``#fragment``; never ``//other-host``


def path_segment(value: Any) -> str:
    """``value`` as one percent-encoded URL path segment (``/``, ``?``, ``#`` and ``:`` included)."""
    return quote(str(value), safe="")


def static_text(name: str) -> Markup:
    """A file of ``ui/static/``, trusted as markup: it is inlined into a ``<style>`` or ``<script>`` element."""
    text = resources.files("airflow_mlops.ui").joinpath("static", name).read_text(encoding="utf-8")
    if "<" in text:  # a "</style", "</script" or "<!--" would end or confuse the element it is inlined into
        raise ValueError(f"ui/static/{name}: contains '<'; inlined files may not (write \\3c in CSS, \\x3c in JS)")
    return Markup(text)


@functools.cache
def environment() -> Environment:
    """The templates of ``ui/templates/``: autoescaped, strict about undefined values (one per process)."""
    env = Environment(
        loader=PackageLoader("airflow_mlops.ui", "templates"),
        autoescape=select_autoescape(default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "allow_nan": False}
    env.tests["link_url"] = link_url
    env.filters["path_segment"] = path_segment
    env.globals.update(
        dash_text=DASH,
        models_css=static_text("models.css"),
        models_js=static_text("models.js"),
    )
    return env


def _render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


# -- pages ----------------------------------------------------------------------------------------------


def list_page(
    summaries: Sequence[ModelSummary], config_errors: dict[str, str], all_approvals_url: str, nonce: str
) -> str:
    return _render(
        "list.html",
        summaries=summaries,
        config_errors=config_errors,
        all_approvals_url=all_approvals_url,
        nonce=nonce,
    )


def model_page(detail: ModelDetail, all_approvals_url: str, nonce: str) -> str:
    chart_data = to_jsonable({"model": detail.summary.name, "charts": {c.id: c for c in detail.charts}})
    return _render(
        "model.html",
        detail=detail,
        charts=[chart_layout(c) for c in detail.charts],
        chart_data=chart_data,
        all_approvals_url=all_approvals_url,
        nonce=nonce,
    )


def message_page(title: str, message: str, nonce: str, link: tuple[str, str] | None = None) -> str:
    return _render("message.html", title=title, message=message, link=link, nonce=nonce)


# -- SVG charts: geometry here, markup in _charts.html ------------------------------------------------------

WIDTH, HEIGHT = 560, 250
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 10, 34
LEGEND_COLUMNS, LEGEND_ROW, LEGEND_NAME = 4, 18, 28


@dataclass(frozen=True)
class SvgText:
    x: str
    y: str
    text: str
    anchor: str = ""
    transform: str = ""


@dataclass(frozen=True)
class SvgLine:
    css: str
    x1: str
    x2: str
    y1: str
    y2: str


@dataclass(frozen=True)
class SvgThreshold:
    line: SvgLine
    title: str
    label: SvgText


@dataclass(frozen=True)
class SvgPoint:
    cx: str
    cy: str
    title: str


@dataclass(frozen=True)
class SvgSeries:
    color: str
    polylines: list[str]
    points: list[SvgPoint]


@dataclass(frozen=True)
class SvgLegendItem:
    x: str
    y: str
    color: str
    label: SvgText


@dataclass(frozen=True)
class SvgChart:
    """What ``_charts.html`` draws: coordinates as text, ready for attributes; labels as plain (unescaped) text."""

    id: str
    title: str
    note: str
    width: int
    height: int
    no_data: SvgText | None = None
    grid: tuple[SvgLine, ...] = ()
    y_ticks: tuple[SvgText, ...] = ()
    axes: tuple[SvgLine, ...] = ()
    x_ticks: tuple[SvgText, ...] = ()
    y_label: SvgText | None = None
    thresholds: tuple[SvgThreshold, ...] = ()
    series: tuple[SvgSeries, ...] = ()
    legend: tuple[SvgLegendItem, ...] = ()


def chart_layout(chart: Chart) -> SvgChart:
    """A line chart (time or category x axis) with legend, thresholds and a title per point."""
    frame = SvgChart(chart.id, chart.title, chart.note, WIDTH, HEIGHT + LEGEND_ROW * _legend_rows(chart))
    if chart.empty:
        return replace(frame, no_data=SvgText(f"{WIDTH / 2}", f"{HEIGHT / 2}", "no data", anchor="middle"))
    labels, xs = _x_positions(chart)
    lo, hi = _y_range(chart)
    plot_h = HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - lo) / (hi - lo))

    levels = [lo + (hi - lo) * i / 4 for i in range(5)]  # horizontal grid + y labels
    middle = TOP + plot_h / 2
    return replace(
        frame,
        grid=tuple(SvgLine("grid", f"{LEFT}", f"{WIDTH - RIGHT}", f"{y(v):.1f}", f"{y(v):.1f}") for v in levels),
        y_ticks=tuple(SvgText(f"{LEFT - 4}", f"{y(v) + 4:.1f}", _tick(v), anchor="end") for v in levels),
        axes=(
            SvgLine("axis", f"{LEFT}", f"{LEFT}", f"{TOP}", f"{TOP + plot_h}"),
            SvgLine("axis", f"{LEFT}", f"{WIDTH - RIGHT}", f"{TOP + plot_h}", f"{TOP + plot_h}"),
        ),
        x_ticks=tuple(
            SvgText(f"{xs[x]:.1f}", f"{TOP + plot_h + 14}", _short(x, chart.x_kind), anchor=_anchor(xs[x]))
            for x in _tick_labels(labels)
        ),
        y_label=SvgText("12", f"{middle:.1f}", chart.y_label, "middle", f"rotate(-90 12 {middle:.1f})"),
        thresholds=tuple(_threshold(name, level, y(level)) for name, level in chart.thresholds),
        series=tuple(
            _series(series.name, series.points, PALETTE[index % len(PALETTE)], xs, y)
            for index, series in enumerate(chart.series)
        ),
        legend=tuple(_legend_item(index, series.name) for index, series in enumerate(chart.series)),
    )


def _threshold(name: str, level: float, y: float) -> SvgThreshold:
    css = "thr-warn" if name == "warn" else ("thr-act" if name == "act" else "thr-max")
    return SvgThreshold(
        line=SvgLine(f"threshold {css}", f"{LEFT}", f"{WIDTH - RIGHT}", f"{y:.1f}", f"{y:.1f}"),
        title=f"{name} {_tick(level)}",
        label=SvgText(f"{WIDTH - RIGHT - 2}", f"{y - 3:.1f}", name, anchor="end"),
    )


def _series(
    name: str,
    points: Sequence[tuple[str, float | None]],
    color: str,
    xs: dict[str, float],
    y: Callable[[float], float],
) -> SvgSeries:
    segments: list[list[str]] = [[]]  # a missing value breaks the line
    dots = []
    for x, value in points:
        if value is None or not math.isfinite(value):
            segments.append([])
            continue
        segments[-1].append(f"{xs[x]:.1f},{y(value):.1f}")
        dots.append(SvgPoint(f"{xs[x]:.1f}", f"{y(value):.1f}", f"{name} @ {x}: {_tick(value, precise=True)}"))
    return SvgSeries(color, [" ".join(s) for s in segments if len(s) > 1], dots)


def _legend_item(index: int, name: str) -> SvgLegendItem:
    row, col = divmod(index, LEGEND_COLUMNS)
    x, y = LEFT + col * ((WIDTH - LEFT) / LEGEND_COLUMNS), HEIGHT + row * LEGEND_ROW + 2
    label = SvgText(f"{x + 14:.1f}", f"{y:.1f}", name[:LEGEND_NAME])
    return SvgLegendItem(f"{x:.1f}", f"{y - 9:.1f}", PALETTE[index % len(PALETTE)], label)


def _anchor(x: float) -> str:
    return "start" if x <= LEFT + 1 else ("end" if x >= WIDTH - RIGHT - 1 else "middle")


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


def _legend_rows(chart: Chart) -> int:
    return max(1, math.ceil(len(chart.series) / LEGEND_COLUMNS)) if chart.series else 0


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
