"""One folder an auditor can take away: a model's evidence, with a map to the EU AI Act articles it supports.

:func:`write_evidence_pack` gathers, from MLflow and the audit trail, for every version that served (was ever
``champion`` or ``canary``) or holds an alias now: the model card, the gate report, the data validation
results, the recorded approval answers and the lineage; for the model: the audit chain as stored (with its
hashes) and the result of verifying it against the registry, and the latest monitoring runs (drift, live
performance, label coverage). ``README.md`` indexes the files and maps them to the articles;
``manifest.json`` holds the sha256 of every file. Nothing from MLflow names a file: only version numbers
and run ids that are plain digits / hex do.

The map says what each file supports, and what the project does not cover: the Act asks for an organisation's
processes (a risk-management system, a quality-management system, a post-market monitoring plan, incident
reporting) that no tool produces on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.vocabulary import Alias

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.registry.card import CardText

__all__ = ["ARTICLES", "Article", "EvidencePack", "articles_markdown", "write_evidence_pack"]

_RUN_ID = re.compile(r"[0-9a-f]{1,64}")
_SERVING = (Alias.CHAMPION, Alias.CANARY)
#: Files copied from each version's training run, when it has them: (artifact path, name in the pack).
_RUN_FILES = (
    ("gate/gate_report.json", "gate_report.json"),
    ("gate/gate_report.md", "gate_report.md"),
    ("validation/expectations.json", "validation.json"),
)


@dataclass(frozen=True)
class Article:
    number: int
    title: str
    files: str
    supports: str
    not_covered: str


ARTICLES: tuple[Article, ...] = (
    Article(
        9,
        "Risk management system",
        "`versions/*/gate_report.*`, `versions/*/card.md`, `monitoring/`",
        "documented acceptance criteria applied to every version in the pack (thresholds, champion comparison, "
        "slice gaps, behaviour cases) and their results; known limitations; risks observed in production (drift, "
        "performance)",
        "identifying and assessing risks, foreseeable misuse and residual risk is the provider's process",
    ),
    Article(
        10,
        "Data and data governance",
        "`versions/*/lineage.json`, `versions/*/validation.json`, `versions/*/gate_report.json` (slices), "
        "`versions/*/card.md` (split)",
        "which data trained each version (URI, sha256; the split on the card), the data-quality expectations and "
        "their results, "
        "per-group metrics on protected attributes kept out of the features (`data.audit_columns`)",
        "how the data was collected and labelled, and whether it is representative, are not recorded",
    ),
    Article(
        11,
        "Technical documentation",
        "`versions/*/card.md`, `versions/*/card.html`, `versions/*/lineage.json`",
        "per version: intended use, features, estimator and parameters, metrics, config and code version",
        "Annex IV asks for more (design choices, computational resources, the system the model is part of)",
    ),
    Article(
        12,
        "Record-keeping",
        "`audit/chain.jsonl`, `audit/verification.txt`",
        "the record of deployment changes: every alias move, traffic change, approval, rejection and rollback as "
        "a hash chain, verified against the heads mirrored in the registry when the pack was written",
        "the per-request event log (the prediction log) stays in its store; the pack does not copy it",
    ),
    Article(
        13,
        "Transparency and provision of information to deployers",
        "`versions/*/card.md` (intended use, limitations, feature attributions, per-group metrics)",
        "what each version is for, its limits, how it performs overall and per group, what drives its answers",
        "instructions for use written for the deployer, in their language, are the provider's",
    ),
    Article(
        14,
        "Human oversight",
        "`audit/chain.jsonl` (approval, rejection, rollback entries), `versions/*/decisions.json`",
        "a person decides before each version is released (who, when, with which comment: in the verified chain; "
        "`decisions.json` copies the version's tags); every rollback",
        "oversight while the system is in use (interpreting, overriding or stopping individual outputs), and who "
        "may oversee with which training and authority, are the deployer's and provider's measures",
    ),
    Article(
        15,
        "Accuracy, robustness and cybersecurity",
        "`versions/*/gate_report.*`, `monitoring/` (live metric)",
        "held-out accuracy metrics against thresholds and the champion, behaviour cases, live performance on "
        "delayed labels, drift",
        "adversarial robustness and security testing of the model are not performed",
    ),
    Article(
        17,
        "Quality management system",
        "`versions/*/lineage.json` (config and code version), `audit/`",
        "each version is traceable to the config and code that produced it, and to the gates it passed",
        "the QMS itself (policies, responsibilities, procedures) is the organisation's",
    ),
    Article(
        72,
        "Post-market monitoring",
        "`monitoring/` (drift, live metric, label coverage, one-sided feedback warnings)",
        "what the model met in production in the newest monitoring windows (the README gives their time range), "
        "and whether its labels can be trusted",
        "the post-market monitoring plan and serious-incident reporting (Art. 73) are not produced",
    ),
)


def articles_markdown() -> str:
    """The article map as a markdown table (the pack's README and docs/governance.md carry it)."""
    rows = ["| Article | Files | What they support | Not covered |", "|---|---|---|---|"]
    rows += [f"| {a.number} {a.title} | {a.files} | {a.supports} | {a.not_covered} |" for a in ARTICLES]
    return "\n".join(rows) + "\n"


@dataclass
class EvidencePack:
    """What was written, and whether the audit chain verified."""

    model: str
    folder: Path
    versions: list[str]
    monitoring_runs: int
    monitoring_span: str
    chain_ok: bool
    chain_summary: str
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MlopsError(f"--out {out}: exists and is not an empty folder; nothing was written")


def _served_versions(entries: Sequence[Any], aliases: Mapping[str, Any]) -> list[str]:
    """Versions that were ever champion or canary, and those holding an alias now (version numbers only)."""
    moves = [e for e in entries if (e.kind or "alias") == "alias" and e.alias in _SERVING and e.to_version]
    found = {str(e.to_version) for e in moves}
    found |= {str(v) for v in aliases.values()}
    return sorted((v for v in found if v.isascii() and v.isdigit()), key=int)


def _download(client: MlflowClient, run_id: str, path: str, to: Path) -> bool:
    with tempfile.TemporaryDirectory(prefix="mlops-evidence-") as tmp:
        try:
            data = Path(client.download_artifacts(run_id, path, tmp)).read_bytes()
        except Exception:  # absent (or not a file): the README lists what is not in the pack
            return False
    to.write_bytes(data)
    return True


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def _version(client: MlflowClient, model: str, version: str, text: CardText, folder: Path) -> list[str]:
    from mlflow.exceptions import MlflowException

    from airflow_mlops.gates.evidence import lineage_of
    from airflow_mlops.registry.card import build_card, render_html, render_markdown

    notes = []
    try:
        card = build_card(client, model, version, text)
    except MlflowException as exc:  # e.g. deleted from the registry since it served: the chain still names it
        return [f"v{version}: not readable from the registry ({exc.error_code}): {str(exc)[:200]}"]
    folder.mkdir(parents=True)
    (folder / "card.md").write_text(render_markdown(card), encoding="utf-8")
    (folder / "card.html").write_text(render_html(card), encoding="utf-8")
    registered = client.get_model_version(model, version)
    lineage = {**lineage_of(dict(registered.tags or {})), "training_run": card.run_id}
    (folder / "lineage.json").write_text(_json(lineage), encoding="utf-8")
    decisions = [asdict(d) for d in card.decisions]
    (folder / "decisions.json").write_text(_json(decisions), encoding="utf-8")
    for artifact, name in _RUN_FILES:
        if not card.run_id or not _download(client, card.run_id, artifact, folder / name):
            notes.append(f"v{version}: no {artifact} in its training run")
    return notes


def _monitoring(client: MlflowClient, model: str, folder: Path, limit: int) -> tuple[int, str]:
    """The newest ``limit`` monitoring runs; their number and the time range they cover."""
    from airflow_mlops.monitoring.verdicts import STATISTICS_ARTIFACT, monitoring_experiment

    experiment = client.get_experiment_by_name(monitoring_experiment(model))
    if experiment is None or limit <= 0:
        return 0, ""
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit)
    if not runs:
        return 0, ""
    folder.mkdir()
    for i, run in enumerate(runs, start=1):
        run_id = str(run.info.run_id)
        name = f"{i:03d}-{run_id}" if _RUN_ID.fullmatch(run_id) else f"{i:03d}"
        summary = {
            "run_id": run_id,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "tags": {k: v for k, v in (run.data.tags or {}).items() if not k.startswith("mlflow.")},
            "metrics": dict(run.data.metrics or {}),
        }
        (folder / f"{name}.json").write_text(_json(summary), encoding="utf-8")
        _download(client, run_id, STATISTICS_ARTIFACT, folder / f"{name}-statistics.json")
    starts = [datetime.fromtimestamp(r.info.start_time / 1000, UTC) for r in runs if r.info.start_time]
    span = f"{min(starts):%Y-%m-%d %H:%M} to {max(starts):%Y-%m-%d %H:%M} UTC" if starts else ""
    return len(runs), span


