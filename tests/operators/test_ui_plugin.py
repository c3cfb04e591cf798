"""The Models UI plugin: authentication, the list/model pages and JSON, the plugin itself, extra links.

The FastAPI app runs in-process with ``TestClient`` against the test session's real Airflow config
(simple auth manager, user ``ci``, JWT secret) and metadata DB; tokens come from Airflow's own
``POST /auth/token``. Deployment state is set up with the real registry operations
(``LocalGatewayTarget``), monitoring runs are logged with mlflow directly and traffic is written with
the gateway's ``PredictionLog``. The MLflow connection carries a password, a token and a UI URL
with credentials: none of them may ever appear in a response.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from support import train_version

REPO = Path(__file__).resolve().parents[2]
SECRETS = ("pw-S3CRET-4711", "tok-S3CRET-0815", "uipass-S3CRET-99")
UI_URL = f"http://viewer:{SECRETS[2]}@mlflow.example.test:5000/"
UI_BASE = "http://mlflow.example.test:5000"
ROUTES = ("/", "/models/fraud", "/api/models", "/api/models/fraud")
NOT_AUTHENTICATED = "Not authenticated: send 'Authorization: Bearer <token>' or log in to Airflow"


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
        assert "sqlite:///" not in text, "tracking URIs that are not http(s) are never shown"


@pytest.fixture
def mlflow_conn(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``mlflow_default`` with secrets in password and extras, and a UI URL holding credentials."""
    conn = {
        "conn_type": "mlflow",
        "host": workspace.tracking_uri,
        "login": "svc-mlflow",
        "password": SECRETS[0],
        "extra": {"artifact_root": str(workspace.root / "artifacts"), "token": SECRETS[1], "ui_url": UI_URL},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{workspace.root / 'state.db'}")
    return workspace


@pytest.fixture(scope="module")
def token(airflow_api: Any) -> str:
    return str(airflow_api.headers["Authorization"].split(" ", 1)[1])


@pytest.fixture
def ui(airflow_api: Any) -> Any:
    """The plugin's app, unauthenticated (``airflow_api`` initialized the auth manager and the DB)."""
    from fastapi.testclient import TestClient

    from airflow_mlops.ui.app import create_app

    return TestClient(create_app())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- pure functions ---------------------------------------------------------------------------------


def test_mlflow_links_never_carry_credentials_or_non_http_uris() -> None:
    from airflow_mlops.ui.data import mlflow_model_version_url, mlflow_run_url, mlflow_ui_base, redact

    assert mlflow_ui_base("sqlite:////tmp/mlflow.db") is None
    assert mlflow_ui_base("postgresql+psycopg2://u:pw@db/mlflow") is None
    assert mlflow_ui_base("http://u:pw@mlflow:5000/?x=1#y") == "http://mlflow:5000"
    assert mlflow_ui_base("sqlite:///x.db", "https://ui.example/mlflow/") == "https://ui.example/mlflow"
    base = mlflow_ui_base("https://mlflow.example")
    assert mlflow_run_url(base, "abc", "3") == "https://mlflow.example/#/experiments/3/runs/abc"
    assert mlflow_run_url(base, "abc") == "https://mlflow.example/#/runs/abc"
    assert mlflow_model_version_url(base, "fraud", "4") == "https://mlflow.example/#/models/fraud/versions/4"
    assert mlflow_run_url(None, "abc") is None
    assert (
        redact("GET https://bob:hunter2@h/x failed: token tok-1", ["tok-1"]) == "GET https://***@h/x failed: token ***"
    )


def test_traffic_charts_bucket_error_rate_and_p95_per_version_and_role() -> None:
    import pandas as pd

    from airflow_mlops.ui.data import traffic_charts

    t0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
    rows = []
    for i in range(100):
        rows.append(
            {"ts": t0 + timedelta(seconds=i), "version": "1", "role": "champion", "latency_ms": float(i), "error": None}
        )
    for i in range(10):
        rows.append(
            {
                "ts": t0 + timedelta(seconds=i),
                "version": "2",
                "role": "canary",
                "latency_ms": 5.0,
                "error": "boom" if i < 3 else None,
            }
        )
    rows.append({"ts": t0 + timedelta(hours=1), "version": "1", "role": "champion", "latency_ms": 1.0, "error": None})
    charts = {c.id: c for c in traffic_charts(pd.DataFrame(rows), "hour", max_error_rate=0.05)}

    errors = {s.name: s.points for s in charts["error_rate"].series}
    assert list(errors) == ["v1 champion", "v2 canary"]
    assert errors["v1 champion"] == [("2026-01-01T10:00:00Z", 0.0), ("2026-01-01T11:00:00Z", 0.0)]
    assert errors["v2 canary"] == [("2026-01-01T10:00:00Z", 0.3), ("2026-01-01T11:00:00Z", None)]
    p95 = dict(charts["latency_p95"].series[0].points)
    assert p95["2026-01-01T10:00:00Z"] == pytest.approx(94.05)
    assert charts["error_rate"].thresholds == [("canary max", 0.05)]
    assert dict(charts["requests"].series[1].points)["2026-01-01T10:00:00Z"] == 10


def test_drift_chart_and_last_drift_follow_window_end() -> None:
    from airflow_mlops.ui.data import MonitoringRecord, drift_chart, last_drift

    runs = [
        MonitoringRecord(
            "r2",
            "9",
            2,
            {
                "mlops.window_end": "2026-01-02T00:00:00+00:00",
                "mlops.drift.act": "true",
                "mlops.drift.disagreement": "drifted only in ours: amount",
                "mlops.feedback.warning": "labels arrive for 0.0% of 90 answers with class '0' but ...",
            },
            {"psi.amount": 0.4, "psi.prediction": 0.1, "rows": 10, "label_coverage": 0.1},
        ),
        MonitoringRecord(
            "r1",
            "9",
            1,
            {"mlops.window_end": "2026-01-01T00:00:00+00:00", "mlops.drift.act": "false"},
            {"psi.amount": 0.05},
        ),
    ]
    chart = drift_chart(runs, 0.1, 0.25)
    assert {s.name: [v for _, v in s.points] for s in chart.series} == {
        "amount": [0.05, 0.4],
        "prediction": [None, 0.1],
    }
    drift = last_drift(runs, "http://m")
    assert drift is not None and (drift.run_id, drift.act, drift.max_feature) == ("r2", True, "amount")
    assert drift.run_url == "http://m/#/experiments/9/runs/r2"
    assert drift.disagreement == "drifted only in ours: amount"
    assert drift.label_coverage == 0.1 and drift.feedback_warning.startswith("labels arrive for 0.0%")  # type: ignore[union-attr]
    older = last_drift(runs[1:], None)
    assert older is not None and older.disagreement is None and older.label_coverage is None
    assert older.feedback_warning is None


# -- authentication ---------------------------------------------------------------------------------


def test_models_on_mlflow_are_read_in_parallel_without_touching_mlflows_globals(tmp_path: Path) -> None:
    """Two page requests read MLflow at once (no process-wide lock, no global tracking URI swapped).

    Each request's client waits at a barrier the other must reach: a lock around MLflow reads (or any
    serialisation) breaks the barrier after its timeout and the read reports an error.
    """
    from mlflow import MlflowClient
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.ui.sources import read_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).create_registered_model("fraud")
    barrier = threading.Barrier(2, timeout=10)
    seen_globals: list[Any] = []

    class WaitingClient:
        def __init__(self) -> None:
            self.real = MlflowClient(tracking_uri=uri, registry_uri=uri)
            self.waited = False

        def __getattr__(self, name: str) -> Any:
            if not self.waited:
                self.waited = True
                seen_globals.append(tracking_utils._tracking_uri)
                barrier.wait()
            return getattr(self.real, name)

    class Hook(MlflowHook):
        def get_conn(self) -> Any:
            return WaitingClient()

    before = tracking_utils._tracking_uri
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(read_mlflow(Hook(), "fraud", detail=False, secrets=[])))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [snap.errors for snap in results] == [[], []]
    assert [snap.registered for snap in results] == [True, True]
    assert seen_globals == [before, before] and tracking_utils._tracking_uri == before


