"""The REST operations of the README and ``docs/rest.md``, against a live api-server on loopback.

One live Airflow (``live_airflow.py``: scheduler, dag-processor, triggerer, api-server on a fresh PostgreSQL
database) with the fraud model, ``approval.required: true`` so ``fraud__train`` waits for a human. That Airflow
(``shared_live_airflow`` in ``conftest.py``) also serves ``test_browser.py``, which drives a model of its own
(``fraud_ui``), so neither test sees the other's runs or versions:

1. ``POST /auth/token`` -> JWT.
2. ``POST /api/v2/dags/fraud__train/dagRuns`` with ``conf.data_uri`` (a copy of the fraud CSV).
3. ``GET .../dagRuns/~/hitlDetails?response_received=false`` until the ``approve`` task is pending;
   ``PATCH .../taskInstances/approve/-1/hitlDetails`` with ``{"chosen_options": ["Approve"]}``.
4. ``GET .../dagRuns/{run_id}`` until ``success``: v1 carries the overridden ``mlops.data_uri`` and the approver.
5. ``POST /api/v2/assets/events`` on ``mlops://fraud/data`` with ``extra.data_uri`` (another copy): an
   ``asset_triggered`` ``fraud__train`` run starts, fingerprints that file, is approved and registers v2 from it.

The requests are spelled out with ``httpx`` (not the harness's helpers) so the test is the documentation's twin.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from live_airflow import API_USER, LiveAirflow

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
MODEL = "fraud"
TRAIN = f"{MODEL}__train"
DATA_URI = f"mlops://{MODEL}/data"
SHIPPED_CSV = REPO / "dags" / "data" / "fraud" / "transactions_batch_001.csv"
RUN_TIMEOUT_S = 600.0
#: The models of the shared live Airflow: ``fraud`` for this module, ``fraud_ui`` for ``test_browser.py``.
UI_MODEL = "fraud_ui"
LIVE_MODELS = (MODEL, UI_MODEL)


def log(message: str) -> None:
    print(f"[rest {datetime.now(UTC).strftime('%H:%M:%S.%f')[:-3]}] {message}", flush=True)


def live_setup(
    tmp: Path, overrides: dict[str, Any] | None = None, models: tuple[str, ...] = (MODEL,)
) -> dict[str, Any]:
    """Config dir (approval required, no schedules), DAG folder, MLflow store and environment.

    Each of ``models`` is a copy of the fraud example under that name (``config`` is the first one's file,
    ``configs`` maps every model to its file). ``overrides`` are merged into each config at the top level.
    """
    from airflow_mlops.config.loader import load_config

    source = REPO / "dags" / "configs" / f"{MODEL}.yaml"
    configs: dict[str, Path] = {}
    for name in models:
        raw = yaml.safe_load(source.read_text())
        raw["name"] = name
        raw["gates"]["behaviour"]["cases"] = str((source.parent / raw["gates"]["behaviour"]["cases"]).resolve())
        raw["data"]["uri"] = str(SHIPPED_CSV)
        raw["schedule"] = None
        raw["approval"] = {"required": True}
        raw["monitoring"] = {**raw["monitoring"], "schedule": None}
        raw["serving"] = {"prediction_log": str(tmp / "prediction-log")}
        raw.update(overrides or {})
        config = tmp / "configs" / f"{name}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        load_config(config)  # a broken test config fails here, not as a __config_error DAG
        configs[name] = config
    dags = tmp / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "airflow_mlops_dags.py", dags / "airflow_mlops_dags.py")
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    artifacts = tmp / "artifacts"
    conn = {"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(artifacts)}}
    state_url = f"sqlite:///{tmp / 'state.db'}"
    env = {
        "AIRFLOW_MLOPS_CONFIG_DIR": str(config.parent),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(conn),
        "AIRFLOW_MLOPS_STATE_DB": state_url,
        # REST callers may point conf / Asset events at files under tmp/incoming (the test's landing zone)
        "AIRFLOW_MLOPS_DATA_ROOTS": str(tmp / "incoming"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "PYTHONWARNINGS": "ignore",
    }
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for model in models:
        for name in (f"airflow-mlops/{model}", f"airflow-mlops/{model}/monitoring"):
            client.create_experiment(name, artifact_location=str(artifacts / name.replace("/", "_")))
    return {
        "tmp": tmp,
        "dags": dags,
        "env": env,
        "config": configs[models[0]],
        "configs": configs,
        "tracking_uri": tracking_uri,
        "state_url": state_url,
        "client": client,
    }


@pytest.fixture
def rest_env(shared_live_airflow: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The shared live Airflow's setup (``live_setup`` with ``LIVE_MODELS``); this test uses only ``fraud``."""
    setup = shared_live_airflow.start()
    for key in ("AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_MLOPS_STATE_DB"):
        monkeypatch.setenv(key, setup["env"][key])
    yield {**setup, "live": shared_live_airflow}


def checked(response: httpx.Response, *expected: int) -> Any:
    assert response.status_code in expected, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json() if response.content else None


