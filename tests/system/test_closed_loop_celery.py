"""The closed loop on Celery workers, the production topology without Docker (``docker-compose.yaml``'s shape).

Airflow runs with CeleryExecutor on the machine's Redis and a PostgreSQL metadata database, with three
workers: ``w1`` and ``w2`` on the ``default`` queue, and ``gpu`` listening only on ``training``, the queue
``resources.queue`` names for this model. MLflow is a real ``mlflow server`` on PostgreSQL (artifacts served
by it), the state database (locks, pending operations, audit trail) is PostgreSQL, which Airflow's components
reach through an Airflow connection (``[mlops] state_db_conn_id``), and two gateway replicas
serve the same registry and write to one prediction-log root, with a client sending round-robin to both.

The loop is the one of ``test_closed_loop.py`` (same rollout windows, same drifted batch; see
``drift_to_new_champion``), and on top of it this test checks what only a distributed executor can get wrong:

* the monitor counts both replicas' logged answers (its plan's row count is exactly what the two answered,
  plus the hour of clean traffic already logged before the test's traffic began);
* the monitor's mapped hour partitions ran on the default-queue workers, and both default workers ran tasks
  of the loop (which worker takes which partition is Celery's choice: on a loaded machine one idle worker
  took both, so that is not asserted);
* ``train_model`` ran on the ``gpu`` worker and nothing else did, and no other worker ran ``train_model``;
* the new champion was promoted once, whichever worker ran the rollout's tasks (the audit trail in PostgreSQL).

As in ``test_closed_loop.py``, the prediction log already holds an hour of clean traffic
(``log_clean_hour``), so the window holds two hour partitions and the summarize task is mapped twice. The
seconds from t0 to each step go to ``test-artifacts/closed-loop/CeleryExecutor.json`` for
``benchmarks/closed_loop.py``.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_closed_loop import (
    MODEL,
    REPO,
    Traffic,
    assert_chain,
    drift_to_new_champion,
    log,
    log_clean_hour,
    record_figures,
    write_configs,
)

from live_airflow import LiveAirflow, create_database, drop_database, postgres_url, require_redis
from mlflow_server import MlflowServer
from support import GatewayProcess, train_version

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TRAINING_QUEUE = "training"
WORKERS = {"w1": "default", "w2": "default", "gpu": TRAINING_QUEUE}


def celery_configs(tmp: Path, log_root: Path, latest: Path) -> tuple[Path, Path]:
    """``test_closed_loop``'s configs, with training on the ``training`` queue."""
    live, first = write_configs(tmp, log_root, latest)
    for path in (live, first):
        raw = yaml.safe_load(path.read_text())
        raw["resources"] = {"queue": TRAINING_QUEUE}
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return live, first


@pytest.fixture
def celery_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """PostgreSQL databases for MLflow and the state DB, the configs, the DAG folder and the environment."""
    from airflow_mlops.config.loader import load_config

    require_redis()  # before minutes of setup
    suffix = uuid.uuid4().hex[:10]
    databases = [create_database(f"mlflow_{suffix}")]
    try:
        databases.append(create_database(f"mlops_{suffix}"))
        log_root = tmp_path / "prediction-log"
        latest = tmp_path / "data" / "fraud_latest.csv"
        latest.parent.mkdir(parents=True)
        live_config, v1_config = celery_configs(tmp_path, log_root, latest)
        assert load_config(live_config).config.resources.queue == TRAINING_QUEUE
        dags = tmp_path / "dags"
        dags.mkdir()
        shutil.copy(REPO / "dags" / "airflow_mlops_dags.py", dags / "airflow_mlops_dags.py")
        mlflow_server = MlflowServer(
            postgres_url(databases[0]), tmp_path / "served-artifacts", tmp_path, start_timeout=240.0
        )
        state_url = postgres_url(databases[1])  # the same database as the components' mlops_state connection
        yield {
            "tmp": tmp_path,
            "dags": dags,
            "log_root": log_root,
            "latest": latest,
            "v1_config": v1_config,
            "config_dir": str(live_config.parent),
            "state_url": state_url,
            "state_db": databases[1],
            "mlflow_server": mlflow_server,
            "monkeypatch": monkeypatch,
        }
    finally:
        for name in databases:
            drop_database(name)