SAGEMAKER_OPTIONS = {
    "endpoint_name": "fraud-prod",
    "execution_role_arn": "arn:aws:iam::123456789012:role/sagemaker-serve",
    "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-serve:1",
    "model_data_s3_uri": "s3://models-bucket/fraud",
    "data_capture_s3_uri": "s3://models-bucket/capture",
}
APPLIED = '{"shadow": null, "weights": {"1": 95.0, "2": 5.0}}'


def test_read_mlflow_reads_the_applied_endpoint_layout_with_the_aliases_in_one_registry_call(
    workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``mlops.target.applied`` tag comes with the registered model read for the aliases (no second call),
    and a model read too late still shows its config's target and endpoint (never a live AWS call: no boto3)."""
    import builtins

    from mlflow import MlflowClient

    from airflow_mlops.config.loader import load_configs
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.ui.sources import ModelSources, read_mlflow
    from airflow_mlops.vocabulary import Tag

    client = MlflowClient(tracking_uri=workspace.tracking_uri, registry_uri=workspace.tracking_uri)
    client.create_registered_model("fraud")
    client.set_registered_model_tag("fraud", Tag.TARGET_APPLIED, APPLIED)
    client.create_registered_model("plain")
    calls: list[str] = []

    class CountingClient:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(client, name)

    class Hook(MlflowHook):
        def get_conn(self) -> Any:
            return CountingClient()

    real_import = builtins.__import__

    def no_boto(name: str, *args: Any, **kwargs: Any) -> Any:
        assert not name.startswith(("boto3", "botocore")), "the Models pages never call AWS"
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_boto)
    snap = read_mlflow(Hook(), "fraud", detail=False, secrets=[])
    assert snap.errors == [] and snap.registered and snap.target_applied == APPLIED
    assert calls.count("get_registered_model") == 1
    assert read_mlflow(Hook(), "plain", detail=False, secrets=[]).target_applied is None
    monkeypatch.setattr(builtins, "__import__", real_import)

    path = workspace.write_config("fraud", {"rollout": {"target": "sagemaker", "target_options": SAGEMAKER_OPTIONS}})
    (loaded,) = load_configs([path]).configs
    late = ModelSources(loaded).unavailable("MLflow did not answer within 5 s")
    assert (late.target, late.endpoint, late.endpoint_layout) == ("sagemaker", "fraud-prod", None)


