"""Start local emulators for cloud storage (moto server for S3, Azurite for Azure Blob) in tests.

Plain helpers, no fixtures: ``tests/system/conftest.py`` wraps them. Each emulator runs as a child process
on a free loopback port, is polled until it answers (bounded wait), and is always stopped by PID. A missing
emulator binary skips the test locally but fails it when ``CI=true``: in CI a skip would hide a broken setup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = REPO_ROOT / "tools" / "node_modules" / ".bin" / "azurite-blob"
START_TIMEOUT_S = 30.0

# Azurite's well-known development account (public, documented by Microsoft and hard-coded in Azurite's
# source, tools/node_modules/azurite/dist; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing"
MOTO_REGION = "us-east-1"


def missing_tool(reason: str) -> NoReturn:
    """Skip locally, fail in CI (``CI=true``), when an emulator cannot be started for lack of a binary."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing emulator is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port that was free a moment ago (the emulator binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(log_path: Path, limit: int = 2000) -> str:
    try:
        return log_path.read_text(errors="replace")[-limit:]
    except OSError:
        return "<no log>"


def _wait_until_answering(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    """Poll ``url`` until any HTTP response comes back; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"emulator exited with code {proc.returncode} before answering {url}:\n{_log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # an HTTP error status still means the server is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"emulator did not answer {url} within {timeout:.0f} s:\n{_log_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the emulator's own process group (by its PID), then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@contextmanager
def _running(cmd: list[str], ready_url: str, log_path: Path, timeout: float) -> Iterator[None]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # New session: the emulator and anything it spawns form a group we can stop by the emulator's PID.
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        _wait_until_answering(ready_url, proc, log_path, timeout)
        yield
    finally:
        _stop(proc)


def moto_server_bin() -> Path:
    """``moto_server`` next to the running interpreter (the venv's bin), else on PATH; skip/fail if absent."""
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.exists():
        return candidate
    found = shutil.which("moto_server")
    if found is None:
        missing_tool("moto server not installed: run `pip install 'moto[server]'` (part of the `test` extra)")
    return Path(found)


@contextmanager
def run_moto_server(log_dir: Path, timeout: float = START_TIMEOUT_S) -> Iterator[str]:
    """Run ``moto_server`` on a free loopback port; yield its endpoint URL."""
    binary = moto_server_bin()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [str(binary), "-H", "127.0.0.1", "-p", str(port)]
    with _running(cmd, f"{endpoint}/moto-api/", log_dir / "moto_server.log", timeout):
        yield endpoint


def azurite_bin() -> Path:
    """The project-pinned ``azurite-blob`` from ``tools/``; skip/fail if it (or node) is missing."""
    if not AZURITE_BIN.exists():
        missing_tool(f"Azurite not installed ({AZURITE_BIN} missing): run `npm ci --prefix tools`")
    if shutil.which("node") is None:
        missing_tool("Azurite needs Node.js, and `node` is not on PATH")
    return AZURITE_BIN


@contextmanager
def run_azurite(location: Path, timeout: float = START_TIMEOUT_S) -> Iterator[str]:
    """Run Azurite's blob service on a free loopback port, storing in ``location``; yield the blob endpoint."""
    binary = azurite_bin()
    port = free_port()
    location.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(binary),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--location",
        str(location),
    ]
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    with _running(cmd, f"{endpoint}?comp=list", location / "azurite.log", timeout):
        yield endpoint


def azurite_connection_string(blob_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={blob_endpoint};"
    )


def aws_connection_json(endpoint_url: str) -> str:
    """Airflow connection (JSON form, for ``AIRFLOW_CONN_*``) pointing the AWS hooks at moto."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": MOTO_ACCESS_KEY,
            "password": MOTO_SECRET_KEY,
            "extra": {"endpoint_url": endpoint_url, "region_name": MOTO_REGION},
        }
    )


def moto_client(endpoint_url: str, service: str, **kwargs: Any) -> Any:
    """A boto3 client for ``service`` on the moto server at ``endpoint_url``, with moto's test credentials."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=MOTO_REGION,
        aws_access_key_id=MOTO_ACCESS_KEY,
        aws_secret_access_key=MOTO_SECRET_KEY,
        **kwargs,
    )


def wasb_connection_json(blob_endpoint: str) -> str:
    """Airflow connection (JSON form, for ``AIRFLOW_CONN_*``) pointing ``WasbHook`` at Azurite."""
    return json.dumps({"conn_type": "wasb", "extra": {"connection_string": azurite_connection_string(blob_endpoint)}})


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the moto server, reachable through the Airflow connection ``conn_id``."""

    endpoint_url: str
    bucket: str
    conn_id: str


@dataclass(frozen=True)
class BlobContainer:
    """A fresh container on Azurite, reachable through the Airflow connection ``conn_id``."""

    blob_endpoint: str
    container: str
    conn_id: str
    account: str = AZURITE_ACCOUNT

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.blob_endpoint)


@contextmanager
def run_moto_sagemaker_server(log_dir: Path, timeout: float = START_TIMEOUT_S) -> Iterator[str]:
    """Run moto's server with the test-only SageMaker extension (``tests/moto_sagemaker.py``) on a free
    loopback port; yield its endpoint URL. All moto services (S3, SageMaker, ...) answer on that one port."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, str(Path(__file__).parent / "moto_sagemaker.py"), "-H", "127.0.0.1", "-p", str(port)]
    with _running(cmd, f"{endpoint}/moto-api/", log_dir / "moto_sagemaker.log", timeout):
        yield endpoint
