"""A model version's card: what it is for, what it was trained on, how it behaves, who approved it, how it serves.

:func:`build_card` reads everything from MLflow (the version's lineage tags, its training run's params and
metrics, the gate report, the recorded approval answers, its aliases and its latest monitoring run) plus the
words a person wrote in the model config (``description``, ``owner``, ``card.intended_use``,
``card.limitations``). :func:`render_markdown` and :func:`render_html` turn it into the two artifacts
:func:`write_card` keeps in the version's training run (``card/model_card.md``, ``card/model_card.html``),
rewritten after the gate, after each approval answer and after each monitoring run of the version. Values read
back from MLflow are outside input: escaped for markdown (:func:`airflow_mlops.gates.evidence.cell`) and by
Jinja's autoescape for HTML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.gates.attributions import Attributions, markdown_lines
from airflow_mlops.gates.evidence import Check, cell, code, lineage_of, read_gate_report
from airflow_mlops.vocabulary import Alias, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops.config.schema import ModelConfig

#: Where the card lives in the version's training run.
CARD_MARKDOWN = "card/model_card.md"
CARD_HTML = "card/model_card.html"


@dataclass(frozen=True)
class CardText:
    """What people wrote about the model (its config), not measured."""

    description: str = ""
    owner: str = ""
    intended_use: str = ""
    limitations: tuple[str, ...] = ()
    task: str = ""
    target: str = ""
    features: tuple[str, ...] = ()
    audit_columns: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: ModelConfig) -> CardText:
        return cls(
            description=config.description,
            owner=config.owner,
            intended_use=config.card.intended_use,
            limitations=tuple(config.card.limitations),
            task=config.task,
            target=config.target,
            features=tuple(config.features.all),
            audit_columns=tuple(config.data.audit_columns),
        )


@dataclass(frozen=True)
class Decision:
    """A person's recorded answer at the approval before ``stage``."""

    stage: str
    decision: str
    by: str
    at: str
    comment: str


@dataclass(frozen=True)
class Live:
    """The version's latest monitoring run (as champion)."""

    run_id: str
    window: str
    drift: str
    rows: float | None
    metrics: dict[str, float]
    #: Share of the window's sampled answers that received a label; ``None`` before coverage was recorded.
    label_coverage: float | None = None
    #: Labels arrived for one decision only (a hidden feedback loop?), else empty.
    feedback_warning: str = ""


@dataclass(frozen=True)
class ModelCard:
    model: str
    version: str
    text: CardText
    run_id: str
    lineage: dict[str, str]
    training: dict[str, str]
    metrics: dict[str, float]
    gate_result: str | None
    checks: list[Check]
    decisions: list[Decision]
    aliases: list[str]
    canary_percent: str | None = None
    live: Live | None = None
    problems: list[str] = field(default_factory=list)
    attributions: Attributions | None = None
    #: When the card was built (UTC, ISO 8601): a stored card is a snapshot, e.g. of the aliases at that time.
    built_at: str = ""

    @property
    def slices(self) -> list[Check]:
        return [c for c in self.checks if c.kind == "slice"]

    @property
    def behaviour_failures(self) -> list[Check]:
        return [c for c in self.checks if c.kind == "behaviour" and c.status in ("fail", "error")]


def decisions_of(tags: Mapping[str, str]) -> list[Decision]:
    """The recorded approval answers in a version's tags (JSON per stage; the older approval tags too)."""
    found = []
    for key, raw in sorted(tags.items()):
        if not key.startswith(Tag.DECISION_PREFIX):
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, Mapping):
            continue
        found.append(
            Decision(
                stage=key.removeprefix(Tag.DECISION_PREFIX),
                decision=str(value.get("decision", "")),
                by=str(value.get("by", "")),
                at=str(value.get("at", "")),
                comment=str(value.get("comment", "")),
            )
        )
    if not any(d.stage == Alias.CHALLENGER for d in found) and tags.get(Tag.APPROVED_BY):
        # approved before decisions were recorded as JSON: the approval tags alone
        found.append(Decision(Alias.CHALLENGER, "approved", tags[Tag.APPROVED_BY], tags.get(Tag.APPROVED_AT, ""), ""))
    return found


