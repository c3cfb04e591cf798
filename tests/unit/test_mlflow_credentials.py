"""A connection's MLflow credentials go only to its own server and never into ``os.environ``.

The servers here are small loopback HTTP servers that answer MLflow's ``experiments/search`` REST call
with an empty list and record the ``Authorization`` header of every request. A real ``mlflow server``
with basic auth would show the same, but cannot tell which credentials another server received; the
point under test is what our client sends where, so a recording server is the honest instrument.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_mlops.hooks import mlflow_auth
from airflow_mlops.hooks.mlflow import MlflowHook

CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


class Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.seen: list[str | None] = []

        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorder.seen.append(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = json.dumps({"experiments": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    pair = (Recorder(), Recorder())
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in pair]
    for thread in threads:
        thread.start()
    yield pair
    for server in pair:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in (*CREDENTIAL_ENV, "MLFLOW_TRACKING_AUTH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    saved = dict(mlflow_auth._headers)
    yield
    mlflow_auth._headers.clear()
    mlflow_auth._headers.update(saved)


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str, **fields: Any) -> MlflowHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mlflow", "host": host, **fields}))
    return MlflowHook(conn_id)


def _mlflow_variables(environ: Any) -> dict[str, str]:
    """What MLflow reads from an environment (the connection itself lives in ``AIRFLOW_CONN_*`` here)."""
    return {key: value for key, value in environ.items() if key.startswith("MLFLOW_")}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_reach_only_their_own_server_and_never_the_environment(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    secured, other = servers
    with_login = _connection(monkeypatch, "mlflow_secured", secured.url, login="alice", password="s3cret")
    without = _connection(monkeypatch, "mlflow_other", other.url)

    with_login.get_conn().search_experiments()
    without.get_conn().search_experiments()
    with_login.get_conn().search_experiments()

    assert secured.seen == [_basic("alice", "s3cret")] * 2
    assert other.seen == [None], "another connection's credentials were sent to a different server"
    assert not [key for key in CREDENTIAL_ENV if key in os.environ]
    assert "s3cret" not in json.dumps(_mlflow_variables(os.environ))


def test_a_subprocess_does_not_inherit_a_connections_secret(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    secured, _ = servers
    hook = _connection(monkeypatch, "mlflow_secured", secured.url, extra={"token": "t0ken-xyz"})
    hook.get_conn().search_experiments()
    assert secured.seen == ["Bearer t0ken-xyz"]

    child = subprocess.run(
        [sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    inherited = _mlflow_variables(json.loads(child.stdout))
    assert not set(CREDENTIAL_ENV) & set(inherited)
    assert "t0ken-xyz" not in json.dumps(inherited)
    assert inherited["MLFLOW_TRACKING_AUTH"] == "airflow-mlops"  # a name, not a secret


def test_the_fluent_api_inside_activate_sends_the_connections_credentials_and_hides_the_callers(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    secured, _ = servers
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone-else")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "their-password")
    hook = _connection(monkeypatch, "mlflow_secured", secured.url, login="alice", password="s3cret")
    with hook.activate():
        mlflow.search_experiments()
    assert secured.seen == [_basic("alice", "s3cret")]
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "someone-else"  # the caller's own setting, restored


def test_another_auth_provider_selected_by_the_user_is_not_silently_replaced(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    secured, _ = servers
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "kubernetes")
    hook = _connection(monkeypatch, "mlflow_secured", secured.url, login="alice", password="s3cret")
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_AUTH='kubernetes' selects another MLflow auth provider"):
        hook.get_conn()
    assert secured.seen == []


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://MLflow.Example:5000/api", "http://mlflow.example:5000"),
        ("https://mlflow.example", "https://mlflow.example:443"),
        ("http://mlflow.example", "http://mlflow.example:80"),
        ("http://user:pw@mlflow.example:8080/x", "http://mlflow.example:8080"),
        ("sqlite:////tmp/mlflow.db", None),
        ("databricks", None),
        ("http://host:notaport/", None),
    ],
)
def test_origins_compare_scheme_host_and_port(url: str, origin: str | None) -> None:
    assert mlflow_auth.origin_of(url) == origin


def test_a_similar_looking_host_does_not_get_the_credentials() -> None:
    mlflow_auth.register("http://mlflow.example:5000", username="alice", password="pw")
    assert mlflow_auth.authorization_for("http://mlflow.example:5000/api/2.0/x") == _basic("alice", "pw")
    for url in ("http://mlflow.example:5001/", "https://mlflow.example:5000/", "http://mlflow.example.evil:5000/"):
        assert mlflow_auth.authorization_for(url) is None, url


def test_mlflow_finds_the_provider_through_its_entry_point() -> None:
    from mlflow.tracking.request_auth.registry import fetch_auth

    assert fetch_auth(mlflow_auth.AUTH_NAME) is not None