def test_the_loop_on_celery_workers_with_two_gateway_replicas(celery_env: dict[str, Any]) -> None:
    import mlflow

    from airflow_mlops.deploy.targets import LocalGatewayTarget

    began = time.monotonic()
    server: MlflowServer = celery_env["mlflow_server"]
    state_db = celery_env["state_db"]
    gateways: list[GatewayProcess] = []
    traffic: Traffic | None = None
    airflow: LiveAirflow | None = None
    try:
        server.start()  # before Airflow's components: its first start migrates its PostgreSQL schema
        connection = json.dumps({"conn_type": "mlflow", "host": server.url})
        env = {
            "AIRFLOW_MLOPS_CONFIG_DIR": celery_env["config_dir"],
            "AIRFLOW_CONN_MLFLOW_DEFAULT": connection,
            # Airflow's components reach the state DB through an Airflow connection, this process by its URL
            "AIRFLOW_MLOPS_STATE_DB": "",  # empty is unset: not the test session's SQLite file
            "AIRFLOW__MLOPS__STATE_DB_CONN_ID": "mlops_state",
            "AIRFLOW_CONN_MLOPS_STATE": json.dumps(
                {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": state_db}
            ),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GX_ANALYTICS_ENABLED": "False",
            "DO_NOT_TRACK": "1",
            "PYTHONWARNINGS": "ignore",
        }
        celery_env["monkeypatch"].setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection)
        celery_env["monkeypatch"].setenv("AIRFLOW_MLOPS_STATE_DB", celery_env["state_url"])
        airflow = LiveAirflow(celery_env["tmp"] / "airflow", celery_env["dags"], env, celery_workers=WORKERS)
        airflow.start()  # the metadata database migrates while v1 trains
        log(f"mlflow server on PostgreSQL up after {time.monotonic() - began:.1f} s")

        client = mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        v1 = train_version(celery_env["v1_config"], "manual__v1")
        target = LocalGatewayTarget.from_options(client=client, state_url=celery_env["state_url"])
        target.promote(MODEL, v1, actor="test", reason="first champion")
        clean_hour = log_clean_hour(celery_env["log_root"], client, v1)
        for _ in range(2):
            gateways.append(
                GatewayProcess(
                    models=[MODEL],
                    tracking_uri=server.url,
                    log_root=celery_env["log_root"],
                    extra=["--poll-interval", "0.5", "--flush-interval", "0.5"],
                )
            )
        for gateway in gateways:
            gateway.wait_ready(timeout=120)
        traffic = Traffic(*(gateway.url for gateway in gateways)).__enter__()
        traffic.set("clean", 10.0)  # this hour's partition exists before the triggerer's new-hour watcher starts
        time.sleep(1.0)
        traffic.set("clean", 0.0)
        log(f"v1 champion, clean hour and two gateways ready after {time.monotonic() - began:.1f} s")

        airflow.wait_ready()
        for dag_id in (f"{MODEL}__monitor", f"{MODEL}__train", f"{MODEL}__deploy"):
            assert not airflow.wait_dag(dag_id, timeout=180)["is_paused"]
        log(f"Airflow on Celery ready ({airflow.timings}) after {time.monotonic() - began:.1f} s")

        outcome = drift_to_new_champion(
            airflow,
            traffic,
            gateways,
            celery_env["latest"],
            v1,
            log_root=celery_env["log_root"],
            logged_before=clean_hour,
        )
        taken = {name: airflow.worker_tasks(name) for name in WORKERS}
        page = airflow.client().get("/mlops/api/models/fraud")  # the api-server reads the state DB's connection too
        assert page.status_code == 200, page.text
        models_page = page.json()["model"]
        traffic.__exit__()
        # checked while the MLflow server is up: the registry is read through it
        log(f"whole test: {time.monotonic() - began:.1f} s; answers by replica {traffic.ok_by_url}")
        for name, tasks in taken.items():
            log(f"worker {name}: {[(t['dag_id'], t['task_id'], t['map_index']) for t in tasks]}")
        record_figures("CeleryExecutor", outcome)
        assert_chain(outcome, v1, target, {"client": client, "latest": celery_env["latest"]}, traffic)

        # both replicas answered (assert_chain: the monitor counted every answer they logged, and the clean hour)
        assert len(outcome.answered_before_monitor) == 2, outcome.answered_before_monitor

        # the monitor's hour partitions ran on the default-queue workers (which one takes which is Celery's
        # choice: on a loaded machine one idle worker can take both), and both default workers took part in the loop
        summarized = {
            name: sorted(
                t["map_index"]
                for t in tasks
                if t["task_id"] == "summarize_partition" and t["run_id"] == outcome.drift_run
            )
            for name, tasks in taken.items()
        }
        mapped = sorted(summarized["w1"] + summarized["w2"])  # the clean hour and this one (a third near :00)
        assert len(mapped) >= 2 and mapped == list(range(len(mapped))) and not summarized["gpu"], summarized
        assert taken["w1"] and taken["w2"], f"a default worker ran nothing: {taken}"

        # training went to the training queue's worker, and that worker took nothing else
        assert [(t["task_id"], t["queue"]) for t in taken["gpu"]] == [("train_model", TRAINING_QUEUE)], taken["gpu"]
        assert not [t for name in ("w1", "w2") for t in taken[name] if t["task_id"] == "train_model"]
        assert all(t["queue"] == "default" for name in ("w1", "w2") for t in taken[name])

        # one promotion of the new champion, recorded once in the shared audit trail
        champion_moves = [(e.from_version, e.to_version) for e in target.audit.history(MODEL) if e.alias == "champion"]
        assert champion_moves == [(None, v1), (v1, outcome.v2)], champion_moves
        shown = [(e["from_version"], e["to_version"]) for e in models_page["audit"] if e["alias"] == "champion"]
        assert (v1, outcome.v2) in shown and models_page["errors"] == [], models_page["errors"]
    finally:
        if traffic is not None:
            traffic.__exit__()  # idempotent
        for gateway in gateways:
            gateway.kill()
        if airflow is not None:
            airflow.stop()
        server.stop()
