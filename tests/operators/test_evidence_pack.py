"""``airflow-mlops evidence``: one folder with a model's evidence and the EU AI Act map, checked as an auditor would.

The real operators train, register, gate and approve a version of the fraud example into a local MLflow store;
the local target promotes it (an audit-chain entry) and a monitoring run is recorded. The pack is then written
by the command line and read back file by file.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from airflow_mlops import cli
from airflow_mlops.deploy.audit_chain import GENESIS, entry_hash
from airflow_mlops.monitoring.verdicts import monitoring_experiment
from airflow_mlops.operators.registry import RecordApprovalOperator
from airflow_mlops.registry.evidence_pack import ARTICLES, articles_markdown
from airflow_mlops.vocabulary import Tag
from support import approval_answer, context, train_version

REPO = Path(__file__).parents[2]


@pytest.fixture
def served(workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    state = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", state)  # its own audit trail
    config = workspace.write_config("fraud", {"card": {"intended_use": "Rank transactions for review."}})
    version = train_version(config, "manual__evidence_1")
    answer = approval_answer("looks right")
    RecordApprovalOperator(task_id="r", config_path=str(config), answer=answer).execute(
        context(run_id="manual__evidence_1")
    )
    client = workspace.client()
    LocalGatewayTarget.from_options(client=client, state_url=state).promote(
        "fraud", version, actor="test", reason="first champion"
    )
    experiment = client.create_experiment(monitoring_experiment("fraud"))
    window = client.create_run(experiment, tags={Tag.CHAMPION: version, Tag.DRIFT_ACT: "false"})
    client.log_metric(window.info.run_id, "label_coverage", 0.2)
    client.log_text(window.info.run_id, json.dumps({"rows": 10}), "drift/statistics.json")
    client.set_terminated(window.info.run_id)
    return {"state": state, "version": version, "monitoring_run": window.info.run_id}


def evidence(workspace: Any, served: dict[str, Any], out: Path) -> int:
    return cli.main(
        [
            "evidence",
            "fraud",
            "--out",
            str(out),
            "--config-dir",
            str(workspace.config_dir),
            "--tracking-uri",
            workspace.tracking_uri,
            "--state-db",
            served["state"],
        ]
    )


@pytest.mark.slow  # trains a model per test
def test_the_pack_holds_every_served_versions_evidence_the_verified_chain_and_the_map(
    workspace: Any, served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pack"
    assert evidence(workspace, served, out) == 0
    assert "audit chain intact" in capsys.readouterr().out

    version = served["version"]
    folder = out / "versions" / f"v{version}"
    assert {p.name for p in folder.iterdir()} == {
        "card.md",
        "card.html",
        "gate_report.json",
        "gate_report.md",
        "validation.json",
        "decisions.json",
        "lineage.json",
    }
    assert "- intended use: Rank transactions for review." in (folder / "card.md").read_text()
    assert json.loads((folder / "gate_report.json").read_text())["result"] == "passed"
    assert json.loads((folder / "validation.json").read_text())["success"] is True
    [decision] = json.loads((folder / "decisions.json").read_text())
    assert (decision["stage"], decision["decision"], decision["by"], decision["comment"]) == (
        "challenger",
        "approved",
        "alice",
        "looks right",
    )
    lineage = json.loads((folder / "lineage.json").read_text())
    assert len(lineage["data sha256"]) == 64 and lineage["training_run"]

    chain = [json.loads(line) for line in (out / "audit" / "chain.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["alias"]) for e in chain][-1] == ("alias", "champion")
    # an auditor can recompute every hash from the file alone, and follow the links
    for entry, before in zip(chain, [None, *chain], strict=False):
        assert entry_hash({**entry, "ts": datetime.fromisoformat(entry["ts"])}) == entry["entry_hash"]
        assert entry["prev_hash"] == (before["entry_hash"] if before else GENESIS)
    assert "audit chain intact" in (out / "audit" / "verification.txt").read_text()

    run_id = served["monitoring_run"]
    monitoring = json.loads((out / "monitoring" / f"001-{run_id}.json").read_text())
    assert monitoring["metrics"]["label_coverage"] == 0.2 and monitoring["tags"][Tag.CHAMPION] == version
    assert json.loads((out / "monitoring" / f"001-{run_id}-statistics.json").read_text()) == {"rows": 10}

    manifest = json.loads((out / "manifest.json").read_text())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["sha256"]) == files
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name

    readme = (out / "README.md").read_text()
    assert "The audit chain **verified**" in readme and f"Versions: v{version}." in readme
    for article in ARTICLES:
        assert f"| {article.number} {article.title} |" in readme
    assert {a.number for a in ARTICLES} == {9, 10, 11, 12, 13, 14, 15, 17, 72}


@pytest.mark.slow  # trains a model per test
def test_an_edited_audit_entry_is_named_in_the_pack_and_the_exit_code(
    workspace: Any, served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = sqlalchemy.create_engine(served["state"])
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE mlops_alias_events SET reason = 'nobody asked' WHERE alias = 'champion'"))
    engine.dispose()

    out = tmp_path / "pack"
    assert evidence(workspace, served, out) == 1

    assert "audit chain BROKEN" in capsys.readouterr().err
    assert "The audit chain **FAILED verification**" in (out / "README.md").read_text()
    assert "(edited)" in (out / "audit" / "verification.txt").read_text()


@pytest.mark.slow  # trains a model per test
def test_a_folder_with_files_is_never_written_into(
    workspace: Any, served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pack"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    assert evidence(workspace, served, out) == 2

    assert "exists and is not an empty folder; nothing was written" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert cli.main(["evidence", "nobody", "--out", str(tmp_path / "x"), "--tracking-uri", workspace.tracking_uri]) == 2
    assert "evidence: nobody: " in capsys.readouterr().err


@pytest.mark.slow  # trains a model per test
def test_a_version_deleted_since_it_served_is_named_not_fatal(
    workspace: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    workspace.client().delete_model_version("fraud", served["version"])
    out = tmp_path / "pack"

    assert evidence(workspace, served, out) == 0

    readme = (out / "README.md").read_text()
    assert f"- v{served['version']}: not readable from the registry (RESOURCE_DOES_NOT_EXIST)" in readme
    assert not (out / "versions").exists() and (out / "audit" / "chain.jsonl").exists()


@pytest.mark.slow  # trains a model per test
def test_a_failure_half_way_leaves_no_half_written_pack(
    workspace: Any,
    served: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """(The disk filling up is simulated: the monitoring step raises the OSError it would.)"""
    from airflow_mlops.registry import evidence_pack

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evidence_pack, "_monitoring", full)
    out = tmp_path / "packs" / "fraud"

    assert evidence(workspace, served, out) == 2

    assert "evidence: fraud: OSError: [Errno 28] No space left on device" in capsys.readouterr().err
    assert list((tmp_path / "packs").iterdir()) == []  # neither the pack nor its partial copy
    monkeypatch.undo()
    assert evidence(workspace, {**served}, out) == 0  # and the next run is not refused


@pytest.mark.slow  # trains a model per test
def test_an_unusable_state_db_is_an_error_message(
    workspace: Any, served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pack"
    for bad in ("bogus://x", f"sqlite:///{tmp_path / 'missing' / 'state.db'}"):
        assert evidence(workspace, {**served, "state": bad}, out) == 2
        assert capsys.readouterr().err.startswith("evidence: fraud: ")
        assert not out.exists()


def test_docs_carry_the_same_article_map() -> None:
    assert articles_markdown() in (REPO / "docs" / "governance.md").read_text()
