"""The Models page answers within ``[mlops] ui_mlflow_deadline`` even when an MLflow server never answers.

The unanswering server is real: a loopback TCP socket that accepts connections and never sends a byte, as the
tracking URI of one model's connection; the other model reads a healthy (SQLite) MLflow. The page runs
in-process (``TestClient``, Airflow's own tokens) as in ``test_ui_plugin.py``. ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
is 0 only so that the abandoned read ends as soon as the server closes at teardown (with mlflow's default
retries it would sleep through minutes of backoff on its worker); the read still hangs until then.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_mlops import settings

DEADLINE_ENV = settings.OPTIONS["ui_mlflow_deadline"].env
HANG_GUARD = 10.0  # seconds; the page must answer long before: a hang guard, not a timing assertion


class SilentServer:
    """Accepts TCP connections on loopback and never answers; closes them all on :meth:`close`."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.settimeout(0.1)  # accept() wakes up to see close(); closing alone does not wake it
        self.accepted: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def ui(airflow_api: Any) -> Any:
    from fastapi.testclient import TestClient

    from airflow_mlops.ui.app import create_app

    return TestClient(create_app())


@pytest.fixture
def token(airflow_api: Any) -> str:
    return str(airflow_api.headers["Authorization"].split(" ", 1)[1])


@pytest.fixture
def two_models(workspace: Any, silent_server: SilentServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``fraud`` on the healthy MLflow, ``diabetes`` on the silent one (connection ``mlflow_silent``)."""
    conn = {"conn_type": "mlflow", "host": f"http://127.0.0.1:{silent_server.port}"}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SILENT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{workspace.root / 'state.db'}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv(DEADLINE_ENV, "1")
    workspace.write_config("fraud")
    workspace.write_config("diabetes", replace={"mlflow_conn_id": "mlflow_silent"})
    workspace.client().create_registered_model("fraud")
    return workspace


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_the_list_shows_a_silent_mlflow_as_unavailable_and_the_healthy_model_as_read(
    two_models: Any, ui: Any, token: str, silent_server: SilentServer
) -> None:
    headers = {"Authorization": f"Bearer {token}"}

    answer, took = timed(lambda: ui.get("/api/models", headers=headers))

    assert took < HANG_GUARD
    assert answer.status_code == 200
    models = {m["name"]: m for m in answer.json()["models"]}
    assert models["diabetes"]["errors"] == ["MLflow did not answer within 1 s"]
    assert models["fraud"]["errors"] == [] and models["fraud"]["registered"] is True
    assert silent_server.accepted, "the silent server was really asked"

    html, took = timed(lambda: ui.get("/", headers=headers))
    assert took < HANG_GUARD
    assert "MLflow did not answer within 1 s" in html.text


def test_the_model_page_shows_a_silent_mlflow_as_unavailable(two_models: Any, ui: Any, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}

    answer, took = timed(lambda: ui.get("/api/models/diabetes", headers=headers))

    assert took < HANG_GUARD
    assert answer.status_code == 200
    payload = answer.json()
    assert payload["model"]["errors"][0] == "MLflow did not answer within 1 s"
    assert payload["versions"] == []
    healthy = ui.get("/api/models/fraud", headers=headers).json()
    assert healthy["model"]["errors"] == [] and healthy["model"]["name"] == "fraud"


# -- the readers ------------------------------------------------------------------------------------------


def test_readers_cancel_queued_reads_and_refuse_while_every_worker_waits_on_an_abandoned_one() -> None:
    """Also: an abandoned read stops at its next MLflow call (``check_wanted``) once the one it waited on returns."""
    from airflow_mlops.ui.sources import MlflowReaders

    readers = MlflowReaders(workers=1)
    release = threading.Event()
    calls: list[str] = []

    def stuck() -> str:
        release.wait(30)  # the first MLflow call, on a server that does not answer
        calls.append("first")
        readers.check_wanted()
        calls.append("second")  # the next call: never made once the page gave up
        return "late"

    def never() -> str:
        calls.append("queued")
        return "never"

    first = readers.submit(stuck)
    queued = readers.submit(never)
    assert first is not None and queued is not None
    readers.wait([first, queued], time.monotonic() + 0.2)

    assert queued.cancelled(), "a read that had not started is cancelled, not left in the queue"
    assert not first.done() and readers.abandoned == 1
    assert readers.submit(lambda: "refused") is None, "no worker is free: refused at once, not queued"

    release.set()
    assert first.exception(timeout=5) is not None
    assert calls == ["first"]
    deadline = time.monotonic() + 5
    while readers.abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    again = readers.submit(lambda: "fresh")
    assert again is not None and again.result(timeout=5) == "fresh"
    readers.check_wanted()  # outside a read: nothing to stop


def test_a_read_that_raises_is_shown_as_an_error_on_its_model() -> None:
    from airflow_mlops.ui.sources import MlflowReaders, _settled

    readers = MlflowReaders(workers=2)

    def boom() -> str:
        raise RuntimeError("exploded http://u:pw@mlflow:5000/x")

    read = readers.submit(boom)
    readers.wait([read], time.monotonic() + 5)

    assert _settled(read, 1.0) == "MLflow: RuntimeError: exploded http://***@mlflow:5000/x"


# -- the setting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 10.0), ("2.5", 2.5), (" 1 ", 1.0)], ids=["default", "fraction", "spaces"]
)
def test_ui_mlflow_deadline_reads_seconds(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: float) -> None:
    monkeypatch.delenv(settings.OPTIONS["ui_mlflow_deadline"].airflow_env, raising=False)
    if raw is None:
        monkeypatch.delenv(DEADLINE_ENV, raising=False)
    else:
        monkeypatch.setenv(DEADLINE_ENV, raw)
    assert settings.ui_mlflow_deadline() == expected


@pytest.mark.parametrize("raw", ["ten", "0", "-1", "nan", "inf", "3600"])
def test_a_bad_ui_mlflow_deadline_names_the_option(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(DEADLINE_ENV, raw)
    with pytest.raises(ValueError) as raised:
        settings.ui_mlflow_deadline()
    assert str(raised.value) == (
        f"{DEADLINE_ENV} / [mlops] ui_mlflow_deadline: got {raw!r}; expected seconds in (0, 3600)"
    )
