"""The approval path of ``<model>__train``: the HITL task is answered through Airflow's REST API.

``dag.test()`` blocks while the approval waits in ``awaiting_input``; a thread answers it with
``PATCH .../hitlDetails`` on Airflow's own API app (``support.run_answering``), exactly as the Airflow
UI or a REST client would. The answer, with its comment, must end up on the version and in the audit chain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops import settings
from airflow_mlops.deploy.audit import AuditTrail, verify
from support import run_answering

pytestmark = pytest.mark.integration


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.fixture
def own_state_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's own audit trail (the session's is shared by every test)."""
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{tmp_path / 'state.db'}")


def test_approved_candidate_records_approver_and_becomes_challenger(
    workspace: Any, airflow_api: Any, own_state_db: None
) -> None:
    workspace.write_config("fraud", {"approval": {"required": True, "approvers": ["ci"]}})
    dag = workspace.dag("fraud")
    assert [t.task_id for t in dag.tasks if t.downstream_task_ids] and "approve" in dag.task_ids

    run, out = run_answering(dag, airflow_api, "Approve", params_input={"comment": "AUC holds on every slice"})

    assert run.state == "success", states(run)
    assert out["response"].json()["responded_by"] == {"id": "ci", "name": "ci"}
    body = out["pending"]["body"]
    assert "**fraud v1 → `challenger`?** Gate **passed**." in body
    assert "#### Gate checks" in body and "| threshold (vs champion) |" in body
    assert "- data sha256: `" in body and "gate_report.md" not in body  # evidence inline, not a server path
    assert out["pending"]["assigned_users"] == [{"id": "ci", "name": "ci"}]
    assert set(out["pending"]["params"]) == {"comment"}  # the form asks for a comment
    client = workspace.client()
    tags = client.get_model_version("fraud", "1").tags
    assert tags["mlops.approved_by"] == "ci"
    assert tags["mlops.approved_at"].startswith(out["response"].json()["responded_at"][:19])
    assert tags["mlops.approved_comment"] == "AUC holds on every slice"
    assert json.loads(tags["mlops.decision.challenger"])["comment"] == "AUC holds on every slice"
    assert {a: str(v) for a, v in client.get_registered_model("fraud").aliases.items()} == {"challenger": "1"}
    audit = AuditTrail(settings.state_db_url())
    entries = [(e.kind, e.alias, e.to_version, e.actor) for e in audit.entries("fraud")]
    assert entries == [
        ("approval", "challenger", "1", "ci"),
        ("alias", "challenger", "1", f"fraud__train/{run.run_id}"),
    ]
    assert verify(audit, "fraud", client).ok
    state = airflow_api.get(f"/api/v2/dags/fraud__train/dagRuns/{run.run_id}").json()["state"]
    assert state == "success"


def test_rejected_candidate_moves_no_alias(workspace: Any, airflow_api: Any, own_state_db: None) -> None:
    workspace.write_config("fraud", {"approval": {"required": True}})

    run, _ = run_answering(workspace.dag("fraud"), airflow_api, "Reject", params_input={"comment": "too slow"})

    assert states(run)["approve"] == "success"
    assert states(run)["set_challenger"] == "skipped"
    client = workspace.client()
    tags = client.get_model_version("fraud", "1").tags
    assert "mlops.approved_by" not in tags
    assert tags["mlops.rejected_by"] == "ci" and tags["mlops.rejected_reason"] == "rejected at approve by ci: too slow"
    assert client.get_registered_model("fraud").aliases == {}
    audit = AuditTrail(settings.state_db_url())
    assert [(e.kind, e.alias, e.reason) for e in audit.entries("fraud")] == [("rejection", "challenger", "too slow")]
    assert verify(audit, "fraud", client).ok


def test_rest_trigger_accepts_a_data_uri_override_in_conf(workspace: Any, airflow_api: Any) -> None:
    """POST /api/v2/dags/<model>__train/dagRuns with conf: the run carries it as the data_uri param."""
    workspace.write_config("fraud")
    workspace.dag("fraud").test()  # puts the serialized DAG in the metadata DB, as the dag-processor would

    response = airflow_api.post(
        "/api/v2/dags/fraud__train/dagRuns",
        json={"logical_date": None, "conf": {"data_uri": "s3://bucket/fraud/batch_007.csv", "data_conn_id": "aws_x"}},
    )

    assert response.status_code == 200, response.text
    run = airflow_api.get(f"/api/v2/dags/fraud__train/dagRuns/{response.json()['dag_run_id']}").json()
    assert run["conf"] == {"data_uri": "s3://bucket/fraud/batch_007.csv", "data_conn_id": "aws_x"}
    assert run["state"] == "queued"
    bad = airflow_api.post("/api/v2/dags/fraud__train/dagRuns", json={"logical_date": None, "conf": {"data_uri": 7}})
    assert bad.status_code == 400, bad.text
