"""Helpers shared by tests: a minimal Airflow context, training a version without a scheduler, a gateway process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def run_answering(
    dag: Any,
    api: Any,
    answer: str,
    *,
    task_id: str = "approve",
    params_input: dict[str, Any] | None = None,
    wait: float = 120.0,
    **test_kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """``dag.test(**test_kwargs)`` while a thread answers its approval ``task_id`` through Airflow's REST API.

    ``dag.test()`` blocks while the approval waits in ``awaiting_input``; the thread answers it with
    ``PATCH .../hitlDetails`` on Airflow's own API app (in-process, same metadata DB), exactly as the
    Airflow UI or a REST client would. Returns the run and ``{"pending": <the request>, "response": ...}``.
    """
    out: dict[str, Any] = {}

    def respond() -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pending = api.get(
                f"/api/v2/dags/{dag.dag_id}/dagRuns/~/hitlDetails",
                params={"response_received": False, "task_id": task_id},
            )
            if pending.status_code == 200 and pending.json()["hitl_details"]:
                ti = pending.json()["hitl_details"][0]["task_instance"]
                out["pending"] = pending.json()["hitl_details"][0]
                out["response"] = api.patch(
                    f"/api/v2/dags/{dag.dag_id}/dagRuns/{ti['dag_run_id']}/taskInstances/{task_id}/"
                    f"{ti['map_index']}/hitlDetails",
                    json={"chosen_options": [answer], "params_input": params_input or {}},
                )
                return
            time.sleep(0.3)
        out["error"] = f"the approval task {task_id} never reached awaiting_input"

    responder = threading.Thread(target=respond, daemon=True)
    responder.start()
    run = dag.test(**test_kwargs)
    responder.join(10)
    assert "error" not in out, out["error"]
    assert out["response"].status_code == 200, out["response"].text
    return run, out


def toy_config(**sections: Any) -> Any:
    """A small in-memory ``ModelConfig`` (numeric ``a``, categorical ``c``, target ``y``); ``sections``
    replace or add top-level sections (``task``, ``features``, ``monitoring``, ``gates`` ...). Feature
    attributions are off unless ``gates`` names them."""
    from airflow_mlops.config.schema import ModelConfig

    raw: dict[str, Any] = {
        "name": "toy",
        "task": "classification",
        "data": {"uri": "toy.csv"},
        "target": "y",
        "features": {"numeric": ["a"], "categorical": ["c"]},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    }
    gates = dict(sections.get("gates") or {})
    # SHAP or permutation importance costs seconds per gate: tests of attributions ask for them explicitly
    gates.setdefault("attributions", {"method": "off"})
    return ModelConfig.model_validate({**raw, **sections, "gates": gates})


def approval_answer(comment: str, user: str = "alice") -> dict[str, Any]:
    """What Airflow hands an approval task when ``user`` approves with ``comment`` (its HITL answer)."""
    from datetime import UTC, datetime

    return {
        "chosen_options": ["Approve"],
        "params_input": {"comment": comment},
        "responded_at": datetime(2026, 12, 7, 12, 0, tzinfo=UTC),
        "responded_by_user": {"id": user, "name": user.title()},
    }


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


@dataclass
class TrainedRegistry:
    """A module-wide MLflow store and state DB holding versions trained by :func:`trained_registry`."""

    tracking_uri: str
    state_url: str
    client: Any
    target: Any  # LocalGatewayTarget over ``client`` and ``state_url``
    versions: list[str]


def conftest_module(config: Any) -> Any:
    """The shared ``tests/conftest.py`` module object, as pytest loaded it (a bare ``import conftest``
    would run it a second time)."""
    path = Path(__file__).resolve().parent / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) and Path(plugin.__file__).resolve() == path:
            return plugin
    raise RuntimeError("tests/conftest.py is not loaded")


@contextmanager
def trained_registry(
    config: Any, root: Path, trainings: list[tuple[dict[str, Any] | None, str]], model: str = "fraud"
) -> Iterator[TrainedRegistry]:
    """One registry for a test module: each ``(overrides, run_id)`` trains, registers and gates a version of
    the ``model`` example config (with ``overrides`` merged) through the real operators.

    ``mlflow_default`` and the state DB point at ``root`` while the block runs. Training takes seconds per
    version, so modules share one registry and reset what a test changes instead of training again.
    """
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    state_url = f"sqlite:///{root / 'state.db'}"
    conn = {"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(root / "artifacts")}}
    saved = {key: os.environ.get(key) for key in ("AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_MLOPS_STATE_DB")}
    os.environ.update({"AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(conn), "AIRFLOW_MLOPS_STATE_DB": state_url})
    try:
        workspace = conftest_module(config).Workspace(root=root, tracking_uri=tracking_uri)
        try:
            versions = [
                train_version(workspace.write_config(model, overrides), run_id) for overrides, run_id in trainings
            ]
        finally:
            for old in workspace.config_dir.iterdir():
                old.unlink()
        client = workspace.client()
        target = LocalGatewayTarget.from_options(client=client, state_url=state_url)
        yield TrainedRegistry(tracking_uri, state_url, client, target, versions)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