def wait_pending_approval(api: httpx.Client, airflow: LiveAirflow, run_id: str, dag_id: str = TRAIN) -> dict[str, Any]:
    """``GET /api/v2/dags/fraud__train/dagRuns/~/hitlDetails?response_received=false`` until ``run_id`` waits."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        pending = checked(
            api.get(f"/api/v2/dags/{dag_id}/dagRuns/~/hitlDetails", params={"response_received": "false"}), 200
        )
        for detail in pending["hitl_details"]:
            ti = detail["task_instance"]
            if ti["dag_run_id"] == run_id and ti["task_id"] == "approve" and ti["state"] == "awaiting_input":
                # Let the scheduler consume the executor's event for the parked task first: answering before
                # it can hit Airflow 3.3.2's stale-event race (apache/airflow#67287) and fail the task.
                airflow.wait_exit_event_consumed(dag_id, run_id, "approve")
                return dict(detail)
        run = checked(api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"), 200)
        assert run["state"] not in ("success", "failed"), airflow.describe_run(dag_id, run)
        time.sleep(2.0)
    raise TimeoutError(f"{run_id} never reached 'approve': {airflow.task_states(dag_id, run_id)}")


def approve(api: httpx.Client, run_id: str) -> dict[str, Any]:
    """``PATCH .../taskInstances/approve/-1/hitlDetails`` with the "Approve" option."""
    return dict(
        checked(
            api.patch(
                f"/api/v2/dags/{TRAIN}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
                json={"chosen_options": ["Approve"], "params_input": {}},
            ),
            200,
        )
    )


def wait_success(api: httpx.Client, airflow: LiveAirflow, run_id: str, dag_id: str = TRAIN) -> dict[str, Any]:
    """``GET /api/v2/dags/fraud__train/dagRuns/{run_id}`` until the run is finished; it must have succeeded."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = checked(api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"), 200)
        if run["state"] in ("success", "failed"):
            assert run["state"] == "success", airflow.describe_run(dag_id, run)
            return dict(run)
        time.sleep(2.0)
    raise TimeoutError(f"{run_id} not finished: {airflow.task_states(dag_id, run_id)}")


def test_rest_operations_from_the_docs(rest_env: dict[str, Any]) -> None:
    began = time.monotonic()
    data = rest_env["tmp"] / "incoming"
    data.mkdir(exist_ok=True)
    override = data / "fraud_override.csv"
    announced = data / "fraud_announced.csv"
    shutil.copy(SHIPPED_CSV, override)
    shutil.copy(SHIPPED_CSV, announced)
    client = rest_env["client"]

    airflow = rest_env["live"].ready()
    log(f"Airflow ready: {airflow.timings}")
    # 1. a token
    token = checked(
        httpx.post(f"{airflow.url}/auth/token", json={"username": API_USER, "password": airflow.password}, timeout=30),
        201,
    )["access_token"]
    assert token.count(".") == 2  # a JWT
    api = httpx.Client(base_url=airflow.url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
    try:
        airflow.wait_dag(TRAIN)
        # the candidate event would start a rollout with no gateway to roll out to: not under test here
        for dag_id in (f"{MODEL}__deploy", f"{MODEL}__monitor"):
            airflow.wait_dag(dag_id)
            checked(api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": True}), 200)

        # 2. trigger with conf
        run = checked(
            api.post(
                f"/api/v2/dags/{TRAIN}/dagRuns",
                json={"logical_date": None, "conf": {"data_uri": str(override)}},
            ),
            200,
            201,
        )
        run_id = run["dag_run_id"]
        assert run["conf"] == {"data_uri": str(override)}
        log(f"triggered {run_id}")

        # 3. the pending approval, answered
        pending = wait_pending_approval(api, airflow, run_id)
        assert pending["options"] == ["Approve", "Reject"], pending
        assert pending["task_instance"]["state"] == "awaiting_input", pending
        log(f"{run_id} awaits approval after {time.monotonic() - began:.1f} s: {pending['subject']}")
        answer = approve(api, run_id)
        assert answer["chosen_options"] == ["Approve"] and answer["responded_by"]["name"] == API_USER, answer

        # 4. the run's state
        done = wait_success(api, airflow, run_id)
        log(f"{run_id}: {done['state']} after {time.monotonic() - began:.1f} s")

        # 5. announce new data: an asset event on mlops://fraud/data
        assets = checked(api.get("/api/v2/assets", params={"uri_pattern": DATA_URI}), 200)["assets"]
        asset_id = next(a["id"] for a in assets if a["uri"] == DATA_URI)
        event = checked(
            api.post("/api/v2/assets/events", json={"asset_id": asset_id, "extra": {"data_uri": str(announced)}}),
            200,
            201,
        )
        assert event["extra"]["data_uri"] == str(announced), event
        deadline = time.monotonic() + 120
        runs: list[dict[str, Any]] = []
        while not (runs := [r for r in airflow.runs(TRAIN) if r["run_type"] == "asset_triggered"]):
            assert time.monotonic() < deadline, f"no asset-triggered run: {airflow.runs(TRAIN)}"
            time.sleep(1.0)
        asset_run_id = runs[0]["dag_run_id"]
        log(f"asset event {event['id']} started {asset_run_id}")
        wait_pending_approval(api, airflow, asset_run_id)
        fingerprint = checked(
            api.get(
                f"/api/v2/dags/{TRAIN}/dagRuns/{asset_run_id}/taskInstances/fingerprint_data/xcomEntries/return_value",
                params={"stringify": "false"},
            ),
            200,
        )["value"]
        approve(api, asset_run_id)
        wait_success(api, airflow, asset_run_id)
        upstream = airflow.upstream_asset_events(TRAIN, asset_run_id)
    finally:
        api.close()
    log(f"whole test: {time.monotonic() - began:.1f} s")

    v1 = client.get_model_version(MODEL, "1")
    assert v1.tags["mlops.data_uri"] == str(override), v1.tags
    assert v1.tags["mlops.approved_by"] == API_USER, v1.tags
    assert [e["id"] for e in upstream] == [event["id"]], upstream
    value = fingerprint if isinstance(fingerprint, dict) else json.loads(fingerprint)
    assert value["data_uri"] == str(announced), value
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags["mlops.data_uri"] == str(announced), v2.tags
    assert v2.tags["mlops.approved_by"] == API_USER, v2.tags