def _live(client: MlflowClient, model: str, version: str) -> Live | None:
    from airflow_mlops.monitoring.verdicts import monitoring_experiment

    experiment = client.get_experiment_by_name(monitoring_experiment(model))
    if experiment is None:
        return None
    if not version.isdigit():  # the filter below quotes it: only a version number goes in
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{Tag.CHAMPION}` = '{version}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    tags, metrics = run.data.tags, run.data.metrics
    live = {k: v for k, v in metrics.items() if k.startswith("live_") or k == "drifted_share"}
    return Live(
        run_id=run.info.run_id,
        window=f"{tags.get(Tag.WINDOW_START, '?')} to {tags.get(Tag.WINDOW_END, '?')}",
        drift="drift" if tags.get(Tag.DRIFT_ACT) == "true" else "no drift",
        rows=metrics.get("rows"),
        metrics=live,
        label_coverage=metrics.get("label_coverage"),
        feedback_warning=tags.get(Tag.FEEDBACK_WARNING, ""),
    )


def build_card(client: MlflowClient, model: str, version: str | int, text: CardText) -> ModelCard:
    """Gather ``model`` v``version``'s card from MLflow (a missing gate report is noted, not fatal)."""
    registered = client.get_model_version(model, str(version))
    version = str(registered.version)  # as the registry spells it ("007" finds v7)
    tags = dict(registered.tags or {})
    run_id = str(registered.run_id or "")
    run = client.get_run(run_id) if run_id else None
    params = dict(run.data.params) if run else {}
    problems: list[str] = []
    gate_result, checks, attributions = None, [], None
    try:
        if run_id:
            report = read_gate_report(client, run_id, f"{model} v{version}")
            gate_result, checks, attributions = report.result, report.checks, report.attributions
            problems += [report.problem] if report.problem else []
    except Exception as exc:  # a card still says what is known; the missing report is named on it
        problems.append(str(exc))
    lineage = lineage_of(tags)
    training = {
        k: v
        for k, v in sorted(params.items())
        if k in ("estimator", "n_train", "n_test") or k.startswith(("split", "estimator."))
    }
    model_info = client.get_registered_model(model)
    aliases = sorted(alias for alias, v in (model_info.aliases or {}).items() if str(v) == version)
    canary = (model_info.tags or {}).get(Tag.CANARY_PERCENT) if Alias.CANARY in aliases else None
    return ModelCard(
        model=model,
        version=version,
        text=text,
        run_id=run_id,
        lineage=lineage,
        training=training,
        metrics=dict(sorted((run.data.metrics if run else {}).items())),
        gate_result=gate_result,
        checks=checks,
        decisions=decisions_of(tags),
        aliases=aliases,
        canary_percent=canary,
        live=_live(client, model, version),
        problems=problems,
        attributions=attributions,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _rows(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def render_markdown(card: ModelCard) -> str:
    """The card as markdown (every value from MLflow escaped)."""
    c, t = card, card.text
    serving = ", ".join(f"`{code(a)}`" for a in c.aliases) or "not serving"
    if c.canary_percent:
        serving += f" (canary {cell(c.canary_percent)} %)"
    out = [
        f"# Model card: {cell(c.model)} v{cell(c.version)}",
        "",
        f"**Serving:** {serving} (as of {cell(c.built_at)})",
    ]
    out += ["", "## What it is", f"- description: {cell(t.description) or '—'}", f"- owner: {cell(t.owner) or '—'}"]
    out += [f"- intended use: {cell(t.intended_use) or '— (card.intended_use is not set)'}"]
    out += ["- limitations:" + ("" if t.limitations else " — (card.limitations is not set)")]
    out += [f"  - {cell(item)}" for item in t.limitations]
    out += [
        f"- task: {cell(t.task)}; target `{code(t.target)}`; features: {', '.join(f'`{code(f)}`' for f in t.features)}"
    ]
    if t.audit_columns:
        out.append(f"- audit columns (never model inputs): {', '.join(f'`{code(a)}`' for a in t.audit_columns)}")
    out += ["", "## Training data and lineage", *(f"- {k}: `{code(v)}`" for k, v in c.lineage.items())]
    out += [f"- training run: `{code(c.run_id)}`"]
    out += ["", "## Estimator and parameters", *_rows(("parameter", "value"), list(c.training.items()))]
    out += ["", "## Metrics (held-out rows)", *_rows(("metric", "value"), list(c.metrics.items()))]
    out += ["", "## Gate", f"Result: **{cell(c.gate_result or 'unknown')}**"]
    if c.checks:
        out += _rows(
            ("check", "kind", "value", "threshold", "status", "detail"),
            [(k.name, k.kind, k.value, k.threshold, k.status, k.detail) for k in c.checks],
        )
    out += ["", "### Per-slice metrics"]
    out += [f"- {cell(k.name)}: gap {cell(k.value)} ({cell(k.status)}); {cell(k.detail)}" for k in c.slices] or ["—"]
    out += ["", "### Behaviour cases that failed"]
    out += [f"- {cell(k.name)}: {cell(k.detail)}" for k in c.behaviour_failures] or ["none"]
    out += ["", "### What drives its answers"]
    out += markdown_lines(c.attributions, escape=cell) if c.attributions else ["no feature attributions recorded"]
    out += ["", "## Approvals"]
    out += (
        _rows(
            ("before", "decision", "by", "at", "comment"),
            [(d.stage, d.decision, d.by, d.at, d.comment) for d in c.decisions],
        )
        if c.decisions
        else ["none recorded"]
    )
    out += ["", "## In production"]
    if c.live is None:
        out.append("no monitoring run of this version yet")
    else:
        live = c.live
        out += [f"- latest monitoring run `{code(live.run_id)}` ({cell(live.window)}): {cell(live.drift)}"]
        out += [f"- rows in the window: {cell(live.rows)}"] if live.rows is not None else []
        out += [f"- {cell(name)}: {cell(value)}" for name, value in sorted(live.metrics.items())]
        if live.label_coverage is not None:
            out.append(f"- label coverage: {live.label_coverage:.1%} of the window's sampled answers got a label")
        if live.feedback_warning:
            out.append(f"- **one-sided feedback:** {cell(live.feedback_warning)}")
    if c.problems:
        out += ["", "## Not available", *(f"- {cell(p)}" for p in c.problems)]
    return "\n".join(out) + "\n"


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model card: {{ c.model }} v{{ c.version }}</title>
<style{% if nonce %} nonce="{{ nonce }}"{% endif %}>
body{font:14px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
.fail,.error{color:#b00020}.pass{color:#116611}code{background:#f3f3f3}</style></head><body>
<h1>Model card: {{ c.model }} v{{ c.version }}</h1>
<p><b>Serving:</b> {% for a in c.aliases %}<code>{{ a }}</code> {% else %}not serving{% endfor %}
{% if c.canary_percent %}(canary {{ c.canary_percent }} %){% endif %} (as of {{ c.built_at }})</p>
<h2>What it is</h2><ul><li>description: {{ t.description or "—" }}</li><li>owner: {{ t.owner or "—" }}</li>
<li>intended use: {{ t.intended_use or "— (card.intended_use is not set)" }}</li>
<li>limitations:{% if not t.limitations %} — (card.limitations is not set){% endif %}<ul>
{% for item in t.limitations %}<li>{{ item }}</li>{% endfor %}</ul></li>
<li>task: {{ t.task }}; target <code>{{ t.target }}</code>; features:
{% for f in t.features %}<code>{{ f }}</code> {% endfor %}</li>
{% if t.audit_columns %}<li>audit columns (never model inputs):
{% for a in t.audit_columns %}<code>{{ a }}</code> {% endfor %}</li>{% endif %}</ul>
<h2>Training data and lineage</h2><ul>{% for k, v in c.lineage.items() %}<li>{{ k }}: <code>{{ v }}</code></li>
{% endfor %}<li>training run: <code>{{ c.run_id }}</code></li></ul>
<h2>Estimator and parameters</h2><table>{% for k, v in c.training.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}</table>
<h2>Metrics (held-out rows)</h2><table>{% for k, v in c.metrics.items() %}<tr><th>{{ k }}</th>
<td>{{ "%.4f"|format(v) }}</td></tr>{% endfor %}</table>
<h2>Gate</h2><p>Result: <b>{{ c.gate_result or "unknown" }}</b></p>
<table><tr><th>check</th><th>kind</th><th>value</th><th>threshold</th><th>status</th><th>detail</th></tr>
{% for k in c.checks %}<tr><td>{{ k.name }}</td><td>{{ k.kind }}</td><td>{{ k.value }}</td><td>{{ k.threshold }}</td>
<td class="{{ k.status }}">{{ k.status }}</td><td>{{ k.detail }}</td></tr>{% endfor %}</table>
<h3>Per-slice metrics</h3><ul>{% for k in c.slices %}<li>{{ k.name }}: gap {{ k.value }} ({{ k.status }});
{{ k.detail }}</li>{% else %}<li>—</li>{% endfor %}</ul>
<h3>Behaviour cases that failed</h3><ul>{% for k in c.behaviour_failures %}<li>{{ k.name }}: {{ k.detail }}</li>
{% else %}<li>none</li>{% endfor %}</ul>
<h3>What drives its answers</h3>{% if c.attributions %}{% set a = c.attributions %}
<p>Method: <b>{{ a.method }}</b> — {{ a.unit }}; {{ a.rows }} held-out rows explained in
{{ "%.2f"|format(a.seconds) }} s.{% if a.note %} Note: {{ a.note }}.{% endif %}</p>
<table><tr><th>feature</th><th>importance</th></tr>{% for i in a.top(10) %}<tr><td>{{ i.feature }}</td>
<td>{{ "%.4f"|format(i.value) }}{% if i.spread is not none %} ± {{ "%.4f"|format(i.spread) }}{% endif %}</td></tr>
{% endfor %}</table>{% if a.groups %}<p>Per slice group (largest three):</p><ul>{% for g in a.groups %}
<li>{{ g.column }} = {{ g.group }} ({{ g.rows }} rows): {% for i in g.features[:3] %}{{ i.feature }}
{{ "%.4f"|format(i.value) }}{% if not loop.last %}, {% endif %}{% else %}{{ g.note }}{% endfor %}</li>
{% endfor %}</ul>{% endif %}{% else %}<p>no feature attributions recorded</p>{% endif %}
<h2>Approvals</h2>{% if c.decisions %}<table><tr><th>before</th><th>decision</th><th>by</th><th>at</th>
<th>comment</th></tr>{% for d in c.decisions %}<tr><td>{{ d.stage }}</td><td>{{ d.decision }}</td><td>{{ d.by }}</td>
<td>{{ d.at }}</td><td>{{ d.comment }}</td></tr>{% endfor %}</table>{% else %}<p>none recorded</p>{% endif %}
<h2>In production</h2>{% if c.live %}<ul><li>latest monitoring run <code>{{ c.live.run_id }}</code>
({{ c.live.window }}): {{ c.live.drift }}</li>{% if c.live.rows is not none %}
<li>rows in the window: {{ c.live.rows }}</li>{% endif %}
{% for k, v in c.live.metrics.items() %}<li>{{ k }}: {{ v }}</li>{% endfor %}
{% if c.live.label_coverage is not none %}<li>label coverage: {{ "%.1f"|format(c.live.label_coverage * 100) }} % of
the window's sampled answers got a label</li>{% endif %}
{% if c.live.feedback_warning %}<li class="fail"><b>one-sided feedback:</b> {{ c.live.feedback_warning }}</li>
{% endif %}</ul>
{% else %}<p>no monitoring run of this version yet</p>{% endif %}
{% if c.problems %}<h2>Not available</h2><ul>{% for p in c.problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""


def render_html(card: ModelCard, nonce: str | None = None) -> str:
    """The card as a standalone HTML page (Jinja2, autoescaped: nothing from MLflow becomes markup); ``nonce``
    marks its one inline style for a Content-Security-Policy (the Models page serves it so)."""
    from jinja2 import Environment

    return Environment(autoescape=True).from_string(_HTML).render(c=card, t=card.text, nonce=nonce)


def write_card(client: MlflowClient, model: str, version: str | int, text: CardText) -> ModelCard:
    """Build the card and (re)write both artifacts into the version's training run."""
    card = build_card(client, model, version, text)
    if card.run_id:
        client.log_text(card.run_id, render_markdown(card), CARD_MARKDOWN)
        client.log_text(card.run_id, render_html(card), CARD_HTML)
    return card
