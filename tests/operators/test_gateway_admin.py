"""The gateway's admin listener: one real ``airflow-mlops serve --admin-port`` process for the module (API keys
on), over one fraud version trained, registered and gated by the real operators, checked from outside over
HTTP; the last of its tests stops it with SIGTERM. (Refused categories are tested in-process in
``test_gateway_app.py``.)
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import GatewayProcess, TrainedRegistry, free_port, trained_registry

pytestmark = pytest.mark.integration  # trains a version and starts a gateway process (~10 s)

MODEL = "fraud"
KEY = "admin-tests-key-0123456789abcdef"


def record(category: str = "grocery") -> dict[str, Any]:
    return {
        "amount": 120.5,
        "hour": 3,
        "distance_from_home_km": 42.0,
        "txn_count_24h": 7,
        "account_age_days": 30.0,
        "card_present": 0,
        "merchant_category": category,
    }


def metric(text: str, series: str) -> float | None:
    """The value of one exposition line (``name{labels}``), or None when the series does not exist."""
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(series + " ")]
    assert len(values) <= 1, values
    return float(values[0]) if values else None


# -- registry (module) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedRegistry]:
    with trained_registry(request.config, tmp_path_factory.mktemp("admin-registry"), [(None, "manual__admin")]) as reg:
        reg.target.promote(MODEL, reg.versions[0], actor="test", reason="first champion")
        yield reg


# -- admin listener: one gateway process for the module -------------------------------------------


@dataclass
class AdminGateway:
    process: GatewayProcess
    admin_url: str
    log_root: Path

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="module")
def admin_gateway(registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminGateway]:
    root = tmp_path_factory.mktemp("admin-gateway")
    keys = root / "keys"
    keys.write_text(f"{KEY}\n")
    admin_port = free_port()
    process = GatewayProcess(
        models=[MODEL],
        tracking_uri=registry.tracking_uri,
        log_root=root / "plog",
        # a long flush interval: what the log holds after SIGTERM was written by the shutdown
        extra=["--admin-port", str(admin_port), "--api-keys-file", str(keys), "--flush-interval", "600"],
    )
    gateway = AdminGateway(process, f"http://127.0.0.1:{admin_port}", root / "plog")
    try:
        _wait_ready(gateway)
        yield gateway
    finally:
        process.kill()


def _wait_ready(gateway: AdminGateway, timeout: float = 90.0) -> None:
    """``GatewayProcess.wait_ready`` asks the public port, where ``/ready`` is not served: ask the admin one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.proc.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{gateway.process.log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{gateway.admin_url}/ready", timeout=2.0).json().get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"gateway not ready:\n{gateway.process.log_path.read_text()[-3000:]}")


def _predict(url: str, category: str = "grocery", request_id: str | None = None, key: str | None = KEY) -> Any:
    headers = {"x-api-key": key} if key else {}
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(f"{url}/v1/models/{MODEL}/predict", json={"records": record(category)}, headers=headers)


def test_ready_and_metrics_are_served_on_the_admin_port_only(admin_gateway: AdminGateway) -> None:
    for path in ("/metrics", "/ready"):
        assert httpx.get(f"{admin_gateway.url}{path}").status_code == 404, path
    assert _predict(admin_gateway.url, request_id="admin-counted").status_code == 200

    metrics = httpx.get(f"{admin_gateway.admin_url}/metrics")  # no API key: admin routes are not behind it
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    served = 'mlops_gateway_requests_total{model="fraud",role="champion",version="1"}'
    assert (metric(metrics.text, served) or 0) >= 1  # one gateway state behind both listeners
    ready = httpx.get(f"{admin_gateway.admin_url}/ready")
    assert ready.status_code == 200 and ready.json()["models"][MODEL]["champion"] == "1"
    for url in (admin_gateway.url, admin_gateway.admin_url):  # liveness stays on the public port too
        health = httpx.get(f"{url}/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})


def test_predict_and_feedback_are_served_on_the_public_port_only(admin_gateway: AdminGateway) -> None:
    answered = _predict(admin_gateway.url, request_id="public-1")
    assert answered.status_code == 200, answered.text
    assert _predict(admin_gateway.admin_url).status_code == 404
    label = {"request_id": "public-1", "label": 1}
    feedback = f"/v1/models/{MODEL}/feedback"
    assert httpx.post(f"{admin_gateway.admin_url}{feedback}", json=label, headers={"x-api-key": KEY}).status_code == 404
    assert httpx.post(f"{admin_gateway.url}{feedback}", json=label, headers={"x-api-key": KEY}).status_code == 200


def test_the_api_keys_still_guard_predict_and_feedback(admin_gateway: AdminGateway) -> None:
    refused = _predict(admin_gateway.url, key=None)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    feedback = httpx.post(f"{admin_gateway.url}/v1/models/{MODEL}/feedback", json={"request_id": "x", "label": 1})
    assert feedback.status_code == 401


def test_the_same_port_for_both_listeners_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_mlops.cli import main

    with pytest.raises(SystemExit) as exited:
        main(
            [
                "serve",
                "--model",
                MODEL,
                "--tracking-uri",
                "sqlite:///unused.db",
                "--port",
                "8123",
                "--admin-port",
                "8123",
            ]
        )
    assert exited.value.code == 2
    assert "--admin-port 8123 is --port too" in capsys.readouterr().err


def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_sigterm_stops_both_listeners_and_the_gateway_cleanly(admin_gateway: AdminGateway) -> None:
    """Last of the process tests: it stops the module's gateway."""
    from airflow_mlops.prediction_log import LocalStorage, read_predictions

    assert _predict(admin_gateway.url, request_id="before-sigterm").status_code == 200
    admin_port = int(admin_gateway.admin_url.rsplit(":", 1)[1])

    admin_gateway.process.kill(signal.SIGTERM)

    assert admin_gateway.process.proc.returncode in (0, -signal.SIGTERM), admin_gateway.process.log_path.read_text()
    assert _refuses_connections(admin_gateway.process.port) and _refuses_connections(admin_port)
    output = admin_gateway.process.log_path.read_text()
    assert "Traceback" not in output, output
    logged = read_predictions(LocalStorage(admin_gateway.log_root), MODEL)
    assert "before-sigterm" in set(logged["request_id"])  # flushed by the gateway's stop, after both listeners
