"""The gateway's admin listener, and crafted categories that must not roll a canary back, against a real registry.

One registry for the module (SQLite + local artifacts) holds two fraud versions trained, registered and gated by
the real operators: v1 (unseen categories encoded as zeros) is the champion; v2 was trained with
``unknown_categories: error`` and refuses a merchant category it never saw ("crypto").

- Admin port: one real ``airflow-mlops serve --admin-port`` process for the module (with API keys on), checked
  from outside over HTTP; the last of its tests stops it with SIGTERM.
- Crafted categories: the gateway's app in-process (Starlette ``TestClient``), one per test, so metrics and
  prediction logs are the test's own; the routing a test needs is set through ``LocalGatewayTarget``, as the
  deploy DAG does, and reset afterwards.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from airflow_mlops.vocabulary import Tag
from support import GatewayProcess, free_port, trained_registry

pytestmark = pytest.mark.integration  # trains two versions and starts a gateway process (~15 s)

MODEL = "fraud"
UNSEEN = "crypto"
KNOWN = "['electronics', 'fuel', 'grocery', 'online', 'restaurant', 'travel']"
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


@dataclass
class Registry:
    tracking_uri: str
    client: Any
    target: Any
    v1: str
    v2: str

    def reset(self) -> None:
        """v1 champion, nothing else; v2 not rejected (a rollback rejects what was in flight)."""
        self.target.rollback(MODEL, to_version=self.v1, actor="test", reason="reset")
        tags = self.client.get_model_version(MODEL, self.v2).tags
        for key in (Tag.REJECTED_REASON, Tag.REJECTED_BY):
            if key in tags:
                self.client.delete_model_version_tag(MODEL, self.v2, key)


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    trainings = [(None, "manual__admin_v1"), ({"features": {"unknown_categories": "error"}}, "manual__strict_v2")]
    with trained_registry(request.config, tmp_path_factory.mktemp("admin-registry"), trainings) as trained:
        v1, v2 = trained.versions
        trained.target.promote(MODEL, v1, actor="test", reason="first champion")
        yield Registry(trained.tracking_uri, trained.client, trained.target, v1, v2)


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
def admin_gateway(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminGateway]:
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


# -- crafted categories: in-process gateways over the same registry -------------------------------


@dataclass
class Served:
    gateway: Any
    http: TestClient
    log_root: Path

    def predict(self, category: str, request_id: str) -> Any:
        return self.http.post(
            f"/v1/models/{MODEL}/predict", json={"records": record(category)}, headers={"x-request-id": request_id}
        )

    def metrics(self) -> str:
        return str(self.http.get("/metrics").text)

    def logged(self) -> Any:
        from airflow_mlops.prediction_log import LocalStorage, read_predictions

        self.gateway.plog.flush()
        return read_predictions(LocalStorage(self.log_root), MODEL)


@pytest.fixture
def serve(registry: Registry, tmp_path: Path) -> Iterator[Callable[[], Served]]:
    from airflow_mlops.serving.app import create_app
    from airflow_mlops.serving.server import ServeOptions, build_gateway

    registry.reset()
    with ExitStack() as stack:
        stack.callback(registry.reset)

        def start() -> Served:
            options = ServeOptions(
                models=[MODEL], tracking_uri=registry.tracking_uri, log_root=str(tmp_path / "plog"), poll_interval=0.2
            )
            gateway = build_gateway(options)
            gateway.start()
            stack.callback(gateway.stop)
            return Served(gateway, stack.enter_context(TestClient(create_app(gateway))), tmp_path / "plog")

        yield start


def test_a_crafted_category_for_a_strict_champion_is_a_422_naming_the_field(
    serve: Callable[[], Served], registry: Registry
) -> None:
    registry.target.promote(MODEL, registry.v2, actor="test", reason="strict champion")
    served = serve()

    response = served.predict(UNSEEN, "crafted-champion")

    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": [
            {
                "loc": ["records", "merchant_category"],
                "msg": f"unknown category 'crypto': this model refuses categories it did not see in training; "
                f"expected one of {KNOWN}",
            }
        ],
        "request_id": "crafted-champion",
    }
    text = served.metrics()
    assert metric(text, 'mlops_gateway_rejected_total{model="fraud",reason="unknown_category"}') == 1
    assert metric(text, f'mlops_gateway_errors_total{{model="fraud",role="champion",version="{registry.v2}"}}') is None
    assert served.logged().empty
    assert served.predict("travel", "known-category").status_code == 200


def test_a_canary_that_raises_on_valid_input_still_counts_an_error(
    serve: Callable[[], Served], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops.deploy.health import canary_stats
    from airflow_mlops.serving.models import LoadedModel

    original = LoadedModel.predict

    def broken_v2(self: Any, frame: Any) -> Any:
        if self.version == registry.v2:
            raise RuntimeError("model bug")
        return original(self, frame)

    monkeypatch.setattr(LoadedModel, "predict", broken_v2)
    registry.target.set_traffic(MODEL, registry.v2, 100, actor="test", reason="broken canary at 100 %")
    served = serve()

    response = served.predict("travel", "genuine-failure")

    assert response.status_code == 200 and response.json()["role"] == "champion"
    canary = f'model="fraud",role="canary",version="{registry.v2}"'
    assert metric(served.metrics(), f"mlops_gateway_errors_total{{{canary}}}") == 1
    stats = canary_stats(served.logged(), None, canary=registry.v2, champion=registry.v1, metric=None)
    assert (stats.requests, stats.errors) == (1, 1)