@pytest.mark.integration
def test_the_pages_show_a_cloud_targets_endpoint_and_the_layout_last_applied(
    mlflow_conn: Any, ui: Any, token: str
) -> None:
    from airflow_mlops.vocabulary import Tag

    mlflow_conn.write_config("fraud", {"rollout": {"target": "sagemaker", "target_options": SAGEMAKER_OPTIONS}})
    client = mlflow_conn.client()
    client.create_registered_model("fraud")
    client.set_registered_model_tag("fraud", Tag.TARGET_APPLIED, APPLIED)

    expected = {"target": "sagemaker", "endpoint": "fraud-prod", "endpoint_layout": "v1 95%, v2 5%"}
    (fraud,) = ui.get("/api/models", headers=bearer(token)).json()["models"]
    assert {key: fraud[key] for key in expected} == expected and fraud["errors"] == []
    model = ui.get("/api/models/fraud", headers=bearer(token)).json()["model"]
    assert {key: model[key] for key in expected} == expected
    for page in (ui.get("/", headers=bearer(token)).text, ui.get("/models/fraud", headers=bearer(token)).text):
        assert "endpoint <b>fraud-prod</b>" in page and "last applied: v1 95%, v2 5%</div>" in page
        assert "<code>airflow-mlops status fraud</code> shows the live endpoint" in page

    client.set_registered_model_tag("fraud", Tag.TARGET_APPLIED, '{"weights": {"?<script>x": 1}} <script>')
    (fraud,) = ui.get("/api/models", headers=bearer(token)).json()["models"]
    assert fraud["endpoint_layout"] is None and fraud["errors"] == [], "garbage is unknown, not an error"
    client.set_registered_model_tag("fraud", Tag.TARGET_APPLIED, '{"weights": {"?<script>x": 100}, "shadow": null}')
    (fraud,) = ui.get("/api/models", headers=bearer(token)).json()["models"]
    assert fraud["endpoint_layout"] == "variant '<script>x' 100%"
    page = ui.get("/", headers=bearer(token)).text
    assert "last applied: variant &#39;&lt;script&gt;x&#39; 100%</div>" in page and "<script>x" not in page


