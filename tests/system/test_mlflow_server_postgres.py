"""``<model>__train`` against a real ``mlflow server`` backed by PostgreSQL, with served artifacts.

The DAG talks to MLflow only over HTTP (connection ``mlflow_default`` -> ``http://127.0.0.1:PORT``); the
server keeps runs, versions and tags in a fresh PostgreSQL database and artifacts on local disk behind
``mlflow-artifacts:/``. After the run the server is restarted on the same database, and the lineage is read
back both through MLflow and straight from PostgreSQL.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from mlflow_server import MlflowServer

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
LINEAGE = (
    "mlops.data_uri",
    "mlops.data_sha256",
    "mlops.config_sha256",
    "mlops.code_version",
    "mlops.seed",
    "mlops.dag_run_id",
)


def _skip_or_fail(reason: str) -> NoReturn:
    """Same rule as ``conftest.skip_or_fail`` (not imported: importing conftest as a module re-runs it)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _pg_connect(dbname: str) -> Any:
    import psycopg2

    return psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=5)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A new, empty database on the local PostgreSQL; dropped (with any leftover sessions) afterwards."""
    try:
        import psycopg2
    except ImportError:
        _skip_or_fail("psycopg2 not installed (part of the `test` extra)")
    try:
        admin = _pg_connect("postgres")
    except psycopg2.OperationalError:
        _skip_or_fail(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}")
    admin.autocommit = True
    name = f"mlflow_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def mlflow_server(pg_database: str, tmp_path: Path) -> Iterator[MlflowServer]:
    backend = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{pg_database}"
    server = MlflowServer(backend, tmp_path / "served-artifacts", tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_uris() -> Iterator[Callable[[str], None]]:
    """Point mlflow's global tracking/registry URI somewhere for the test; put the previous state back after.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` also export ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``
    for subprocesses, so those are restored exactly too (a leftover would point later tests at a dead server).
    """
    import mlflow

    env_keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {key: os.environ.get(key) for key in env_keys}
    saved = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())

    def point_at(uri: str) -> None:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)

    yield point_at
    mlflow.set_tracking_uri(saved[0])
    mlflow.set_registry_uri(saved[1])
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _uri_in_host(port: int) -> dict[str, Any]:
    return {"conn_type": "mlflow", "host": f"http://127.0.0.1:{port}"}


def _host_port_schema(port: int) -> dict[str, Any]:
    return {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "schema": "http"}


def _aliases(client: Any, model: str = "fraud") -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(model).aliases.items()}


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _version_tags_in_postgres(database: str, model: str, version: str) -> dict[str, str]:
    conn = _pg_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT key, value FROM model_version_tags WHERE name = %s AND version = %s", (model, int(version))
            )
            return dict(cur.fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("connection", [_uri_in_host, _host_port_schema], ids=["uri-in-host", "host-port-schema"])
def test_train_dag_on_mlflow_server_backed_by_postgres(
    connection: Callable[[int], dict[str, Any]],
    workspace: Any,
    airflow_db: Any,
    mlflow_server: MlflowServer,
    pg_database: str,
    mlflow_uris: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import mlflow
    import pandas as pd
    import yaml

    from airflow_mlops.hooks.mlflow import MlflowHook

    # After `workspace` (which wires a SQLite store): this connection wins.
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(connection(mlflow_server.port)))
    assert MlflowHook().tracking_uri == mlflow_server.url
    config_path = workspace.write_config("fraud")

    run = workspace.dag("fraud").test()

    assert run.state == "success", (_states(run), mlflow_server.log_tail())
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    assert [str(v.version) for v in client.search_model_versions("name = 'fraud'")] == ["1"]
    version = client.get_model_version("fraud", "1")
    assert _aliases(client) == {"challenger": "1"}
    assert version.tags["mlops.gate"] == "passed"
    mlflow_run = client.get_run(version.run_id)
    for key in LINEAGE:
        assert version.tags[key] == mlflow_run.data.tags[key], key
    assert version.tags["mlops.dag_run_id"] == run.run_id
    assert version.tags["mlops.seed"] == "42"
    lineage = {key: version.tags[key] for key in LINEAGE}

    # Artifacts are served by the tracking server, stored under --artifacts-destination.
    assert mlflow_run.info.artifact_uri.startswith("mlflow-artifacts:/"), mlflow_run.info.artifact_uri
    report_path = client.download_artifacts(mlflow_run.info.run_id, "gate/gate_report.json", str(tmp_path / "dl"))
    with open(report_path) as fh:
        assert json.load(fh)["result"] == "passed"
    assert list(mlflow_server.artifacts.rglob("gate_report.json")), "report not stored under --artifacts-destination"

    cfg = yaml.safe_load(config_path.read_text())
    features = [*cfg["features"]["numeric"], *cfg["features"]["categorical"]]
    rows = pd.read_csv(cfg["data"]["uri"]).head(5)[features]
    mlflow_uris(mlflow_server.url)
    model = mlflow.sklearn.load_model("models:/fraud/1")
    predictions = model.predict(rows)
    assert len(predictions) == 5
    assert set(predictions) <= {0, 1}

    # The registry lives in PostgreSQL: a restarted server (new process, same database) still has it all.
    mlflow_server.stop()
    mlflow_server.start()
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    after = client.get_model_version("fraud", "1")
    assert {key: after.tags[key] for key in LINEAGE} == lineage
    assert _aliases(client) == {"challenger": "1"}
    assert client.get_run(after.run_id).data.tags["mlops.data_sha256"] == lineage["mlops.data_sha256"]

    stored = _version_tags_in_postgres(pg_database, "fraud", "1")
    assert {key: stored[key] for key in LINEAGE} == lineage
    assert stored["mlops.gate"] == "passed"