def _chain(audit: AuditTrail, client: MlflowClient, model: str, folder: Path) -> tuple[bool, str, list[Any]]:
    """Verify the chain, then keep the entries as stored (with the hashed form of their time). An entry
    appended in between is kept too, and the summary says verification did not cover it."""
    from airflow_mlops.deploy.audit import verify
    from airflow_mlops.deploy.audit_chain import timestamp_text

    folder.mkdir()
    report = verify(audit, model, client)
    entries, _, _ = audit.stored_chain(model)
    summary = report.summary()
    if len(entries) != report.entries:
        summary += f" ({len(entries) - report.entries} entries appended while the pack was written: not verified)"
    lines = [json.dumps({**asdict(e), "ts": timestamp_text(e.ts)}, sort_keys=True, default=str) for e in entries]
    (folder / "chain.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (folder / "verification.txt").write_text(summary + "\n", encoding="utf-8")
    return report.ok, summary, entries


def _readme(pack: EvidencePack, written_at: str) -> str:
    verdict = "**verified**" if pack.chain_ok else "**FAILED verification**"
    lines = [
        f"# Evidence pack: {pack.model}",
        "",
        f"Written {written_at} by `airflow-mlops evidence`. The audit chain {verdict}: {pack.chain_summary}",
        "",
        "## Files",
        "",
        "- `versions/v<n>/`: each version that served (was ever `champion` or `canary`) or holds an alias: "
        "`card.md` / `card.html` (model card), `gate_report.json` / `.md`, `validation.json` (data expectations "
        "and results), `decisions.json` (approval answers), `lineage.json` (data, config, code, training run)",
        "- `audit/chain.jsonl`: the model's audit chain as stored, one entry per line with its `prev_hash` and "
        "`entry_hash` (the sha256 of the canonical JSON of the entry's hashed fields and the previous hash: "
        "`airflow_mlops.deploy.audit_chain.entry_hash`); `audit/verification.txt`: the result of verifying it "
        "against the heads mirrored in the registry",
        f"- `monitoring/`: the newest {pack.monitoring_runs} monitoring runs"
        + (f" ({pack.monitoring_span})" if pack.monitoring_span else "")
        + " (tags, metrics, `*-statistics.json`)",
        "- `manifest.json`: the sha256 of every other file in the pack",
        "",
        f"Versions: {', '.join('v' + v for v in pack.versions) or 'none'}.",
        "",
        "## EU AI Act: what these files support",
        "",
        "The files support these articles for a high-risk system; they are not a conformity assessment.",
        "",
        articles_markdown().rstrip("\n"),
    ]
    if pack.notes:
        lines += ["", "## Not in this pack", "", *(f"- {note}" for note in pack.notes)]
    return "\n".join(lines) + "\n"


def write_evidence_pack(
    client: MlflowClient,
    audit: AuditTrail,
    model: str,
    out: Path,
    text: CardText,
    *,
    monitoring_runs: int = 50,
) -> EvidencePack:
    """Write ``model``'s evidence pack into ``out`` (a new or empty folder).

    :raises MlopsError: ``out`` is not an empty folder (nothing is written).
    :raises MlflowException: the registry cannot be read (the model does not exist, MLflow is down).
    """
    _check_out(out)
    registered = client.get_registered_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    # written next to --out and moved into place when complete: a failure leaves no half-written pack
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        pack = _write(client, audit, model, building, text, registered.aliases or {}, monitoring_runs)
        if out.exists():
            out.rmdir()  # the empty folder checked above
        building.rename(out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    pack.folder = out
    return pack


def _write(
    client: MlflowClient,
    audit: AuditTrail,
    model: str,
    out: Path,
    text: CardText,
    aliases: Mapping[str, Any],
    monitoring_runs: int,
) -> EvidencePack:
    chain_ok, chain_summary, entries = _chain(audit, client, model, out / "audit")
    versions = _served_versions(entries, aliases)
    notes: list[str] = []
    for version in versions:
        notes += _version(client, model, version, text, out / "versions" / f"v{version}")
    runs, span = _monitoring(client, model, out / "monitoring", monitoring_runs)
    if runs == 0:
        notes.append("no monitoring run yet")
    pack = EvidencePack(model, out, versions, runs, span, chain_ok, chain_summary, notes=notes)
    written_at = datetime.now(UTC).isoformat(timespec="seconds")
    (out / "README.md").write_text(_readme(pack, written_at), encoding="utf-8")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        pack.files[path.relative_to(out).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(_json({"model": model, "written_at": written_at, "sha256": pack.files}))
    return pack