def test_every_route_refuses_requests_without_a_valid_airflow_token(mlflow_conn: Any, ui: Any) -> None:
    import jwt

    from airflow_mlops.ui.auth import auth_manager

    mlflow_conn.write_config("fraud")
    forged = jwt.encode({"sub": "ci", "role": "admin", "exp": int(time.time()) + 600}, "not-the-secret" * 8, "HS512")
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    expired = auth_manager().generate_jwt(
        SimpleAuthManagerUser(username="ci", role="admin"), expiration_time_in_seconds=-3600
    )
    for route in ROUTES:
        for headers, cookies in (
            ({}, {}),
            ({"Authorization": "Bearer not-a-jwt"}, {}),
            ({"Authorization": f"Bearer {forged}"}, {}),
            ({"Authorization": f"Bearer {expired}"}, {}),
            ({"Authorization": "Basic Y2k6Y2ktcGFzc3dvcmQ="}, {}),
            ({}, {"_token": forged}),
        ):
            ui.cookies.clear()
            for key, value in cookies.items():
                ui.cookies.set(key, value)
            answer = ui.get(route, headers=headers)
            assert answer.status_code == 401, (route, headers, cookies, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            if route.startswith("/api/"):
                assert answer.json()["detail"] in ("Invalid or expired token", NOT_AUTHENTICATED)
            else:
                assert "Log in" in answer.text and "<table" not in answer.text
            assert_no_secrets(answer.text)
    assert ui.get("/docs").status_code == 404 and ui.get("/openapi.json").status_code == 404


def test_a_token_from_airflow_or_the_ui_cookie_is_accepted(mlflow_conn: Any, ui: Any, token: str) -> None:
    mlflow_conn.write_config("fraud")
    for route in ROUTES:
        answer = ui.get(route, headers=bearer(token))
        assert answer.status_code == 200, (route, answer.text)
        assert answer.headers["cache-control"] == "no-store"
        assert_no_secrets(answer.text)
    ui.cookies.set("_token", token)
    assert ui.get("/").status_code == 200
    assert ui.get("/api/models").json()["models"][0]["name"] == "fraud"
    ui.cookies.clear()
    html = ui.get("/", headers=bearer(token))
    assert "script-src 'nonce-" in html.headers["content-security-policy"]
    assert "default-src 'none'" in html.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", html.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
    assert html.headers["content-security-policy"] == (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    ), "style and script are inlined under the nonce: nothing else may load"
    assert html.text.count(f"<style nonce='{nonce}'>") == 1 and html.text.count(f"<script nonce='{nonce}'>") == 1
    assert "<link" not in html.text and "<script src" not in html.text
    charts = ui.get("/api/models/fraud", headers=bearer(token)).json()["charts"]
    assert charts["error_rate"]["note"].startswith("no prediction log configured")
    assert ui.get("/models/nope", headers=bearer(token)).status_code == 404
    assert ui.get("/api/models/fraud?hours=0", headers=bearer(token)).status_code == 422


def test_a_user_without_access_to_the_models_dags_sees_no_model(
    mlflow_conn: Any, ui: Any, token: str, request: pytest.FixtureRequest
) -> None:
    """Nor the text of a broken config (paths, values): config errors follow the ``__config_error`` DAG's access."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from airflow_mlops.ui.auth import auth_manager

    mlflow_conn.write_config("fraud")
    broken = mlflow_conn.config_dir / "payments_secret.yaml"
    broken.write_text("name: payments\ndata: {uri: /srv/finance/salaries.csv}\n")
    request.addfinalizer(broken.unlink)
    nobody = auth_manager().generate_jwt(SimpleAuthManagerUser(username="nobody", role=None))

    assert ui.get("/api/models", headers=bearer(nobody)).json()["config_errors"] == {}
    assert "salaries" not in ui.get("/", headers=bearer(nobody)).text
    assert "payments_secret.yaml" in ui.get("/api/models", headers=bearer(token)).json()["config_errors"]
    assert ui.get("/api/models", headers=bearer(nobody)).json()["models"] == []
    assert ui.get("/api/models/fraud", headers=bearer(nobody)).status_code == 403
    assert ui.get("/models/fraud", headers=bearer(nobody)).status_code == 403
    assert ui.get("/models/fraud/versions/1/card", headers=bearer(nobody)).status_code == 403
    assert "fraud" not in ui.get("/", headers=bearer(nobody)).text


# -- the pages ---------------------------------------------------------------------------------------


def log_monitoring_runs(client: Any) -> list[str]:
    experiment = client.create_experiment("airflow-mlops/fraud/monitoring")
    run_ids = []
    for hour, act, amount in ((1, "false", 0.04), (2, "true", 0.31)):
        run = client.create_run(
            experiment, tags={"mlops.window_end": f"2026-01-01T0{hour}:00:00+00:00", "mlops.drift.act": act}
        )
        for key, value in {
            "psi.amount": amount,
            "psi.hour": 0.02 * hour,
            "psi.prediction": 0.05,
            "rows": 500.0,
        }.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    return run_ids


def log_traffic(root: Path, champion: str, canary: str) -> None:
    from airflow_mlops.prediction_log import LocalStorage, PredictionLog, PredictionRecord

    now = datetime.now(UTC)
    records = []
    for minute in range(0, 120, 5):
        ts = now - timedelta(minutes=minute + 1)
        for i in range(4):
            records.append(
                PredictionRecord(f"c{minute}-{i}", ts, "fraud", champion, "champion", "{}", "0.1", 3.0 + i, None)
            )
        error = "ValueError: unknown category" if minute % 10 == 0 else None
        records.append(
            PredictionRecord(f"k{minute}", ts, "fraud", canary, "canary", "{}", None if error else "0.2", 9.0, error)
        )
    log = PredictionLog(LocalStorage(root))
    log.append(records)
    log.close()


@pytest.fixture
def deployed(mlflow_conn: Any, tmp_path: Path) -> dict[str, Any]:
    """fraud: v1 champion, v2 canary at 20 %, v3 challenger + shadow; monitoring runs; two hours of traffic."""
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    log_root = tmp_path / "prediction-log"
    config = mlflow_conn.write_config("fraud", {"serving": {"prediction_log": str(log_root)}})
    v1, v2, v3 = (train_version(config, f"manual__ui{i}") for i in (1, 2, 3))
    client = mlflow_conn.client()
    target = LocalGatewayTarget.from_options(client=client, state_url=os.environ["AIRFLOW_MLOPS_STATE_DB"])
    target.promote("fraud", v1, actor="test", reason="first champion")
    target.set_traffic("fraud", v2, 20, actor="fraud__deploy/run_1", reason="canary step 20%")
    from airflow_mlops.deploy.promotion import Deployments

    Deployments(client, target.audit).set_challenger("fraud", v3, actor="fraud__train/run_3", reason="gate passed")
    target.start_shadow("fraud", v3, actor="fraud__deploy/run_2", reason="shadow window")
    monitoring = log_monitoring_runs(client)
    log_traffic(log_root, v1, v2)
    return {"v": (v1, v2, v3), "client": client, "monitoring": monitoring, "target": target}


@pytest.mark.integration
def test_list_and_model_pages_show_state_gate_drift_audit_charts_and_links(deployed: Any, ui: Any, token: str) -> None:
    v1, v2, v3 = deployed["v"]
    client = deployed["client"]

    listing = ui.get("/api/models", headers=bearer(token))
    assert listing.status_code == 200, listing.text
    (fraud,) = listing.json()["models"]
    assert (fraud["champion"], fraud["canary"], fraud["shadow"], fraud["challenger"]) == (v1, v2, v3, v3)
    assert fraud["canary_percent"] == 20.0
    assert fraud["traffic"]["champion"] == {"version": v1, "percent": 80.0}
    assert fraud["traffic"]["shadow"] == {"version": v3, "mirrored": True}
    assert fraud["last_gate"]["version"] == v3 and fraud["last_gate"]["result"] == "passed"
    assert fraud["last_gate"]["version_url"] == f"{UI_BASE}/#/models/fraud/versions/{v3}"
    drift = fraud["last_drift"]
    assert drift["run_id"] == deployed["monitoring"][1] and drift["act"] is True
    assert drift["scores"]["amount"] == pytest.approx(0.31) and drift["max_feature"] == "amount"
    moves = [(e["alias"], e["from_version"], e["to_version"], e["reason"]) for e in fraud["audit"]]
    assert moves[0] == ("shadow", None, v3, "shadow window"), "newest first"
    assert ("champion", None, v1, "first champion") in moves
    assert ("canary", None, v2, "canary step 20% [canary_percent 0 -> 20]") in moves
    assert fraud["links"]["mlflow_champion"] == f"{UI_BASE}/#/models/fraud/versions/{v1}"
    assert fraud["pending_approvals"] == [] and fraud["errors"] == []
    assert listing.json()["required_actions_url"] == "/required_actions?response_received=false"

    page = ui.get("/", headers=bearer(token)).text
    assert "href='models/fraud'" in page and f"v{v1}" in page and "canary v" + v2 + " 20%" in page
    assert "shadow window" in page and "first champion" in page

    detail = ui.get("/api/models/fraud", headers=bearer(token), params={"hours": 3}).json()
    assert detail["primary_metric"] == "roc_auc" and detail["bucket"] == "minute"
    versions = {row["version"]: row for row in detail["versions"]}
    run_v1 = client.get_run(client.get_model_version("fraud", v1).run_id)
    assert versions[v1]["metric"] == pytest.approx(run_v1.data.metrics["roc_auc"])
    assert versions[v1]["run_url"] == (f"{UI_BASE}/#/experiments/{run_v1.info.experiment_id}/runs/{run_v1.info.run_id}")
    assert versions[v1]["aliases"] == ["champion"] and versions[v3]["aliases"] == ["challenger", "shadow"]
    charts = detail["charts"]
    assert [s["name"] for s in charts["drift"]["series"]] == ["amount", "hour", "prediction"]
    assert [p[1] for p in charts["drift"]["series"][0]["points"]] == [pytest.approx(0.04), pytest.approx(0.31)]
    assert charts["drift"]["thresholds"] == [["warn", 0.1], ["act", 0.25]]
    error_series = {s["name"]: s["points"] for s in charts["error_rate"]["series"]}
    assert set(error_series) == {f"v{v1} champion", f"v{v2} canary"}
    canary_rates = [rate for _, rate in error_series[f"v{v2} canary"] if rate is not None]
    assert max(canary_rates) == 1.0 and min(canary_rates) == 0.0
    assert all(rate in (0.0, None) for _, rate in error_series[f"v{v1} champion"])
    latency = {s["name"]: [v for _, v in s["points"] if v is not None] for s in charts["latency_p95"]["series"]}
    assert set(latency[f"v{v2} canary"]) == {9.0} and max(latency[f"v{v1} champion"]) == pytest.approx(5.85)
    assert [p[0] for p in charts["primary_metric"]["series"][0]["points"]] == [f"v{v1}", f"v{v2}", f"v{v3}"]

    html = ui.get("/models/fraud", headers=bearer(token), params={"hours": 3}).text
    embedded = json.loads(re.search(r'id="mlops-chart-data">(.*?)</script>', html).group(1))  # type: ignore[union-attr]
    assert embedded["charts"] == detail["charts"]
    for chart in ("drift", "error_rate", "latency_p95", "primary_metric"):
        assert f"data-chart='{chart}'" in html
    assert html.count("<polyline") >= 6 and "<script src" not in html and "<link" not in html
    for svg in re.findall(r"<svg .*?</svg>", html, flags=re.S):
        ElementTree.fromstring(svg)  # well-formed
    assert f"{UI_BASE}/#/models/fraud/versions/{v2}" in html
    assert f"{UI_BASE}/#/experiments/{run_v1.info.experiment_id}/runs/{run_v1.info.run_id}" in html
    assert not re.search(r"(src|href)=['\"]https?://(?!mlflow\.example\.test)", html), "no other network fetch"
    assert_no_secrets(listing.text, page, json.dumps(detail), html)


@pytest.mark.integration
def test_each_version_links_to_its_model_card_served_with_a_strict_policy(deployed: Any, ui: Any, token: str) -> None:
    v1, _, v3 = deployed["v"]

    html = ui.get("/models/fraud", headers=bearer(token)).text
    assert f"href='fraud/versions/{v1}/card'>card</a>" in html

    card = ui.get(f"/models/fraud/versions/{v1}/card", headers=bearer(token))
    assert card.status_code == 200, card.text
    nonce = re.search(r"style-src 'nonce-([^']+)'", card.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
    assert f'<style nonce="{nonce}">' in card.text and card.headers["cache-control"] == "no-store"
    assert f"<h1>Model card: fraud v{v1}</h1>" in card.text and "<code>champion</code>" in card.text
    assert "Result: <b>passed</b>" in card.text
    assert "<code>challenger</code>" in ui.get(f"/models/fraud/versions/{v3}/card", headers=bearer(token)).text
    assert ui.get("/models/fraud/versions/99/card", headers=bearer(token)).status_code == 404
    assert ui.get("/models/fraud/versions/latest/card", headers=bearer(token)).status_code == 404
    assert ui.get("/models/fraud/versions/²/card", headers=bearer(token)).status_code == 404
    assert (
        f"<h1>Model card: fraud v{v1}</h1>" in ui.get(f"/models/fraud/versions/00{v1}/card", headers=bearer(token)).text
    )
    assert ui.get("/models/nope/versions/1/card", headers=bearer(token)).status_code == 404
    assert ui.get(f"/models/fraud/versions/{v1}/card").status_code == 401
    assert_no_secrets(card.text)


@pytest.mark.integration
def test_mlflow_outage_is_shown_per_model_without_secrets(
    mlflow_conn: Any, ui: Any, token: str, monkeypatch: Any
) -> None:
    conn = {
        "conn_type": "mlflow",
        "host": f"http://svc:{SECRETS[0]}@127.0.0.1:9",
        "password": SECRETS[0],
        "extra": {"token": SECRETS[1]},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    mlflow_conn.write_config("fraud")

    listing = ui.get("/api/models", headers=bearer(token))

    assert listing.status_code == 200
    (fraud,) = listing.json()["models"]
    assert fraud["errors"] and fraud["errors"][0].startswith("MLflow")
    card = ui.get("/models/fraud/versions/1/card", headers=bearer(token))
    assert card.status_code == 502 and "fraud v1: MLflow" in card.text
    assert_no_secrets(listing.text, ui.get("/", headers=bearer(token)).text, card.text)


# -- pending approvals ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_pending_approval_is_listed_with_a_link_to_airflows_required_actions(
    mlflow_conn: Any, airflow_api: Any, ui: Any, token: str
) -> None:
    mlflow_conn.write_config("fraud", {"approval": {"required": True, "approvers": ["ci"]}})
    dag = mlflow_conn.dag("fraud")
    seen: dict[str, Any] = {}

    def respond() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            listing = ui.get("/api/models", headers=bearer(token))
            pending = listing.json()["models"][0]["pending_approvals"] if listing.status_code == 200 else []
            # the request is written a moment before the task parks in awaiting_input: answer once it has
            if pending and pending[0]["state"] == "awaiting_input":
                seen["pending"], seen["html"] = pending, ui.get("/", headers=bearer(token)).text
                seen["nobody"] = ui.get("/api/models/fraud", headers=bearer(token)).json()["model"]["pending_approvals"]
                p = pending[0]
                seen["answer"] = airflow_api.patch(
                    f"/api/v2/dags/{p['dag_id']}/dagRuns/{p['run_id']}/taskInstances/{p['task_id']}/"
                    f"{p['map_index']}/hitlDetails",
                    json={"chosen_options": ["Approve"], "params_input": {}},
                )
                return
            time.sleep(0.3)

    responder = threading.Thread(target=respond, daemon=True)
    responder.start()
    run = dag.test()
    responder.join(10)

    assert "pending" in seen, "the approval never showed up as pending"
    (approval,) = seen["pending"]
    assert (approval["dag_id"], approval["task_id"], approval["run_id"]) == ("fraud__train", "approve", run.run_id)
    assert approval["assignees"] == ["ci"] and approval["state"] == "awaiting_input"
    from urllib.parse import quote

    assert approval["url"] == f"/dags/fraud__train/runs/{quote(run.run_id, safe='')}/tasks/approve/required_actions"
    assert approval["url"].replace("&", "&amp;") in seen["html"]
    assert "/required_actions?response_received=false" in seen["html"]
    assert seen["answer"].status_code == 200, seen["answer"].text
    assert run.state == "success"
    after = ui.get("/api/models", headers=bearer(token)).json()["models"][0]
    assert after["pending_approvals"] == [] and after["challenger"] == "1"


# -- the plugin -----------------------------------------------------------------------------------------

PLUGIN_PROBE = r"""
import json, sys
from fastapi.testclient import TestClient
from airflow import plugins_manager
from airflow.api_fastapi.app import create_app

plugins, errors = plugins_manager._get_plugins()
client = TestClient(create_app(apps="core"))
token = client.post("/auth/token", json={"username": sys.argv[1], "password": sys.argv[2]}).json()["access_token"]
auth = {"Authorization": "Bearer " + token}
out = {
    "plugins": [p.name for p in plugins],
    "errors": errors,
    "anonymous": {r: client.get("/mlops" + r).status_code for r in ("/", "/api/models", "/models/fraud")},
    "bearer": client.get("/mlops/api/models", headers=auth).status_code,
    "api_plugins": client.get("/api/v2/plugins", headers=auth).json(),
}
client.cookies.set("_token", token)
out["cookie"] = client.get("/mlops/").status_code
print("PROBE " + json.dumps(out))
"""


@pytest.fixture
def plugins_env(mlflow_conn: Any, tmp_path: Path, airflow_db: Any) -> dict[str, str]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(REPO / "plugins" / "airflow_mlops_plugin.py", folder / "airflow_mlops_plugin.py")
    mlflow_conn.write_config("fraud")
    return {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(folder), "PYTHONWARNINGS": "ignore"}


@pytest.mark.integration
def test_plugin_is_listed_by_the_airflow_cli(plugins_env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run(
        [str(airflow), "plugins", "--output", "json"], env=plugins_env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    listed = [p for p in json.loads(out.stdout[out.stdout.index("[") :]) if p["name"] == "airflow-mlops"]
    assert len(listed) == 1, out.stdout
    assert listed[0]["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/mlops", "name": "airflow-mlops"}
    ]
    assert [(v["name"], v["href"], v["destination"]) for v in listed[0]["external_views"]] == [
        ("Models", "/mlops/", "nav")
    ]


@pytest.mark.integration
def test_api_server_mounts_the_plugin_behind_airflow_tokens(plugins_env: dict[str, str]) -> None:
    # tests/conftest.py's credentials, read from the environment it set (a bare ``import conftest`` may
    # resolve to another folder's conftest in a full run)
    API_USER = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(":", 1)[0]
    with open(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]) as fh:
        API_PASSWORD = json.load(fh)[API_USER]

    out = subprocess.run(
        [sys.executable, "-c", PLUGIN_PROBE, API_USER, API_PASSWORD],
        env=plugins_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("PROBE "))[6:])

    assert probe["plugins"].count("airflow-mlops") == 1 and probe["errors"] == {}
    assert probe["anonymous"] == {"/": 401, "/api/models": 401, "/models/fraud": 401}
    assert probe["bearer"] == 200 and probe["cookie"] == 200
    (plugin,) = [p for p in probe["api_plugins"]["plugins"] if p["name"] == "airflow-mlops"]
    assert plugin["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/mlops", "name": "airflow-mlops"}
    ]
    (view,) = plugin["external_views"]
    assert (view["name"], view["href"], view["url_route"], view["destination"]) == (
        "Models",
        "/mlops/",
        "models",
        "nav",
    )
    assert view["nav_top_level"] is True and view["icon"].startswith("data:image/svg+xml")
    assert_no_secrets(json.dumps(probe))


# -- extra links ------------------------------------------------------------------------------------------


LINKS_DAG = """
from airflow.sdk import DAG, BaseOperator

from airflow_mlops.exceptions import GateFailedError
from airflow_mlops.ui.links import MlflowModelVersionLink, MlflowRunLink


class TrainLike(BaseOperator):
    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mlflow_conn_id = "mlflow_default"

    def execute(self, context):
        return {"mlflow_run_id": "run0123", "model_uri": "models:/m-1"}


class GateLike(TrainLike):
    operator_extra_links = (MlflowRunLink(), MlflowModelVersionLink())
    model_name = "fraud"

    def execute(self, context):
        return {"version": "7", "gate": "passed", "mlflow_run_id": "run0123"}


class FailingGate(GateLike):
    def execute(self, context):
        self.mlflow_link_info = {"mlflow_run_id": "run0456", "version": "8"}
        raise GateFailedError("fraud v8 failed its gate")


with DAG("ui_links_probe", schedule=None) as dag:
    TrainLike(task_id="train_model") >> GateLike(task_id="gate_model")
    FailingGate(task_id="gate_failing")
"""


@pytest.mark.integration
def test_extra_links_of_our_tasks_point_to_the_mlflow_run_and_version(mlflow_conn: Any, airflow_api: Any) -> None:
    """Links declared on operators: computed on the worker at task end, shown by Airflow's REST API."""
    import importlib.util

    DAGS_FOLDER = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])

    path = DAGS_FOLDER / "ui_links_probe.py"
    path.write_text(LINKS_DAG)
    try:
        spec = importlib.util.spec_from_file_location("ui_links_probe", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        run = module.dag.test()
    finally:
        path.unlink()

    def links(task_id: str) -> dict[str, Any]:
        answer = airflow_api.get(f"/api/v2/dags/ui_links_probe/dagRuns/{run.run_id}/taskInstances/{task_id}/links")
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["extra_links"])

    assert links("train_model") == {"MLflow run": f"{UI_BASE}/#/runs/run0123"}
    assert links("gate_model") == {
        "MLflow run": f"{UI_BASE}/#/runs/run0123",
        "MLflow model version": f"{UI_BASE}/#/models/fraud/versions/7",
    }
    assert links("gate_failing") == {
        "MLflow run": f"{UI_BASE}/#/runs/run0456",
        "MLflow model version": f"{UI_BASE}/#/models/fraud/versions/8",
    }
    assert_no_secrets(json.dumps([links(t) for t in ("train_model", "gate_model", "gate_failing")]))


def test_extra_links_are_empty_without_an_mlflow_ui(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sqlite tracking URI and no ``ui_url``: no link (never a ``sqlite:`` URL)."""
    from types import SimpleNamespace

    from airflow_mlops.ui import links

    monkeypatch.setattr(links, "_return_value", lambda ti_key: {"mlflow_run_id": "r1", "version": "2"})
    operator = SimpleNamespace(mlflow_conn_id="mlflow_default", model_name="fraud")
    key = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1)
    assert links.MlflowRunLink().get_link(operator, ti_key=key) == ""  # type: ignore[arg-type]
    assert links.MlflowModelVersionLink().get_link(operator, ti_key=key) == ""  # type: ignore[arg-type]
    assert links.MlflowRunLink().xcom_key == "_link_MlflowRunLink"
