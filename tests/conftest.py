"""Test-wide setup: an isolated Airflow home and DAG folder, offline and quiet libraries.

Airflow reads its configuration when first imported, so the environment is set here, at import
time, before any test module imports Airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_ROOT = Path(tempfile.mkdtemp(prefix="airflow-mlops-tests-"))
DAGS_FOLDER = _ROOT / "dags"
CONFIG_DIR = DAGS_FOLDER / "configs"
CONFIG_DIR.mkdir(parents=True)
shutil.copy(REPO / "dags" / "airflow_mlops_dags.py", DAGS_FOLDER / "airflow_mlops_dags.py")
API_USER, API_PASSWORD = "ci", "ci-password"
(_ROOT / "passwords.json").write_text(json.dumps({API_USER: API_PASSWORD}))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_ROOT / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_MLOPS_CONFIG_DIR": str(CONFIG_DIR),
        "AIRFLOW_MLOPS_STATE_DB": f"sqlite:///{_ROOT / 'airflow_mlops_state.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{API_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_ROOT / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "airflow-mlops-tests-" + "x" * 64,
        "AIRFLOW__API__HOST": "127.0.0.1",
    }
)
os.environ.pop("MLFLOW_TRACKING_URI", None)


# Bytecode cache for this session and its subprocesses. With PYTHONDONTWRITEBYTECODE set (some CI images set
# it) and a virtualenv installed without compiled bytecode (uv's default), every Python process the tests start
# (gateways, Airflow components and task processes, mlflow servers, the CLI) compiles Airflow, MLflow, pandas and
# scikit-learn from source again: about 2 s more per process start on a 2-core machine. The cache goes outside
# the source tree and the virtualenv (PYTHONPYCACHEPREFIX, no __pycache__ folders anywhere near the code); each
# .pyc is checked against its source's mtime and size, so edited sources are compiled again. A cache prefix set
# by the caller is kept; without PYTHONDONTWRITEBYTECODE nothing changes here.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    _PYCACHE = Path(tempfile.gettempdir()) / f"airflow-mlops-tests-pycache-{os.getuid()}"
    _PYCACHE.mkdir(mode=0o700, exist_ok=True)
    os.environ["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    sys.pycache_prefix = str(_PYCACHE)
    sys.dont_write_bytecode = False


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """On a user's machine a missing service skips the test; in CI (CI=true) it is a failure."""
    if in_ci():
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _reset_mlflow_globals() -> Iterator[None]:
    """A test that points mlflow's fluent API somewhere must not leak it into the next test's clients."""
    yield
    if "mlflow" in sys.modules:
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        registry_utils._registry_uri = None
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.environ.pop("MLFLOW_TRACKING_AUTH", None)  # set by a hook whose connection has credentials


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's SQLite metadata DB, migrated once per session."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"


@pytest.fixture(scope="session")
def airflow_api(airflow_db: Path) -> Any:
    """Airflow's own REST API app (the api-server's core app) in-process, with a bearer token for ``ci``."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app(apps="core"))
    response = client.post("/auth/token", json={"username": API_USER, "password": API_PASSWORD})
    assert response.status_code == 201, response.text
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Workspace:
    """A model-config folder (the DAG folder's ``configs``) and a private MLflow store for one test."""

    root: Path
    tracking_uri: str
    config_dir: Path = CONFIG_DIR

    def write_config(
        self, example: str = "fraud", overrides: dict[str, Any] | None = None, replace: dict[str, Any] | None = None
    ) -> Path:
        """Copy an example config with absolute data/behaviour paths, merge ``overrides``, set ``replace``;
        feature attributions are off unless ``overrides`` turn them on."""
        source = REPO / "dags" / "configs" / f"{example}.yaml"
        raw = yaml.safe_load(source.read_text())
        raw["data"]["uri"] = str((source.parent / raw["data"]["uri"]).resolve())
        if raw.get("gates", {}).get("behaviour"):
            raw["gates"]["behaviour"]["cases"] = str(source.parent / raw["gates"]["behaviour"]["cases"])
        raw = {**deep_merge(raw, overrides or {}), **(replace or {})}
        # feature attributions (SHAP: seconds per gate) only where a test asks for them
        raw["gates"] = {"attributions": {"method": "off"}, **(raw.get("gates") or {})}
        path = CONFIG_DIR / f"{raw['name']}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def dag(self, model: str) -> Any:
        from airflow_mlops.factories import build_dags

        return build_dags(None, CONFIG_DIR)[f"{model}__train"]

    def client(self) -> Any:
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """Empty config folder + an MLflow SQLite store in ``tmp_path``, wired as ``mlflow_default``."""
    for old in CONFIG_DIR.iterdir():
        old.unlink()
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    conn = {"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(tmp_path / "artifacts")}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    yield Workspace(root=tmp_path, tracking_uri=tracking_uri)
    for old in CONFIG_DIR.iterdir():
        old.unlink()
