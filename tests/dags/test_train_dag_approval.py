"""The approval path of ``<model>__train``: the HITL task is answered through Airflow's REST API.

``dag.test()`` blocks while the ApprovalOperator waits in ``awaiting_input``; a thread answers it
with ``PATCH .../hitlDetails`` on Airflow's own API app (in-process, same metadata DB), exactly as
the Airflow UI or a REST client would.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def run_answering(dag: Any, api: Any, answer: str, wait: float = 120.0) -> tuple[Any, dict[str, Any]]:
    out: dict[str, Any] = {}

    def respond() -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pending = api.get(
                f"/api/v2/dags/{dag.dag_id}/dagRuns/~/hitlDetails",
                params={"response_received": False, "task_id": "approve"},
            )
            if pending.status_code == 200 and pending.json()["hitl_details"]:
                ti = pending.json()["hitl_details"][0]["task_instance"]
                out["pending"] = pending.json()["hitl_details"][0]
                out["response"] = api.patch(
                    f"/api/v2/dags/{dag.dag_id}/dagRuns/{ti['dag_run_id']}/taskInstances/approve/"
                    f"{ti['map_index']}/hitlDetails",
                    json={"chosen_options": [answer], "params_input": {}},
                )
                return
            time.sleep(0.3)
        out["error"] = "the approval task never reached awaiting_input"

    responder = threading.Thread(target=respond, daemon=True)
    responder.start()
    run = dag.test()
    responder.join(10)
    assert "error" not in out, out["error"]
    assert out["response"].status_code == 200, out["response"].text
    return run, out


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_approved_candidate_records_approver_and_becomes_challenger(workspace: Any, airflow_api: Any) -> None:
    workspace.write_config("fraud", {"approval": {"required": True, "approvers": ["ci"]}})
    dag = workspace.dag("fraud")
    assert [t.task_id for t in dag.tasks if t.downstream_task_ids] and "approve" in dag.task_ids

    run, out = run_answering(dag, workspace_api := airflow_api, "Approve")

    assert run.state == "success", states(run)
    assert out["response"].json()["responded_by"] == {"id": "ci", "name": "ci"}
    assert "v1" in out["pending"]["body"] and "gate_report.md" in out["pending"]["body"]
    assert out["pending"]["assigned_users"] == [{"id": "ci", "name": "ci"}]
    client = workspace.client()
    tags = client.get_model_version("fraud", "1").tags
    assert tags["mlops.approved_by"] == "ci"
    assert tags["mlops.approved_at"].startswith(out["response"].json()["responded_at"][:19])
    assert {a: str(v) for a, v in client.get_registered_model("fraud").aliases.items()} == {"challenger": "1"}
    state = workspace_api.get(f"/api/v2/dags/fraud__train/dagRuns/{run.run_id}").json()["state"]
    assert state == "success"


def test_rejected_candidate_moves_no_alias(workspace: Any, airflow_api: Any) -> None:
    workspace.write_config("fraud", {"approval": {"required": True}})

    run, _ = run_answering(workspace.dag("fraud"), airflow_api, "Reject")

    assert states(run)["approve"] == "success"
    assert states(run)["record_approval"] == "skipped"
    assert states(run)["set_challenger"] == "skipped"
    client = workspace.client()
    assert "mlops.approved_by" not in client.get_model_version("fraud", "1").tags
    assert client.get_registered_model("fraud").aliases == {}


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
