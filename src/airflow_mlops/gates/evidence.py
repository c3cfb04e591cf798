"""What an approver reads in the approval form: a version's gate verdicts, what retrained it, where to look.

Airflow shows an approval's body as markdown. :func:`read_evidence` gathers, from MLflow, the version's gate
report (every check with its value, threshold — vs the champion where there is one — and status), its
lineage, and the drift that started its training; :func:`approval_body` renders it. Everything read back
from MLflow is outside input here: each value is escaped for a markdown table and cut to a bounded length,
and a report that is not the shape the gate writes is refused.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_mlops.exceptions import RegistryError
from airflow_mlops.gates.attributions import Attributions, markdown_lines
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Where the gate writes its report in the training run's artifacts.
GATE_REPORT_JSON = "gate/gate_report.json"
#: Longest text kept in one table cell, and most rows shown (the rest are counted).
MAX_CELL = 240
MAX_CHECKS = 60
#: Most drift runs described for one retrain.
MAX_DRIFT_RUNS = 3


def cell(value: Any, limit: int = MAX_CELL) -> str:
    """``value`` as text safe inside a markdown table cell: one line, no raw HTML, no column breaks."""
    if isinstance(value, float):
        text = f"{value:.4f}" if math.isfinite(value) else str(value)
    else:
        text = "" if value is None else str(value)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("<", "&lt;").replace("`", "'")
    # every markdown sign escaped: no link, image, emphasis or column break can come from a report's text
    return "".join(f"\\{c}" if c in _MARKDOWN_SIGNS else c for c in text)


_MARKDOWN_SIGNS = frozenset("\\|[]()*_~#!>")


def code(value: Any, limit: int = MAX_CELL) -> str:
    """``value`` for inside a code span (shown as typed, no markdown): one line, no backtick, bounded."""
    text = " ".join(str(value).split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Check:
    """One row of the gate report, as the gate wrote it."""

    name: str
    kind: str
    status: str
    value: Any
    threshold: str
    detail: str


@dataclass(frozen=True)
class DriftRun:
    """A monitoring run whose drift event started this version's training."""

    run_id: str
    window: str
    verdict: str
    top_features: list[tuple[str, float]]


@dataclass(frozen=True)
class Evidence:
    """What the approval form shows about ``model`` v``version`` before it reaches ``stage``."""

    model: str
    version: str
    stage: str
    run_id: str
    gate_result: str
    checks: list[Check]
    lineage: dict[str, str]
    drift_runs: list[DriftRun] = field(default_factory=list)
    version_url: str | None = None
    attributions: Attributions | None = None
    #: Why the gate report's attributions could not be read back, else empty.
    attributions_problem: str = ""

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status in ("fail", "error")]


def _checks(raw: Any, where: str) -> tuple[str, list[Check]]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("checks"), list):
        raise RegistryError(f"{where}: not a gate report (expected an object with a 'checks' list)")
    result = str(raw.get("result", ""))
    if result not in ("passed", "failed"):
        raise RegistryError(f"{where}: result: expected 'passed' or 'failed', got {result!r}")
    checks = []
    for i, item in enumerate(raw["checks"]):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise RegistryError(f"{where}: checks[{i}]: expected an object with a 'name'")
        checks.append(
            Check(
                name=item["name"],
                kind=str(item.get("kind", "")),
                status=str(item.get("status", "")),
                value=item.get("value"),
                threshold=str(item.get("threshold") or ""),
                detail=str(item.get("detail") or ""),
            )
        )
    return result, checks


@dataclass(frozen=True)
class StoredReport:
    """A gate report as read back from a training run's artifacts."""

    result: str
    checks: list[Check]
    attributions: Attributions | None = None
    #: Why the report's attributions could not be read (the checks could), else empty.
    problem: str = ""


def _stored(raw: Any, where: str) -> StoredReport:
    result, checks = _checks(raw, where)
    found = raw.get("attributions")
    if found is None:
        return StoredReport(result, checks)
    try:
        return StoredReport(result, checks, Attributions.from_dict(found, where))
    except (ValueError, TypeError, OverflowError) as exc:
        return StoredReport(result, checks, problem=str(exc))


def read_gate_report(client: MlflowClient, run_id: str, where: str) -> StoredReport:
    """The gate result, checks and feature attributions of training run ``run_id``."""
    with tempfile.TemporaryDirectory(prefix="mlops-evidence-") as tmp:
        try:
            path = client.download_artifacts(run_id, GATE_REPORT_JSON, tmp)
        except Exception as exc:
            raise RegistryError(f"{where}: no gate report ({GATE_REPORT_JSON} of run {run_id}): {exc}") from exc
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{where}: {GATE_REPORT_JSON} of run {run_id} is not readable JSON: {exc}") from exc
    return _stored(raw, f"{where}: {GATE_REPORT_JSON} of run {run_id}")


