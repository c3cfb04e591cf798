"""``make up`` for real: the live stack a newcomer starts, driven the way a person uses it.

``airflow-mlops up`` (what ``make up`` runs) starts in a temporary home on free loopback ports: Airflow 3
(api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite), ``mlflow server`` on SQLite, the
gateway and the traffic-and-labels generator. The first start seeds v1 of fraud and diabetes as champions.
Then, through the REST API and Debian's headless Chromium (``tools/browser/models_page.mjs``):

1. ``fraud__train`` on the staged second batch (the banner's REST example) -> ``fraud__deploy`` starts on the
   candidate event, runs shadow and canary, and the gateway serves v2;
2. ``diabetes__train`` waits for approval; in the browser: sign in, open the Models page, follow the pending
   approval into Airflow's required-actions page and approve (screenshots in ``test-artifacts/stack/``); the
   approval is recorded with the UI's user; ``diabetes__deploy`` rolls the regressor out;
3. ``fraud__rollback`` -> the gateway serves v1 again;
4. SIGINT (Ctrl-C) stops every process the command started (no orphans: each one seen before the signal is
   gone, and no process carries the stack's environment marker — Airflow's task processes run in process
   groups of their own), exit 0; a second start is warm (no migration, no seed), keeps the registry and run
   history, and SIGTERM stops it as cleanly.

The command's "every component healthy in N s (fresh|warm start)" lines are the ``make up`` timing figures.
Needs Chromium and ``npm ci --prefix tools/browser`` for step 2: skipped without them, failed when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_support import assert_screenshots, browser_node, run_browser
from live_airflow import wait_exit_event_consumed

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "stack"
READY_TIMEOUT_S = 600.0
RUN_TIMEOUT_S = 420.0
HEALTHY = re.compile(r"every component healthy in ([0-9.]+) s \((fresh|warm) start\)")


def log(message: str) -> None:
    print(f"[stack {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Up:
    """One ``airflow-mlops up`` process and what it printed."""

    home: Path
    ports: dict[str, int]
    proc: subprocess.Popen[bytes]
    out: Path

    @property
    def airflow(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow']}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def mlflow(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def password(self) -> str:
        return str(json.loads((self.home / "airflow" / "stack_secrets.json").read_text())["password"])

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_healthy(self) -> tuple[float, str]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            found = HEALTHY.search(self.text())
            if found:
                return float(found.group(1)), found.group(2)
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited with {self.proc.returncode}:\n{self.text()[-4000:]}")
            time.sleep(1.0)
        raise TimeoutError(f"the stack was not healthy in {READY_TIMEOUT_S:.0f} s:\n{self.text()[-4000:]}")

    def processes(self) -> list[Any]:
        import psutil

        return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]

    def stop(self, sig: int, timeout: float = 90.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def shutdown(self) -> None:
        """Teardown: stop it as a user would, then end whatever it left (a failed test must not leak a stack)."""
        from airflow_mlops.examples.stack import marked_processes, terminate

        if self.proc.poll() is None:
            try:
                self.stop(signal.SIGINT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        terminate(marked_processes(self.home))


def start_up(home: Path, ports: dict[str, int], out: Path) -> Up:
    args = [str(Path(sys.executable).with_name("airflow-mlops")), "up", "--home", str(home)]
    args += ["--dags-folder", str(REPO / "dags"), "--traffic-rate", "15"]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with out.open("ab") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    return Up(home, ports, proc, out)


def orphans(seen: list[Any], home: Path) -> list[str]:
    """Processes seen before the stop that still run, and any process with the stack's environment marker."""
    import psutil

    from airflow_mlops.examples.stack import marked_processes

    alive = []
    for proc in [*seen, *marked_processes(home)]:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            continue
    return alive


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different loopback ports that were free a moment ago (held together while chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("stack")
    ports = dict(zip(("airflow", "mlflow", "gateway"), distinct_free_ports(3), strict=True))
    up = start_up(root / "home", ports, root / "up.out")
    try:
        seconds, kind = up.wait_healthy()
        log(f"make up: every component healthy in {seconds:.1f} s ({kind} start)")
        assert kind == "fresh"
        yield up
    finally:
        up.shutdown()
        print(f"--- up output ---\n{up.text()[-6000:]}", flush=True)


def api_client(up: Up) -> httpx.Client:
    token = httpx.post(
        f"{up.airflow}/auth/token", json={"username": "admin", "password": up.password}, timeout=30.0
    ).json()["access_token"]
    return httpx.Client(base_url=up.airflow, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)


def trigger(api: httpx.Client, dag_id: str, conf: dict[str, Any] | None = None) -> str:
    response = api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
    assert response.status_code == 200, response.text
    return str(response.json()["dag_run_id"])


def task_states(api: httpx.Client, dag_id: str, run_id: str) -> dict[str, Any]:
    tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return {ti["task_id"]: ti["state"] for ti in tis}


def wait_run(api: httpx.Client, up: Up, dag_id: str, run_id: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        if state == "success":
            return
        assert state != "failed", f"{dag_id} {run_id} failed: {task_states(api, dag_id, run_id)}"
        assert up.proc.poll() is None, up.text()[-3000:]
        time.sleep(2.0)
    raise TimeoutError(f"{dag_id} {run_id} not done: {task_states(api, dag_id, run_id)}")


def wait_new_run(api: httpx.Client, dag_id: str, known: set[str]) -> str:
    """The run of ``dag_id`` that an Asset event started (one not in ``known``)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
        new = [r["dag_run_id"] for r in runs if r["dag_run_id"] not in known]
        if new:
            return str(new[0])
        time.sleep(2.0)
    raise TimeoutError(f"no new {dag_id} run")


def run_ids(api: httpx.Client, dag_id: str) -> set[str]:
    return {r["dag_run_id"] for r in api.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]}


def all_run_ids(api: httpx.Client) -> set[tuple[str, str]]:
    response = api.post("/api/v2/dags/~/dagRuns/list", json={"page_limit": 1000})
    assert response.status_code == 200, response.text
    return {(r["dag_id"], r["dag_run_id"]) for r in response.json()["dag_runs"]}


def wait_serving(up: Up, model: str, version: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    ready: Any = None
    while time.monotonic() < deadline:
        ready = httpx.get(f"{up.gateway}/ready", timeout=5.0).json()
        if ready["models"][model]["champion"] == version:
            return
        time.sleep(0.5)
    raise AssertionError(f"gateway does not serve {model} v{version}: {ready}")


def wait_pending_approval(api: httpx.Client, up: Up, dag_id: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        pending = api.get(f"/api/v2/dags/{dag_id}/dagRuns/~/hitlDetails", params={"response_received": "false"})
        for detail in pending.json()["hitl_details"]:
            ti = detail["task_instance"]
            if ti["dag_run_id"] == run_id and ti["task_id"] == "approve" and ti["state"] == "awaiting_input":
                # answer only once the scheduler consumed the deferral's event (apache/airflow#67287)
                wait_exit_event_consumed(up.home / "logs" / "scheduler.log", dag_id, run_id, "approve")
                return dict(detail)
        assert api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"] == "running"
        time.sleep(2.0)
    raise TimeoutError(f"{dag_id} {run_id} never waited for approval: {task_states(api, dag_id, run_id)}")


def test_train_deploy_approve_and_roll_back_in_the_live_stack(stack: Up) -> None:
    import mlflow

    node = browser_node()  # before anything moves: a skip must not leave the stack half-way through the story
    began = time.monotonic()
    api = api_client(stack)
    staged = stack.home / "data" / "fraud" / "transactions_batch_002.csv"
    assert staged.is_file() and str(staged) in stack.text(), "the banner's REST example names the staged batch"
    deploys = run_ids(api, "fraud__deploy")

    train = trigger(api, "fraud__train", {"data_uri": str(staged)})
    diabetes = trigger(api, "diabetes__train")
    wait_run(api, stack, "fraud__train", train)
    deploy = wait_new_run(api, "fraud__deploy", deploys)
    log(f"fraud__train done after {time.monotonic() - began:.0f} s; {deploy} started on the candidate event")

    pending = wait_pending_approval(api, stack, "diabetes__train", diabetes)
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    result = run_browser(
        node,
        {
            "base": stack.airflow,
            "username": "admin",
            "password": stack.password,
            "model": "diabetes",
            "expect": ["champion v1 100%"],
            "approve": True,
            "approvalSubject": pending["subject"],
            "artifacts": str(ARTIFACTS),
        },
    )
    log(f"browser: {result.get('steps')}")
    assert result["ok"], result.get("error")
    answered = api.get(f"/api/v2/dags/diabetes__train/dagRuns/{diabetes}/taskInstances/approve/-1/hitlDetails").json()
    assert answered["chosen_options"] == ["Approve"] and answered["responded_by_user"]["name"] == "admin", answered
    diabetes_deploys = run_ids(api, "diabetes__deploy")
    wait_run(api, stack, "diabetes__train", diabetes)
    assert_screenshots(ARTIFACTS, "models-page.png", "approval-pending.png", "approval-done.png")

    wait_run(api, stack, "fraud__deploy", deploy)
    wait_serving(stack, "fraud", "2")
    log(f"fraud v2 serving after {time.monotonic() - began:.0f} s (shadow, canary 10/50/100 %)")
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow, registry_uri=stack.mlflow)
    assert client.get_model_version("diabetes", "2").tags["mlops.approved_by"] == "admin"
    diabetes_deploy = wait_new_run(api, "diabetes__deploy", diabetes_deploys)
    wait_run(api, stack, "diabetes__deploy", diabetes_deploy)
    wait_serving(stack, "diabetes", "2")
    log(f"diabetes v2 (approved in the browser) serving after {time.monotonic() - began:.0f} s")

    rollback = trigger(api, "fraud__rollback", {"version": "previous"})
    wait_run(api, stack, "fraud__rollback", rollback)
    wait_serving(stack, "fraud", "1")
    log(f"fraud rolled back to v1 after {time.monotonic() - began:.0f} s")
    served = httpx.get(f"{stack.gateway}/metrics", timeout=5.0).text
    assert 'model="fraud"' in served and 'model="diabetes"' in served  # the traffic generator's requests


def test_ctrl_c_stops_every_process_and_a_second_start_reuses_the_state(stack: Up) -> None:
    """Runs on its own too: it records what the first start serves and ran before stopping it."""
    champion = httpx.get(f"{stack.gateway}/ready", timeout=5.0).json()["models"]["fraud"]["champion"]
    runs = all_run_ids(api_client(stack))
    assert runs, "the scheduler ran nothing (the monitors are due at once after the start)"
    seen = stack.processes()
    assert len(seen) >= 8, [p.cmdline() for p in seen]  # up, mlflow, 4 Airflow components, gateway, traffic
    assert stack.stop(signal.SIGINT) == 0, stack.text()[-3000:]
    assert orphans(seen, stack.home) == []

    again = start_up(stack.home, stack.ports, stack.out.with_name("up-warm.out"))
    try:
        seconds, kind = again.wait_healthy()
        log(f"make up: every component healthy in {seconds:.1f} s ({kind} start)")
        assert kind == "warm"
        assert "airflow db migrate" not in again.text() and "seeding" not in again.text()
        wait_serving(again, "fraud", champion)  # the registry of the first start, as it was
        api = api_client(again)
        assert runs <= all_run_ids(api), "the first start's runs are kept"
        seen = again.processes()
        assert again.stop(signal.SIGTERM) == 0, again.text()[-3000:]
        assert orphans(seen, again.home) == []
    finally:
        again.shutdown()
