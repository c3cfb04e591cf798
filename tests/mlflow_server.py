"""``mlflow server`` from the venv as a child process for system tests (any backend store, served artifacts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from live_airflow import free_port, skip_or_fail


class MlflowServer:
    """``mlflow server`` from the venv as a child process in its own process group, stopped by its PID.

    The port is chosen once: a restart comes back on the same URL, as a real server behind its DNS name would,
    so clients (a gateway, a connection) configured with it reach the new process.
    """

    def __init__(self, backend_uri: str, artifacts: Path, log_dir: Path, *, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self.backend_uri = backend_uri
        self.artifacts = artifacts
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.starts = 0
        self.log_path = log_dir / "mlflow-server-0.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait (bounded) for ``GET /health`` -> 200; return seconds taken."""
        assert self.proc is None, "already running"
        binary = Path(sys.executable).with_name("mlflow")
        if not binary.exists():
            skip_or_fail(f"{binary} not found: mlflow is not installed in this venv")
        self.starts += 1
        self.log_path = self.log_dir / f"mlflow-server-{self.starts}.log"
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [
            str(binary),
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        began = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        try:
            self._wait_healthy(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def _wait_healthy(self, deadline: float) -> None:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"mlflow server not healthy within {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the server's process group (gunicorn/uvicorn workers included), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """MLflow goes down hard: SIGKILL to the whole process group, no shutdown handlers run."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "<no log>"
