"""``airflow-mlops explain <request_id>``: from one request to the version, lineage, gate, approver and aliases.

A version of the fraud example is trained, gated and approved by the real operators and promoted by the local
target (audit entries); the prediction log holds the rows the gateway writes for a request (written here with
the log's own writer), a batch request and a label.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops import cli
from airflow_mlops.operators.registry import RecordApprovalOperator
from airflow_mlops.prediction_log import FeedbackRecord, LocalStorage, PredictionLog, PredictionRecord
from airflow_mlops.vocabulary import Tag
from support import approval_answer, context, train_version

HOSTILE = "`]](http://evil) <b>x</b>"


def record(request_id: str, ts: datetime, version: str, role: str = "champion", inputs: str = "{}") -> Any:
    return PredictionRecord(
        request_id=request_id,
        ts=ts,
        model="fraud",
        version=version,
        role=role,
        inputs=inputs,
        output=json.dumps({"prediction": 1, "score": 0.93}),
        latency_ms=2.5,
        error=None,
    )


@pytest.fixture
def served(workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    state = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", state)
    root = tmp_path / "prediction-log"
    config = workspace.write_config("fraud", {"serving": {"prediction_log": str(root)}})
    version = train_version(config, "manual__explain_1")
    RecordApprovalOperator(task_id="r", config_path=str(config), answer=approval_answer("fine by me")).execute(
        context(run_id="manual__explain_1")
    )
    before = datetime.now(UTC) - timedelta(minutes=5)  # answered before the promotion below
    LocalGatewayTarget.from_options(client=workspace.client(), state_url=state).promote(
        "fraud", version, actor="test", reason="first champion"
    )
    after = datetime.now(UTC) + timedelta(seconds=1)
    log = PredictionLog(LocalStorage(root))
    log.append(
        [
            record("req-early", before, version, role="canary"),
            record("req-1", after, version, inputs=json.dumps({"amount": 12.5, "note": HOSTILE})),
            record("batch-9#0", after, version),
            record("batch-9#1", after, version),
            *(record(f"other-{i}", after, version) for i in range(50)),
        ]
    )
    log.append_feedback([FeedbackRecord("req-1", after + timedelta(minutes=3), "fraud", "1")])
    log.close()
    return {"state": state, "version": version}


def explain(workspace: Any, served: dict[str, Any], request_id: str, *more: str) -> int:
    argv = ["explain", request_id, "--config-dir", str(workspace.config_dir)]
    return cli.main([*argv, "--tracking-uri", workspace.tracking_uri, "--state-db", served["state"], *more])


@pytest.mark.slow  # trains a model per test
def test_one_request_answers_version_role_input_output_lineage_gate_approver_and_aliases(
    workspace: Any, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    version = served["version"]
    assert explain(workspace, served, "req-1", "--json") == 0

    found = json.loads(capsys.readouterr().out)
    [row] = found["rows"]
    assert (row["request_id"], row["version"], row["role"]) == ("req-1", version, "champion")
    assert json.loads(row["inputs"])["note"] == HOSTILE and json.loads(row["output"]) == {
        "prediction": 1,
        "score": 0.93,
    }
    assert [label["label"] for label in found["labels"]] == ["1"]
    facts = found["versions"][version]
    registered = workspace.client().get_model_version("fraud", version)
    assert facts["run_id"] == registered.run_id and facts["gate"] == "passed"
    assert facts["lineage"]["data sha256"] == registered.tags[Tag.DATA_SHA256]
    assert facts["lineage"]["config sha256"] == registered.tags[Tag.CONFIG_SHA256]
    assert facts["gate_report"].endswith("gate/gate_report.md")
    assert [(d["by"], d["comment"]) for d in facts["decisions"]] == [("alice", "fine by me")]
    assert found["aliases_at_request"]["champion"] == version


@pytest.mark.slow  # trains a model per test
def test_the_alias_state_is_the_one_at_the_requests_time(
    workspace: Any, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert explain(workspace, served, "req-early", "--json", "--model", "fraud") == 0
    found = json.loads(capsys.readouterr().out)
    assert found["rows"][0]["role"] == "canary" and "champion" not in found["aliases_at_request"]


@pytest.mark.slow  # trains a model per test
def test_a_batch_request_shows_each_of_its_rows_and_markdown_is_escaped(
    workspace: Any, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert explain(workspace, served, "batch-9") == 0
    text = capsys.readouterr().out
    assert "`batch-9#0`" in text and "`batch-9#1`" in text and "other-" not in text

    assert explain(workspace, served, "req-1") == 0
    text = capsys.readouterr().out
    assert text.startswith("# Request req-1 of fraud")
    [line] = [x for x in text.splitlines() if x.startswith("  - input: ")]
    assert line.count("`") == 2 and line.endswith("`")  # the logged input stays one code span: no markup
    assert "- before challenger: approved by alice" in text


@pytest.mark.slow  # trains a model per test
def test_unknown_and_hostile_request_ids(
    workspace: Any, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert explain(workspace, served, "nobody") == 1
    assert "explain: no request 'nobody' in the prediction log of ['fraud']" in capsys.readouterr().err
    assert explain(workspace, served, "x" * 300) == 2
    assert "expected 1 to 256 characters" in capsys.readouterr().err
    assert explain(workspace, served, "req") == 1  # a prefix of an id is not that id


@pytest.mark.slow  # trains a model per test
def test_a_broken_config_is_reported_not_taken_for_a_model_without_the_request(
    workspace: Any, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace.config_dir / "broken.yaml").write_text("name: broken\ntask: [not, a, task]\n")
    assert explain(workspace, served, "nobody") == 2
    err = capsys.readouterr().err
    assert "broken.yaml: task:" in err and "explain: no request 'nobody'" in err
    assert explain(workspace, served, "req-1") == 0  # the others are still searched


def test_aliases_are_replayed_in_the_trails_order_not_by_worker_clocks() -> None:
    from airflow_mlops.deploy.audit import AliasEvent
    from airflow_mlops.registry.request_evidence import aliases_at

    t = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def move(i: int, alias: str, to: str | None, seconds: int) -> AliasEvent:
        return AliasEvent(i, "fraud", alias, None, to, "r", "a", t + timedelta(seconds=seconds))

    events = [
        move(1, "champion", "1", 0),
        move(2, "canary", "2", 10),
        move(3, "champion", "2", 9),  # appended after the canary, by a worker whose clock is a second behind
        move(4, "canary", None, 11),
        move(5, "endpoint:AllTraffic", "95", 12),  # a target's traffic row, not an alias
        move(6, "champion", "3", 60),
    ]
    assert aliases_at(events, t + timedelta(seconds=30)) == {"champion": "2"}
    assert aliases_at(events, t + timedelta(seconds=10)) == {"canary": "2", "champion": "2"}
    assert aliases_at(events, t - timedelta(seconds=1)) == {}