def _drift_runs(client: MlflowClient, run_tags: Mapping[str, str]) -> list[DriftRun]:
    ids = [i.strip() for i in str(run_tags.get(Tag.RETRAINED_FOR_DRIFT, "")).split(",") if i.strip()]
    found = []
    for run_id in ids[:MAX_DRIFT_RUNS]:
        try:
            run = client.get_run(run_id)
        except Exception:  # a deleted monitoring run: say so rather than hide the retrain's cause
            found.append(DriftRun(run_id, "", "monitoring run not found", []))
            continue
        tags, metrics = run.data.tags, run.data.metrics
        psi = sorted(
            ((name.removeprefix("psi."), value) for name, value in metrics.items() if name.startswith("psi.")),
            key=lambda item: -item[1],
        )
        window = f"{tags.get(Tag.WINDOW_START, '?')} to {tags.get(Tag.WINDOW_END, '?')}"
        verdict = "drift" if tags.get(Tag.DRIFT_ACT) == "true" else "no drift"
        found.append(DriftRun(run_id, window, verdict, psi[:5]))
    return found


#: The lineage a reader is shown, by label: the version tags that say what it was trained from and on.
LINEAGE_SHOWN = (
    ("data", Tag.DATA_URI),
    ("data sha256", Tag.DATA_SHA256),
    ("config sha256", Tag.CONFIG_SHA256),
    ("code", Tag.CODE_VERSION),
    ("seed", Tag.SEED),
    ("model sha256", Tag.MODEL_SHA256),
    ("DAG run", Tag.DAG_RUN_ID),
)


def lineage_of(tags: Mapping[str, str]) -> dict[str, str]:
    """A version's lineage tags, by label (those it has)."""
    return {label: tags[tag] for label, tag in LINEAGE_SHOWN if tags.get(tag)}


def version_page(ui_url: str | None, model: str, version: str) -> str | None:
    """The MLflow UI page of the version (``ui_url``: the UI's base, e.g. ``MlflowHook.ui_url``; ``None``: no UI)."""
    if not ui_url or not ui_url.startswith(("http://", "https://")):
        return None
    return f"{ui_url.rstrip('/')}/#/models/{quote(model, safe='')}/versions/{quote(version, safe='')}"


def read_evidence(
    client: MlflowClient, model: str, version: str | int, *, stage: str, ui_url: str | None = None
) -> Evidence:
    """Gather the evidence on ``model`` v``version`` from MLflow (``ui_url``: the MLflow UI to link to).

    :raises RegistryError: the version has no readable gate report (nothing to approve on).
    """
    version = str(version)
    where = f"{model} v{version}"
    registered = client.get_model_version(model, version)
    run_id = str(registered.run_id or "")
    if not run_id:
        raise RegistryError(f"{where}: the version has no training run, so no gate report to show")
    report = read_gate_report(client, run_id, where)
    lineage = lineage_of(dict(registered.tags or {}))
    run_tags = dict(client.get_run(run_id).data.tags or {})
    return Evidence(
        model=model,
        version=version,
        stage=stage,
        run_id=run_id,
        gate_result=report.result,
        checks=report.checks,
        lineage=lineage,
        attributions=report.attributions,
        attributions_problem=report.problem,
        drift_runs=_drift_runs(client, run_tags),
        version_url=version_page(ui_url, model, version),
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def approval_body(evidence: Evidence) -> str:
    """The approval form's body (markdown): verdicts first, then failures, slices, drift, lineage, links."""
    e = evidence
    verdict = "**passed**" if e.gate_result == "passed" else "**FAILED**"
    lines = [f"**{cell(e.model)} v{cell(e.version)} → `{code(e.stage)}`?** Gate {verdict}."]
    if e.failures:
        lines += ["", f"**{len(e.failures)} failing check(s):** " + ", ".join(cell(c.name) for c in e.failures)]
    shown = e.checks[:MAX_CHECKS]
    lines += ["", "#### Gate checks"]
    lines += _table(
        ("check", "kind", "value", "threshold (vs champion)", "status", "detail"),
        [(c.name, c.kind, c.value, c.threshold, c.status, c.detail) for c in shown],
    )
    if len(e.checks) > len(shown):
        lines.append(f"… and {len(e.checks) - len(shown)} more checks in the gate report.")
    slices = [c for c in e.checks if c.kind == "slice"]
    if slices:
        worst = max(slices, key=lambda c: c.value if isinstance(c.value, int | float) else -math.inf)
        lines += ["", f"Largest slice gap: {cell(worst.name)} = {cell(worst.value)} ({cell(worst.status)})."]
    if e.attributions is not None:
        lines += ["", "#### What drives its answers", *markdown_lines(e.attributions, top=5, escape=cell)]
    elif e.attributions_problem:
        lines += ["", "#### What drives its answers", f"Not shown: {cell(e.attributions_problem)}"]
    if e.drift_runs:
        lines += ["", "#### Retrained for drift"]
        for run in e.drift_runs:
            features = ", ".join(f"{cell(name)} PSI {value:.3f}" for name, value in run.top_features) or "—"
            lines.append(f"- monitoring run `{code(run.run_id)}` ({cell(run.window)}): {cell(run.verdict)}; {features}")
    lines += ["", "#### Lineage", *(f"- {key}: `{code(value)}`" for key, value in e.lineage.items())]
    lines.append(f"- training run: `{code(e.run_id)}` (gate report: `{GATE_REPORT_JSON}` in its artifacts)")
    if e.version_url:
        lines.append(f"- [open v{cell(e.version)} in MLflow]({e.version_url})")
    return "\n".join(lines) + "\n"
