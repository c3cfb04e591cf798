"""``make up``'s preparation without starting anything: configs, data, secrets, ports and the traffic sources."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_prepare_writes_valid_configs_with_short_windows_and_keeps_state_on_a_second_run(tmp_path: Path) -> None:
    from airflow_mlops.config.loader import config_files, load_configs
    from airflow_mlops.examples.stack import MODELS, Ports, StackLayout, prepare

    layout = StackLayout(tmp_path / "home", REPO / "dags", Ports(airflow=18080, mlflow=15000, gateway=18001))
    prepare(layout)

    result = load_configs(config_files(layout.configs))
    assert result.errors == {}
    configs = {loaded.name: loaded.config for loaded in result.configs}
    assert set(configs) == set(MODELS)
    for model, config in configs.items():
        assert config.schedule is None
        assert config.data.uri == str(layout.data_folder(model))
        shipped = REPO / "dags" / "data" / model
        assert sorted(p.name for p in layout.data_folder(model).iterdir()) == sorted(p.name for p in shipped.iterdir())
        assert config.serving.gateway_url == "http://127.0.0.1:18001"
        assert config.rollout.shadow.duration == 10 and config.rollout.canary.steps == [10.0, 50.0, 100.0]
        assert (layout.home / "traffic" / f"{model}.csv").is_file()
    assert configs["diabetes"].approval.required  # the approval a person answers in the stack
    secrets = json.loads(layout.secrets_file.read_text())
    assert len(secrets["password"]) >= 12 and len(secrets["jwt_secret"]) >= 64
    assert json.loads(layout.passwords_file.read_text()) == {"admin": secrets["password"]}
    assert oct(layout.secrets_file.stat().st_mode & 0o777) == "0o600"

    landed = layout.data_folder("fraud") / "transactions_batch_009.csv"
    landed.write_text("kept")
    prepare(layout)  # a second start: same secrets, data kept
    assert json.loads(layout.secrets_file.read_text()) == secrets
    assert landed.read_text() == "kept"


def test_a_port_in_use_is_named_before_anything_starts() -> None:
    from airflow_mlops.examples.stack import Ports, port_problems

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with socket.socket() as free_sock:
            free_sock.bind(("127.0.0.1", 0))
            free = free_sock.getsockname()[1]
        problems = port_problems(Ports(airflow=free, mlflow=busy, gateway=free))
    assert problems == [f"port {busy} (mlflow) is in use on 127.0.0.1: stop what listens there or pass --mlflow-port"]


def test_traffic_runs_for_each_rows_file_with_a_config_and_needs_the_target(tmp_path: Path) -> None:
    import pandas as pd

    from airflow_mlops.examples.stack import Ports, StackLayout, prepare
    from airflow_mlops.examples.traffic import TrafficGenerator, generators_from_folder

    layout = StackLayout(tmp_path / "home", REPO / "dags", Ports())
    prepare(layout)
    (layout.home / "traffic" / "unknown_model.csv").write_text("a,b\n1,2\n")
    generators = generators_from_folder("http://127.0.0.1:1", layout.configs, layout.home / "traffic", 5.0)
    assert sorted((g.model, g.target) for g in generators) == [("diabetes", "progression"), ("fraud", "is_fraud")]
    fraud = next(g for g in generators if g.model == "fraud")
    assert "is_fraud" not in fraud.rows[0] and set(fraud.labels) == {0, 1}
    with pytest.raises(ValueError, match=r"traffic for m: the rows have no target column 'y'"):
        TrafficGenerator("http://127.0.0.1:1", "m", pd.DataFrame({"x": [1]}), "y")


def _stack(tmp_path: Path) -> object:
    import io
    import os

    from airflow_mlops.examples.stack import MARKER, LocalStack, Ports, StackLayout

    layout = StackLayout(tmp_path / "home", REPO / "dags", Ports())
    layout.logs.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(layout, out=io.StringIO())
    stack.env = {**os.environ, MARKER: str(layout.home)}
    return stack


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_stop_ends_a_dead_components_children_and_processes_in_groups_of_their_own(tmp_path: Path) -> None:
    """A component died (its children live on in its group) and a task left for a session of its own, as
    Airflow's task processes do: stop() ends both, by group and by the stack's environment marker."""
    import signal
    import subprocess
    import sys

    from airflow_mlops.examples.stack import MARKER, marked_processes

    stack: Any = _stack(tmp_path)
    stack._spawn("component", ["sh", "-c", "sleep 300 & setsid sleep 301 & wait"])
    _wait_for(lambda: len(marked_processes(stack.layout.home)) == 3)
    stack.components["component"].proc.send_signal(signal.SIGKILL)
    stack.components["component"].proc.wait(timeout=10)
    assert len(marked_processes(stack.layout.home)) == 2  # both sleeps outlived their parent

    # a process that rewrote its environment (Airflow's task processes use setproctitle): found by its working
    # directory and interpreter
    clean_env = {k: v for k, v in stack.env.items() if k != MARKER}
    rewritten = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"],
        cwd=stack.layout.home,
        env=clean_env,
        start_new_session=True,
    )
    _wait_for(lambda: rewritten.pid in {p.pid for p in marked_processes(stack.layout.home)})

    stack.stop()

    assert marked_processes(stack.layout.home) == []
    rewritten.wait(timeout=10)


def test_one_up_per_home_and_leftovers_of_a_killed_up_are_stopped(tmp_path: Path) -> None:
    import subprocess

    from airflow_mlops.examples.stack import StackError, marked_processes

    first: Any = _stack(tmp_path)
    first._take_home()
    second: Any = _stack(tmp_path)
    with pytest.raises(StackError, match=r"^another airflow-mlops up is running on .*/home$"):
        second._take_home()
    first._lock.close()  # the first up is gone (killed: its lock went with it) ...
    leftover = subprocess.Popen(["sleep", "300"], env=first.env, start_new_session=True)  # ... a child stayed
    _wait_for(lambda: len(marked_processes(first.layout.home)) == 1)

    second._take_home()

    leftover.wait(timeout=20)  # ended (psutil reaped it: no exit status left to compare)
    assert marked_processes(first.layout.home) == []
    second._lock.close()
