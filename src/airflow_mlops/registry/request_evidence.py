"""From one request id to its evidence: who answered, what, with which model, trained on what, approved by whom.

:func:`explain_request` finds the request's rows in the prediction log
(:func:`~airflow_mlops.prediction_log.lookup.find_request`) and its labels, then, for each version that
answered it (or mirrored it as the shadow), reads the version's lineage, gate verdict and recorded approvals from
MLflow, and replays the audit trail up to the request's time for the aliases in force then.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.vocabulary import ALIASES, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops.deploy.audit import AliasEvent, AuditTrail
    from airflow_mlops.prediction_log.storage import Storage

__all__ = [
    "RequestEvidence",
    "ServedRow",
    "VersionFacts",
    "aliases_at",
    "explain_request",
    "render_markdown",
    "to_json",
]


@dataclass(frozen=True)
class ServedRow:
    request_id: str
    ts: str
    version: str
    role: str
    inputs: str
    output: str | None
    latency_ms: float
    error: str | None


@dataclass(frozen=True)
class VersionFacts:
    """What the registry says about a version that answered."""

    version: str
    run_id: str
    lineage: dict[str, str]
    gate: str
    gate_report: str
    decisions: list[dict[str, str]]
    problem: str = ""


@dataclass
class RequestEvidence:
    model: str
    request_id: str
    rows: list[ServedRow]
    labels: list[tuple[str, str]] = field(default_factory=list)
    versions: dict[str, VersionFacts] = field(default_factory=dict)
    #: The aliases in force at the request's time (alias -> version), from the audit trail.
    aliases: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "request_id": self.request_id,
            "rows": [vars(r) for r in self.rows],
            "labels": [{"ts": ts, "label": label} for ts, label in self.labels],
            "versions": {k: vars(v) for k, v in self.versions.items()},
            "aliases_at_request": self.aliases,
        }


def aliases_at(events: Sequence[AliasEvent], moment: datetime) -> dict[str, str]:
    """Replay alias moves up to ``moment``: which version each alias named then (unset aliases left out).

    Moves are replayed in the trail's own order (row id: the order they were appended), not by their times, which
    come from the clocks of different workers; a target's endpoint rows (traffic shares) are not aliases.
    """
    state: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e.id):
        if event.ts > moment or event.alias not in ALIASES:
            continue
        if event.to_version is None:
            state.pop(event.alias, None)
        else:
            state[event.alias] = str(event.to_version)
    return dict(sorted(state.items()))


def _facts(client: MlflowClient, model: str, version: str) -> VersionFacts:
    from mlflow.exceptions import MlflowException

    from airflow_mlops.gates.evidence import lineage_of
    from airflow_mlops.registry.card import decisions_of

    try:
        registered = client.get_model_version(model, version)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # an unreadable registry is an error, not an answer
            raise
        return VersionFacts(version, "", {}, "", "", [], problem="not in the registry (deleted since it answered)")
    tags = dict(registered.tags or {})
    decisions = [vars(d) for d in decisions_of(tags)]
    return VersionFacts(
        version=version,
        run_id=str(registered.run_id or ""),
        lineage=lineage_of(tags),
        gate=tags.get(Tag.GATE, "unknown"),
        gate_report=tags.get(Tag.GATE_REPORT, ""),
        decisions=decisions,
    )


def explain_request(
    client: MlflowClient, audit: AuditTrail, storage: Storage, model: str, request_id: str
) -> RequestEvidence | None:
    """The evidence on ``request_id`` of ``model``; ``None`` when the prediction log has no such request."""
    from airflow_mlops.prediction_log.lookup import find_request

    found = find_request(storage, model, request_id)
    if found.empty:
        return None
    rows = [
        ServedRow(
            request_id=str(r["request_id"]),
            ts=r["ts"].isoformat(),
            version=str(r["version"]),
            role=str(r["role"]),
            inputs=str(r["inputs"]),
            output=None if r["output"] is None else str(r["output"]),
            latency_ms=float(r["latency_ms"]),
            error=None if r["error"] is None else str(r["error"]),
        )
        for r in found.to_dict("records")
    ]
    labels = find_request(storage, model, request_id, kind="feedback")
    evidence = RequestEvidence(
        model=model,
        request_id=request_id,
        rows=rows,
        labels=[(ts.isoformat(), str(label)) for ts, label in zip(labels["ts"], labels["label"], strict=True)],
    )
    for version in dict.fromkeys(r.version for r in rows):
        evidence.versions[version] = _facts(client, model, version)
    evidence.aliases = aliases_at(audit.history(model), found["ts"].min().to_pydatetime())
    return evidence


def _short(text: str | None, limit: int = 2000) -> str:
    value = "" if text is None else text
    return value if len(value) <= limit else value[: limit - 1] + "…"


def render_markdown(evidence: RequestEvidence) -> str:
    """The evidence as markdown (values from the log and MLflow escaped)."""
    from airflow_mlops.gates.evidence import cell, code

    e = evidence
    out = [f"# Request {cell(e.request_id)} of {cell(e.model)}", ""]
    state = ", ".join(f"{cell(a)} → v{cell(v)}" for a, v in e.aliases.items()) or "none recorded"
    out += [f"Aliases at the time of the request: {state}", "", "## Answers"]
    for r in e.rows:
        out += [
            "",
            f"- `{code(r.request_id)}` at {cell(r.ts)}: **v{cell(r.version)}** as {cell(r.role)}"
            f" ({r.latency_ms:.1f} ms)" + (f"; error: {cell(r.error)}" if r.error else ""),
            f"  - input: `{code(_short(r.inputs), 2000)}`",
            f"  - output: `{code(_short(r.output), 2000)}`",
        ]
    out += ["", "## Labels"]
    out += [f"- {cell(ts)}: `{code(label)}`" for ts, label in e.labels] or ["none received"]
    for version, facts in e.versions.items():
        out += ["", f"## v{cell(version)}"]
        if facts.problem:
            out.append(f"- {cell(facts.problem)}")
            continue
        out += [f"- MLflow run: `{code(facts.run_id)}`", f"- gate: **{cell(facts.gate)}** ({cell(facts.gate_report)})"]
        out += [f"- {cell(k)}: `{code(v)}`" for k, v in facts.lineage.items()]
        for d in facts.decisions:
            out.append(
                f"- before {cell(d['stage'])}: {cell(d['decision'])} by {cell(d['by'])} at {cell(d['at'])}"
                + (f" ({cell(d['comment'])})" if d.get("comment") else "")
            )
        if not facts.decisions:
            out.append("- approvals: none recorded")
    return "\n".join(out) + "\n"


def to_json(evidence: RequestEvidence) -> str:
    return json.dumps(evidence.to_dict(), indent=2, sort_keys=False, default=str)
