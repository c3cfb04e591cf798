"""Helpers shared by tests: a minimal Airflow context, training a version without a scheduler, a gateway process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx


class FakeTI:
    def __init__(self, xcoms: dict[str, Any] | None = None) -> None:
        self.xcoms = xcoms or {}

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms.get(task_ids)


def context(run_id: str = "manual__op-test", params: dict[str, Any] | None = None, **xcoms: Any) -> dict[str, Any]:
    """The parts of Airflow's task context our operators read."""
    return {
        "dag_run": SimpleNamespace(run_id=run_id),
        "params": params or {},
        "ti": FakeTI(xcoms),
        "outlet_events": defaultdict(lambda: SimpleNamespace(extra=None)),
    }


def toy_config(**sections: Any) -> Any:
    """A small in-memory ``ModelConfig`` (numeric ``a``, categorical ``c``, target ``y``); ``sections``
    replace or add top-level sections (``task``, ``features``, ``monitoring``, ``gates`` ...)."""
    from airflow_mlops.config.schema import ModelConfig

    raw: dict[str, Any] = {
        "name": "toy",
        "task": "classification",
        "data": {"uri": "toy.csv"},
        "target": "y",
        "features": {"numeric": ["a"], "categorical": ["c"]},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    }
    return ModelConfig.model_validate({**raw, **sections})


def train_version(config_path: Path, run_id: str) -> str:
    """Fingerprint, validate, train, register and gate one version with the real operators; return it."""
    from airflow_mlops.operators.gates import GateModelOperator
    from airflow_mlops.operators.training import (
        FingerprintDataOperator,
        RegisterModelOperator,
        TrainModelOperator,
        ValidateDataOperator,
    )

    ctx = context(run_id=run_id)
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator, RegisterModelOperator):
        cls(task_id=cls.__name__, config_path=str(config_path)).execute(ctx)
    return str(GateModelOperator(task_id="gate", config_path=str(config_path)).execute(ctx)["version"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """``airflow-mlops serve`` as a real process on a loopback port."""

    def __init__(self, *, models: list[str], tracking_uri: str, log_root: Path, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cli = Path(sys.executable).with_name("airflow-mlops")
        args = [
            str(cli),
            "serve",
            "--tracking-uri",
            tracking_uri,
            "--log-root",
            str(log_root),
            "--port",
            str(self.port),
        ]
        for model in models:
            args += ["--model", model]
        self.log_path = log_root.parent / f"gateway-{self.port}.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen(
            [*args, *(extra or [])], stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, timeout: float = 90.0, predicate: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                last = httpx.get(f"{self.url}/ready", timeout=2.0).json()
                if last.get("ready") and (predicate is None or predicate(last)):
                    return dict(last)
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gateway not ready ({json.dumps(last)}):\n{self.log_path.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
