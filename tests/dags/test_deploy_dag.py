"""``<model>__deploy`` and ``<model>__rollback`` with ``dag.test()`` against a real gateway process.

Traffic is generated on loopback while the DAG runs; the shadow window and canary steps are
shortened through the test config. The deferrable waits run in ``dag.test()``'s inline triggerer.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import GatewayProcess, conftest_module, run_answering, train_version

pytestmark = pytest.mark.integration

FAST_ROLLOUT = {
    "shadow": {"enabled": True, "duration": 3, "min_requests": 20, "min_agreement": 0.5, "max_error_rate": 0.05},
    "canary": {"steps": [50, 100], "step_duration": 3, "check_interval": 1, "max_error_rate": 0.05},
}


class Traffic:
    """Background requests from a fraud batch; ``unknown_share`` of them carry an unseen merchant category."""

    def __init__(self, url: str, unknown_share: float = 0.0) -> None:
        from airflow_mlops.examples.datasets import fraud_batch

        self.rows = fraud_batch(11).drop(columns=["is_fraud"]).to_dict("records")
        self.url, self.unknown_share = url, unknown_share
        self.statuses: dict[int, int] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            i = 0
            while not self._stop.is_set() and i < 20_000:
                row = dict(self.rows[i % len(self.rows)])
                if self.unknown_share and (i % round(1 / self.unknown_share)) == 0:
                    row["merchant_category"] = "crypto"
                answer = client.post("/v1/models/fraud/predict", json={"records": row})
                self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 200:
                    key = (answer.json()["model_version"], answer.json()["role"])
                    self.versions[key] = self.versions.get(key, 0) + 1
                i += 1
                time.sleep(0.005)


@dataclass
class TrainedTemplate:
    """An MLflow store and state DB, trained once for the module: champion v1, candidate v2, broken v3."""

    root: Path
    v1: str
    v2: str  # a good candidate (the same config as v1)
    v3: str  # passed its offline gates, but raises on a merchant category it never saw


def _sqlite_copy(source: Path, destination: Path) -> None:
    """A consistent copy of a SQLite file (the backup API, not a byte copy of a file that may be open)."""
    with sqlite3.connect(source) as src, sqlite3.connect(destination) as dst:
        src.backup(dst)
    src.close()
    dst.close()


@pytest.fixture(scope="module")
def trained_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TrainedTemplate:
    """Train and register v1, v2 and the broken v3 once; every test gets its own copy (``rollout_env``).

    Training and gating are as in each test before: v1 becomes champion first, so v2 and v3 are gated
    against it. The tests change aliases, tags and the audit trail only in their own copy of the stores;
    the model artifacts (absolute paths in the store) are shared and only read.
    """
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    root = tmp_path_factory.mktemp("deploy-template")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    state_url = f"sqlite:///{root / 'state.db'}"
    conn = {"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(root / "artifacts")}}
    workspace = conftest_module(request.config).Workspace(root=root, tracking_uri=tracking_uri)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
        mp.setenv("AIRFLOW_MLOPS_STATE_DB", state_url)
        try:
            config = workspace.write_config("fraud", {"rollout": FAST_ROLLOUT})
            v1 = train_version(config, "manual__v1")
            target = LocalGatewayTarget.from_options(client=workspace.client(), state_url=state_url)
            target.promote("fraud", v1, actor="test", reason="first champion")
            target.audit.dispose()
            v2 = train_version(config, "manual__v2")
            broken = workspace.write_config("fraud", {"features": {"unknown_categories": "error"}})
            v3 = train_version(broken, "manual__broken")
        finally:
            for old in workspace.config_dir.iterdir():
                old.unlink()
    return TrainedTemplate(root=root, v1=v1, v2=v2, v3=v3)


@pytest.fixture
def rollout_env(
    workspace: Any, trained_template: TrainedTemplate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """This test's own copy of the module's stores (v1 champion, v2 and v3 registered) and its own gateway."""
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    log_root = tmp_path / "prediction-log"
    _sqlite_copy(trained_template.root / "mlflow.db", tmp_path / "mlflow.db")
    _sqlite_copy(trained_template.root / "state.db", tmp_path / "state.db")
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{tmp_path / 'state.db'}")
    config = workspace.write_config("fraud", {"rollout": FAST_ROLLOUT, "serving": {"prediction_log": str(log_root)}})
    v1 = trained_template.v1
    target = LocalGatewayTarget.from_options(client=workspace.client(), state_url=f"sqlite:///{tmp_path / 'state.db'}")
    assert target.state("fraud").champion == v1
    gateway = GatewayProcess(
        models=["fraud"],
        tracking_uri=workspace.tracking_uri,
        log_root=log_root,
        extra=["--poll-interval", "0.5", "--flush-interval", "0.5"],
    )
    gateway.wait_ready()
    yield {
        "config": config,
        "v1": v1,
        "v2": trained_template.v2,
        "broken": trained_template.v3,
        "target": target,
        "gateway": gateway,
        "log_root": log_root,
    }
    gateway.kill()


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_good_candidate_goes_shadow_canary_champion(
    workspace: Any, airflow_db: Any, rollout_env: dict[str, Any]
) -> None:
    from airflow_mlops.factories import build_dags

    v2 = rollout_env["v2"]
    gateway = rollout_env["gateway"]

    with Traffic(gateway.url) as traffic:
        run = build_dags(None, workspace.config_dir)["fraud__deploy"].test(run_conf={"version": v2})
        gateway.wait_ready(predicate=lambda r: r["models"]["fraud"]["champion"] == v2, timeout=10)

    assert run.state == "success", states(run)
    assert set(states(run).values()) == {"success"}
    state = rollout_env["target"].state("fraud")
    assert (state.champion, state.previous, state.canary, state.shadow, state.challenger) == (
        v2,
        rollout_env["v1"],
        None,
        None,
        None,
    )
    assert traffic.statuses.keys() == {200}
    assert traffic.versions.get((v2, "canary"), 0) > 0 and traffic.versions.get((rollout_env["v1"], "champion"), 0) > 0
    moves = [(e.alias, e.from_version, e.to_version) for e in rollout_env["target"].audit.history("fraud")]
    assert (
        ("shadow", None, v2) in moves and ("canary", None, v2) in moves and ("champion", rollout_env["v1"], v2) in moves
    )


def test_broken_candidate_is_rolled_back_by_the_canary_check(
    workspace: Any, airflow_db: Any, rollout_env: dict[str, Any]
) -> None:
    """A candidate that fails on unseen merchant categories passes offline gates, then breaches online."""
    from airflow_mlops.factories import build_dags

    client = workspace.client()
    workspace.write_config(  # the rollout the deploy DAG runs with; v3 raises on unseen categories
        "fraud",
        {
            "features": {"unknown_categories": "error"},
            "rollout": {
                **FAST_ROLLOUT,
                "shadow": {"enabled": False},
                "canary": {**FAST_ROLLOUT["canary"], "step_duration": 20},
            },
            "serving": {"prediction_log": str(rollout_env["log_root"])},
        },
    )
    v2 = rollout_env["broken"]
    gateway = rollout_env["gateway"]

    with Traffic(gateway.url, unknown_share=0.1) as traffic:
        started = time.monotonic()
        run = build_dags(None, workspace.config_dir)["fraud__deploy"].test(run_conf={"version": v2})
        elapsed = time.monotonic() - started
        gateway.wait_ready(predicate=lambda r: r["models"]["fraud"]["canary"] is None, timeout=10)

    assert run.state == "failed"
    assert states(run)["canary_50"] == "failed" and states(run)["promote"] == "upstream_failed"
    assert elapsed < 20, "the breach must end the step before its 20 s duration"
    state = rollout_env["target"].state("fraud")
    assert (state.champion, state.canary, state.canary_percent) == (rollout_env["v1"], None, 0.0)
    reason = client.get_model_version("fraud", v2).tags["mlops.rollback_reason"]
    assert reason.startswith("canary step 50%: canary error rate")
    assert traffic.statuses.keys() == {200}, "a failing canary never reaches the client: the champion answers"
    last = rollout_env["target"].audit.history("fraud")[-1]
    assert (last.alias, last.from_version, last.to_version) == ("canary", v2, None)
    assert "canary error rate" in last.reason


def test_rollback_dag_serves_previous_within_seconds(
    workspace: Any, airflow_db: Any, rollout_env: dict[str, Any]
) -> None:
    from airflow_mlops.factories import build_dags

    v2 = rollout_env["v2"]
    target = rollout_env["target"]
    target.promote("fraud", v2, actor="test", reason="setup")
    gateway = rollout_env["gateway"]
    gateway.wait_ready(predicate=lambda r: r["models"]["fraud"]["champion"] == v2, timeout=10)
    workspace.write_config(
        "fraud",
        {
            "rollout": FAST_ROLLOUT,
            "serving": {"prediction_log": str(rollout_env["log_root"]), "gateway_url": gateway.url},
        },
    )

    run = build_dags(None, workspace.config_dir)["fraud__rollback"].test()
    finished = time.monotonic()
    served = gateway.wait_ready(predicate=lambda r: r["models"]["fraud"]["champion"] == rollout_env["v1"], timeout=5)

    assert run.state == "success"
    assert time.monotonic() - finished < 5
    assert served["models"]["fraud"]["champion"] == rollout_env["v1"]
    assert target.state("fraud").previous == v2


def test_candidate_failing_the_shadow_gate_is_rejected(
    workspace: Any, airflow_db: Any, rollout_env: dict[str, Any]
) -> None:
    from airflow_mlops.factories import build_dags

    client = workspace.client()
    workspace.write_config(  # the rollout the deploy DAG runs with; v3 raises on unseen categories
        "fraud",
        {
            "features": {"unknown_categories": "error"},
            "rollout": FAST_ROLLOUT,
            "serving": {"prediction_log": str(rollout_env["log_root"])},
        },
    )
    v2 = rollout_env["broken"]

    with Traffic(rollout_env["gateway"].url, unknown_share=0.1) as traffic:
        run = build_dags(None, workspace.config_dir)["fraud__deploy"].test(run_conf={"version": v2})

    assert run.state == "failed"
    assert states(run)["shadow"] == "failed" and states(run)["canary_50"] == "upstream_failed"
    state = rollout_env["target"].state("fraud")
    assert (state.champion, state.shadow, state.canary) == (rollout_env["v1"], None, None)
    tags = client.get_model_version("fraud", v2).tags
    rejected = [value for key, value in tags.items() if "reject" in key]
    assert rejected and "shadow gate failed: shadow error rate" in rejected[0]
    assert traffic.statuses.keys() == {200}
    assert traffic.versions.get((v2, "canary"), 0) == 0


def test_a_rejected_canary_approval_takes_the_candidate_out_and_is_evidence(
    workspace: Any, airflow_api: Any, rollout_env: dict[str, Any]
) -> None:
    """Reject at ``approve_canary`` (with a comment): the shadow stops, the version is rejected, the answer is on
    the version (``mlops.decision.canary``) and in the audit chain, and nothing downstream runs."""
    from airflow_mlops.deploy.audit import verify
    from airflow_mlops.factories import build_dags

    workspace.write_config(
        "fraud",
        {
            "rollout": {**FAST_ROLLOUT, "approval_before_canary": True},
            "approval": {"approvers": ["ci"]},
            "serving": {"prediction_log": str(rollout_env["log_root"])},
        },
    )
    v2, target = rollout_env["v2"], rollout_env["target"]
    target.deployments.set_challenger(
        "fraud", v2, actor="fraud__train/t", reason="gate passed"
    )  # as training leaves it
    dag = build_dags(None, workspace.config_dir)["fraud__deploy"]

    with Traffic(rollout_env["gateway"].url):
        run, out = run_answering(
            dag,
            airflow_api,
            "Reject",
            task_id="approve_canary",
            params_input={"comment": "shadow disagrees on big tickets"},
            run_conf={"version": v2},
        )

    assert states(run)["shadow"] == "success" and states(run)["approve_canary"] == "success", states(run)
    assert {states(run)[t] for t in ("canary_50", "canary_100", "promote")} == {"skipped"}
    assert f"Candidate v{v2} of fraud" in out["pending"]["body"]
    assert f"**fraud v{v2} → `canary`?** Gate **passed**." in out["pending"]["body"]  # the evidence, inline
    state = target.state("fraud")
    assert (state.champion, state.shadow, state.canary, state.challenger) == (rollout_env["v1"], None, None, None)
    tags = workspace.client().get_model_version("fraud", v2).tags
    assert tags["mlops.rejected_by"] == "ci"
    assert tags["mlops.rejected_reason"] == "rejected at approve_canary by ci: shadow disagrees on big tickets"
    decision = json.loads(tags["mlops.decision.canary"])
    assert (decision["decision"], decision["by"], decision["comment"]) == (
        "rejected",
        "ci",
        "shadow disagrees on big tickets",
    )
    entries = target.audit.entries("fraud")
    rejection = [e for e in entries if e.kind == "rejection"]
    assert [(e.alias, e.to_version, e.actor) for e in rejection] == [("canary", v2, "ci")]
    after = entries[entries.index(rejection[0]) + 1 :]
    assert [(e.alias, e.from_version, e.to_version, e.actor) for e in after] == [("challenger", v2, None, "ci")]
    assert verify(target.audit, "fraud", workspace.client()).ok


def test_deploy_dag_inserts_approvals_where_configured(workspace: Any) -> None:
    from airflow_mlops.factories import build_dags

    workspace.write_config(
        "fraud",
        {
            "rollout": {
                "approval_before_canary": True,
                "approval_before_promotion": True,
                "canary": {"steps": [20, 100]},
            }
        },
    )
    dag = build_dags(None, workspace.config_dir)["fraud__deploy"]

    chain = ["resolve_candidate", "shadow", "approve_canary", "canary_20", "canary_100", "approve_promotion", "promote"]
    for upstream, downstream in itertools.pairwise(chain):
        # the chain, plus the data dependency on resolve_candidate's output (version, champion) where it is used
        assert upstream in dag.get_task(downstream).upstream_task_ids <= {upstream, "resolve_candidate"}
    assert type(dag.get_task("approve_canary")).__name__ == "ModelApprovalOperator"
    assert (dag.get_task("approve_canary").stage, dag.get_task("approve_promotion").stage) == ("canary", "champion")
    assert [asset.uri for asset in dag.schedule] == ["mlops://fraud/candidate"]


def test_hand_written_rollout_dag_without_yaml(
    workspace: Any, airflow_db: Any, rollout_env: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """``dags/examples/example_rollout.py``: the same rollout from explicit arguments, no model config."""
    from airflow.dag_processing.dagbag import DagBag

    v2 = rollout_env["v2"]
    for old in workspace.config_dir.iterdir():  # no YAML anywhere: the operators must not need one
        old.unlink()
    # dag.test() runs what the DAG bundle holds: put the example into the test DAG folder
    example = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "example_rollout.py"
    shutil.copy(Path(__file__).parents[2] / "dags" / "examples" / "example_rollout.py", example)
    request.addfinalizer(example.unlink)
    bag = DagBag(dag_folder=str(example))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_rollout")
    gateway = rollout_env["gateway"]

    with Traffic(gateway.url) as traffic:
        run = dag.test(run_conf={"model": "fraud", "version": v2, "log_root": str(rollout_env["log_root"])})
        gateway.wait_ready(predicate=lambda r: r["models"]["fraud"]["champion"] == v2, timeout=10)

    assert run.state == "success", states(run)
    assert rollout_env["target"].state("fraud").champion == v2
    assert traffic.statuses.keys() == {200}
    assert traffic.versions.get((v2, "canary"), 0) > 0
