"""``make up``: the whole project live on one machine, on loopback, with embedded defaults (no Docker).

What runs, each in its own process group with its output in ``<home>/logs/<name>.log``:

- ``mlflow``: ``mlflow server`` on SQLite (``<home>/mlflow.db``), artifacts in ``<home>/mlartifacts``, its UI;
- ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``: Airflow 3 with LocalExecutor on SQLite
  (``<home>/airflow/airflow.db``), as ``airflow standalone`` runs it, and the simple auth manager;
- ``gateway``: ``airflow-mlops serve`` for the example models (prediction log in ``<home>/prediction-log``);
- ``traffic``: ``airflow-mlops traffic``, requests and delayed labels for each model.

The example configs are copied to ``<home>/configs`` with minutes-long windows turned into seconds. On the first
start each model's v1 is trained with the train operators (outside Airflow: a seed, so no approval is asked
and no deploy runs) and made champion, audited as ``make up``; fraud's second batch is staged for the REST
example. SIGINT, SIGTERM or SIGHUP stop every process group (SIGTERM, then SIGKILL after a grace period) and
then every process that carries the stack's marker in its environment (``settings.UP_HOME_ENV``; Airflow
puts each task in a process group of its own): nothing keeps running. A lock on ``<home>/.lock`` keeps a
second ``up`` off the same home, and leftovers of an ``up`` that was killed outright are stopped on the next
start. A second start reuses ``<home>`` (no migration, no seed). The command prints the seconds from start
to every component healthy, fresh or warm.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from airflow_mlops import settings

#: The example models the stack serves (their configs in ``dags/configs``).
MODELS = ("fraud", "diabetes")
#: The simple auth manager's user (role admin); its password is generated once per home.
USER = "admin"
#: Rollout windows of seconds, not hours. 10 s rather than 5: a deferred window that ends before the
#: scheduler has seen the task defer fails the task in Airflow 3.3 (apache/airflow#67287).
STACK_ROLLOUT = {
    "shadow": {"enabled": True, "duration": 10, "min_requests": 30, "min_agreement": 0.6},
    "canary": {
        "steps": [10, 50, 100],
        "step_duration": 10,
        "check_interval": 2,
        "max_error_rate": 0.02,
        "min_requests": 5,
    },
}
STACK_MONITORING = {"schedule": "*/15 * * * *", "window": "15m", "cooldown": "1h"}
STOP_GRACE_S = 10.0
READY_TIMEOUT_S = 600.0
AIRFLOW_COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
#: Environment variables of the calling shell the stack does not pass on.
_NOT_INHERITED = ("AIRFLOW_", "MLFLOW_")
#: Set in every process the stack starts (and so in their children): how leftovers are found.
MARKER = settings.UP_HOME_ENV
_HEALTH_KEYS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


class StackError(RuntimeError):
    """The stack cannot start or a component died; the message says which and where its log is."""


class _Stopped(Exception):
    """SIGINT/SIGTERM arrived while the stack was starting."""


@dataclass(frozen=True)
class Ports:
    airflow: int = 8080
    mlflow: int = 5000
    gateway: int = 8001


@dataclass
class Component:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


@dataclass
class StackLayout:
    """Where everything of one stack lives under ``home``."""

    home: Path
    dags_folder: Path
    ports: Ports = field(default_factory=Ports)

    def __post_init__(self) -> None:
        self.home = self.home.resolve()
        self.dags_folder = self.dags_folder.resolve()

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def airflow_db(self) -> Path:
        return self.airflow_home / "airflow.db"

    @property
    def configs(self) -> Path:
        return self.home / "configs"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.airflow_home / "stack_secrets.json"

    @property
    def passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    @property
    def seeded_marker(self) -> Path:
        return self.home / ".seeded"

    @property
    def migrated_marker(self) -> Path:
        """Written once ``airflow db migrate`` succeeded: a start without it migrates (again)."""
        return self.airflow_home / ".migrated"

    def url(self, component: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, component)}"

    @property
    def lock_file(self) -> Path:
        return self.home / ".lock"

    def data_folder(self, model: str) -> Path:
        return self.home / "data" / model

    def staged_batch(self) -> Path:
        """Fraud's second batch: the ``data_uri`` of the REST example (under the config's data folder)."""
        return staged_batch(self.home)


def staged_batch(home: Path) -> Path:
    return home / "data" / "fraud" / "transactions_batch_002.csv"


def stack_config(layout: StackLayout, model: str) -> tuple[dict[str, Any], Path]:
    """The shipped config of ``model`` for the stack (data in the stack's folder, short windows, the gateway),
    and the shipped data file it is seeded from."""
    source = layout.dags_folder / "configs" / f"{model}.yaml"
    raw: dict[str, Any] = yaml.safe_load(source.read_text())
    shipped = (source.parent / raw["data"]["uri"]).resolve()
    raw["data"]["uri"] = str(layout.data_folder(model))  # a folder: a retrain takes the newest file
    if raw.get("gates", {}).get("behaviour"):
        raw["gates"]["behaviour"]["cases"] = str(source.parent / raw["gates"]["behaviour"]["cases"])
    raw["schedule"] = None  # trained on demand (REST, UI) and on drift events, not on a calendar
    raw["rollout"] = {**raw.get("rollout", {}), **json.loads(json.dumps(STACK_ROLLOUT))}
    raw["monitoring"] = {**raw.get("monitoring", {}), **STACK_MONITORING}
    raw["serving"] = {"prediction_log": str(layout.home / "prediction-log"), "gateway_url": layout.url("gateway")}
    return raw, shipped


def prepare(layout: StackLayout) -> None:
    """Folders, configs, data and credentials; existing state (databases, data, secrets) is kept."""
    layout.home.mkdir(parents=True, exist_ok=True)
    layout.airflow_home.mkdir(mode=0o700, exist_ok=True)  # the credentials live here
    for folder in (layout.configs, layout.logs, layout.home / "traffic"):
        folder.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        raw, shipped = stack_config(layout, model)
        first = layout.data_folder(model) / shipped.name
        if not first.exists():
            first.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shipped, first)
        (layout.configs / f"{model}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _write_traffic_rows(layout)
    if not layout.secrets_file.exists():
        values = {
            "password": secrets.token_urlsafe(12),
            "jwt_secret": secrets.token_urlsafe(64),
            "api_secret_key": secrets.token_urlsafe(32),
        }
        _write_private(layout.secrets_file, json.dumps(values))
    _write_private(layout.passwords_file, json.dumps({USER: stored_secrets(layout)["password"]}))


def stored_secrets(layout: StackLayout) -> dict[str, str]:
    """The stack's generated credentials; a damaged file is named (delete it to get new ones)."""
    try:
        values = json.loads(layout.secrets_file.read_text())
        return {key: str(values[key]) for key in ("password", "jwt_secret", "api_secret_key")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StackError(f"{layout.secrets_file}: unreadable ({exc}); delete it to generate new credentials") from exc


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, whole or not at all (a temporary file, then a rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _write_traffic_rows(layout: StackLayout) -> None:
    from airflow_mlops.examples.datasets import diabetes_frame, fraud_batch

    rows = layout.home / "traffic"
    if not (rows / "fraud.csv").exists():
        fraud_batch(3).to_csv(rows / "fraud.csv", index=False)  # transactions no version was trained on
    if not (rows / "diabetes.csv").exists():
        diabetes_frame().sample(frac=1.0, random_state=3).to_csv(rows / "diabetes.csv", index=False)


def stack_environment(layout: StackLayout) -> dict[str, str]:
    """Environment of every component (Airflow reads its configuration from it)."""
    stored = stored_secrets(layout)
    mlflow_conn = {"conn_type": "mlflow", "host": layout.url("mlflow"), "extra": {"ui_url": layout.url("mlflow")}}
    bin_dir = str(Path(sys.executable).parent)
    # the caller's own Airflow/MLflow settings (another deployment's database, connections) stay out
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    return {
        **inherited,
        "AIRFLOW_HOME": str(layout.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(layout.dags_folder),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{layout.airflow_db}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(layout.passwords_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": stored["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": stored["api_secret_key"],
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(layout.ports.airflow),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": layout.url("airflow"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{layout.url('airflow')}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(mlflow_conn),
        **settings.environ(config_dir=layout.configs, state_db=f"sqlite:///{layout.home / 'state.db'}"),
        "MLFLOW_TRACKING_URI": layout.url("mlflow"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # a proxy of the calling shell must not see the stack's loopback calls
        "NO_PROXY": ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("NO_PROXY")])),
        "no_proxy": ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("no_proxy")])),
        MARKER: str(layout.home),
    }


def port_problems(ports: Ports) -> list[str]:
    """Ports another process already listens on (checked before anything starts)."""
    problems = []
    for name, port in (("airflow", ports.airflow), ("mlflow", ports.mlflow), ("gateway", ports.gateway)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # as the servers bind: a port a stopped server left in TIME_WAIT is free, a listening one is not
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                problems.append(
                    f"port {port} ({name}) is in use on 127.0.0.1: stop what listens there or pass --{name}-port"
                )
    return problems


class LocalStack:
    """Start, watch and stop the stack's processes (see the module docstring).

    :param layout: Where the stack lives and which ports it uses.
    :param traffic_rate: Requests per second per model from the traffic generator (0: no generator).
    :param out: Where the banner and status lines go.
    """

    def __init__(self, layout: StackLayout, *, traffic_rate: float = 10.0, out: IO[str] | None = None) -> None:
        self.layout = layout
        self.traffic_rate = traffic_rate
        self.out = out or sys.stdout
        self.components: dict[str, Component] = {}
        self.stopping = threading.Event()
        self.env: dict[str, str] = {}
        self.started = time.monotonic()
        self.fresh = not (layout.migrated_marker.exists() and layout.seeded_marker.exists())
        self._lock: IO[bytes] | None = None

    def say(self, text: str) -> None:
        print(f"[up {time.monotonic() - self.started:6.1f}s] {text}", file=self.out, flush=True)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, print the banner, watch until a signal or a component's death; stop everything."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stopping.set())
        try:
            self._take_home()
        except StackError as exc:
            print(f"up: {exc}", file=sys.stderr)
            return 2
        problems = port_problems(self.layout.ports)
        if problems:
            for problem in problems:
                print(f"up: {problem}", file=sys.stderr)
            return 2
        try:
            self.start()
            self.banner()
            return self.watch()
        except _Stopped:
            self.say("stopping (signal received while starting)")
            return 0
        except StackError as exc:
            print(f"up: {exc}", file=sys.stderr)
            return 1
        finally:
            self.stop()

    def _take_home(self) -> None:
        """Lock ``home`` for this process; stop what an ``up`` killed outright (SIGKILL, OOM) left running."""
        self.layout.home.mkdir(parents=True, exist_ok=True)
        self._lock = self.layout.lock_file.open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(f"another airflow-mlops up is running on {self.layout.home}") from None
        leftovers = marked_processes(self.layout.home)
        if leftovers:
            self.say(f"stopping {len(leftovers)} processes an earlier up on this home left running")
            terminate(leftovers)

    def start(self) -> None:
        self.say(f"{'fresh start' if self.fresh else 'warm start (reusing state)'} in {self.layout.home}")
        prepare(self.layout)
        self.env = stack_environment(self.layout)
        bin_dir = Path(sys.executable).parent
        if self.fresh:
            self.say("airflow db migrate (SQLite)")
            self._run_once("db-migrate", [str(bin_dir / "airflow"), "db", "migrate"])
            self.layout.migrated_marker.write_text("migrated\n")
        self._spawn("mlflow", self._mlflow_args(bin_dir))
        for name in AIRFLOW_COMPONENTS:
            if name != "scheduler":
                self._spawn_airflow(bin_dir, name)
        self._wait("mlflow", lambda: _http_ok(f"{self.layout.url('mlflow')}/health"))
        self.say(f"MLflow ready at {self.layout.url('mlflow')}")
        if not self.layout.seeded_marker.exists():
            self.say("seeding: v1 of " + ", ".join(MODELS) + " trained and made champion (first start only)")
            self._run_once(
                "seed", [sys.executable, "-m", "airflow_mlops.examples.stack", "seed", str(self.layout.home)]
            )
            self.layout.seeded_marker.write_text("seeded\n")
        self._spawn_airflow(bin_dir, "scheduler")  # after the seed: no monitor run finds a model without champion
        self._spawn("gateway", self._gateway_args(bin_dir))
        if self.traffic_rate > 0:
            self._spawn("traffic", self._traffic_args(bin_dir))
        self._wait("airflow", self._airflow_healthy)
        self.say(f"Airflow ready at {self.layout.url('airflow')}")
        self._wait("gateway", self._gateway_serving)
        self.say(f"gateway serving {', '.join(MODELS)} at {self.layout.url('gateway')}")
        self.ready_s = time.monotonic() - self.started

    def watch(self) -> int:
        """Until SIGINT/SIGTERM: 0; a component that exits by itself stops the stack: 1."""
        while not self.stopping.wait(1.0):
            for component in self.components.values():
                if component.proc is not None and component.proc.poll() is not None:
                    self.say(
                        f"{component.name} exited with {component.proc.returncode}; stopping the stack. Its log "
                        f"({self._log_path(component.name)}) ends:\n{_tail(self._log_path(component.name))}"
                    )
                    return 1
        self.say("stopping (signal received)")
        return 0

    def stop(self) -> None:
        """Stop every component: SIGTERM to each process group, SIGKILL after the grace, then every process
        still carrying the stack's marker (tasks in their own groups, children of a component that died)."""
        order = ["traffic", "gateway", "api-server", "triggerer", "scheduler", "dag-processor", "mlflow"]
        running = [self.components[name] for name in order if name in self.components]
        running += [c for name, c in self.components.items() if name not in order]
        for component in running:
            _signal_group(component.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for component in running:
            if component.proc is None:
                continue
            try:
                component.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(component.proc, signal.SIGKILL)  # also members of a group whose leader is gone
            try:
                component.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"up: {component.name} (pid {component.proc.pid}) survived SIGKILL", file=sys.stderr)
        terminate(marked_processes(self.layout.home))
        for component in running:
            if component.log is not None:
                component.log.close()
        if running:
            self.say(f"stopped {len(running)} processes; state kept in {self.layout.home} (make up reuses it)")
        self.components.clear()

    # --- processes ------------------------------------------------------------------------------------------

    def _mlflow_args(self, bin_dir: Path) -> list[str]:
        artifacts = self.layout.home / "mlartifacts"
        return [
            str(bin_dir / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.layout.home / 'mlflow.db'}",
            "--default-artifact-root",
            str(artifacts),  # local paths: the tasks and the gateway on this machine read them directly
            "--no-serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.layout.ports.mlflow),
            "--workers",
            "1",
        ]

    def _gateway_args(self, bin_dir: Path) -> list[str]:
        models = [arg for model in MODELS for arg in ("--model", model)]
        return [
            str(bin_dir / "airflow-mlops"),
            "serve",
            *models,
            "--tracking-uri",
            self.layout.url("mlflow"),
            "--log-root",
            str(self.layout.home / "prediction-log"),
            "--port",
            str(self.layout.ports.gateway),
            "--poll-interval",
            "1",
            "--flush-interval",
            "1",
        ]

    def _traffic_args(self, bin_dir: Path) -> list[str]:
        return [
            str(bin_dir / "airflow-mlops"),
            "traffic",
            "--gateway",
            self.layout.url("gateway"),
            "--config-dir",
            str(self.layout.configs),
            "--rows",
            str(self.layout.home / "traffic"),
            "--rate",
            str(self.traffic_rate),
        ]

    def _spawn_airflow(self, bin_dir: Path, name: str) -> None:
        args = [str(bin_dir / "airflow"), name]
        if name == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.layout.ports.airflow)]
        elif name in ("scheduler", "triggerer"):
            # their log servers would listen on every interface (8793/8794); the api-server reads the
            # task logs from this machine's files instead
            args.append("--skip-serve-logs")
        self._spawn(name, args)

    def _log_path(self, name: str) -> Path:
        return self.layout.logs / f"{name}.log"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self._log_path(name).open("ab")
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.layout.home, start_new_session=True
        )
        self.components[name] = Component(name, proc, log)

    def _run_once(self, name: str, args: list[str]) -> None:
        """Run a step to its end (migration, seed); a signal meanwhile stops it; a failure names its log."""
        self._spawn(name, args)
        component = self.components[name]
        assert component.proc is not None
        while component.proc.poll() is None:
            if self.stopping.wait(0.5):
                raise _Stopped
            self._check_alive(skip=name)
        del self.components[name]
        assert component.log is not None
        component.log.close()
        if component.proc.returncode != 0:
            path = self._log_path(name)
            raise StackError(f"{name} failed (exit {component.proc.returncode}); {path} ends:\n{_tail(path)}")

    def _check_alive(self, skip: str | None = None) -> None:
        for component in self.components.values():
            if component.name != skip and component.proc is not None and component.proc.poll() is not None:
                path = self._log_path(component.name)
                raise StackError(
                    f"{component.name} exited with {component.proc.returncode}; {path} ends:\n{_tail(path)}"
                )

    def _wait(self, what: str, ready: Any) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stopping.is_set():
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise StackError(f"{what} not ready after {READY_TIMEOUT_S:.0f} s; logs in {self.layout.logs}")
            self.stopping.wait(0.5)
        raise _Stopped

    def _airflow_healthy(self) -> bool:
        health = _http_json(f"{self.layout.url('airflow')}/api/v2/monitor/health")
        return isinstance(health, dict) and all(
            (health.get(key) or {}).get("status") == "healthy" for key in _HEALTH_KEYS
        )

    def _gateway_serving(self) -> bool:
        ready = _http_json(f"{self.layout.url('gateway')}/ready")
        models = ready.get("models", {}) if isinstance(ready, dict) else {}
        return all(isinstance(models.get(m), dict) and models[m].get("champion") for m in MODELS)

    # --- what a person needs --------------------------------------------------------------------------------

    def banner(self) -> None:
        layout = self.layout
        airflow, mlflow_url, gateway = layout.url("airflow"), layout.url("mlflow"), layout.url("gateway")
        password = stored_secrets(layout)["password"]
        kind = "fresh" if self.fresh else "warm"
        token = (
            f"TOKEN=$(curl -s -X POST {airflow}/auth/token -H 'Content-Type: application/json' "
            f'-d \'{{"username": "{USER}", "password": "{password}"}}\' '
            "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])')"
        )
        api = "-H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json'"
        lines = [
            f"every component healthy in {self.ready_s:.1f} s ({kind} start)",
            "",
            f"  Airflow UI     {airflow}   (login {USER} / {password})",
            f"  Models page    {airflow}/plugin/models",
            f"  MLflow UI      {mlflow_url}",
            f"  gateway        {gateway}/v1/models/<model>/predict   (/ready, /metrics)",
            f"  logs           {layout.logs}",
            "",
            "  Try it (REST):",
            f"    {token}",
            "    # train fraud on its second batch; fraud__deploy then rolls it out (shadow, canary 10/50/100 %)",
            f"    curl -X POST {airflow}/api/v2/dags/fraud__train/dagRuns {api} "
            f'-d \'{{"logical_date": null, "conf": {{"data_uri": "{layout.staged_batch()}"}}}}\'',
            "    # train diabetes: its candidate waits for a human (Airflow UI > Required Actions, or the Models page)",
            f"    curl -X POST {airflow}/api/v2/dags/diabetes__train/dagRuns {api} -d '{{\"logical_date\": null}}'",
            "    # ... or answer that approval over REST (RUN_ID from the run above)",
            f"    curl -X PATCH {airflow}/api/v2/dags/diabetes__train/dagRuns/$RUN_ID/taskInstances/approve/-1/"
            f'hitlDetails {api} -d \'{{"chosen_options": ["Approve"], "params_input": {{}}}}\'',
            "    # roll fraud back to its previous champion",
            f"    curl -X POST {airflow}/api/v2/dags/fraud__rollback/dagRuns {api} "
            '-d \'{"logical_date": null, "conf": {"version": "previous"}}\'',
            f"    curl -s {gateway}/ready",
            "",
            "  Ctrl-C stops everything; the next `make up` starts from this state.",
        ]
        for line in lines:
            print(line if not line or line.startswith(" ") else f"[up] {line}", file=self.out, flush=True)


def _signal_group(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Signal the process group ``proc`` leads; it outlives its leader while any member runs."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def marked_processes(home: Path) -> list[Any]:
    """Every running process (but this one) the stack in ``home`` started, directly or not.

    Found by the marker in its environment, or — for Airflow's task and worker processes, which rewrite their
    command line over the environment's memory (setproctitle), so it reads empty — by running this Python
    with ``home`` as its working directory, as every component and its children do.
    """
    import psutil

    python = os.path.realpath(sys.executable)
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER) == str(home) or (
                proc.cwd() == str(home) and os.path.realpath(proc.exe()) == python
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def terminate(processes: list[Any], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace`` seconds."""
    import psutil

    for proc in processes:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)


def _http_json(url: str) -> Any:
    import httpx

    try:
        return httpx.get(url, timeout=3.0).json()
    except (httpx.HTTPError, ValueError):
        return None


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"


def seed(home: Path) -> int:
    """Train v1 of each stack model on its shipped data with the train operators and make it champion.

    Runs in the stack's environment (``MLFLOW_TRACKING_URI`` is the stack's MLflow server). A model that has a
    champion already is left alone, so an interrupted seed can run again.
    """
    import mlflow

    from airflow_mlops.deploy.targets import LocalGatewayTarget

    client = mlflow.MlflowClient()
    target = LocalGatewayTarget.from_options(client=client, state_url=settings.state_db_url())
    for model in MODELS:
        if client.search_registered_models(filter_string=f"name = '{model}'") and target.state(model).champion:
            continue
        config = home / "configs" / f"{model}.yaml"
        data = sorted((home / "data" / model).glob("*.csv"))[0]  # the shipped file, the only one at seed time
        version = _train_version(config)
        target.promote(model, version, actor="make up", reason="seed champion of the local stack")
        print(f"seed: {model} v{version} champion (trained on {data.name})", flush=True)
    staged = staged_batch(home)
    if not staged.exists():
        from airflow_mlops.examples.datasets import fraud_batch

        fraud_batch(2).to_csv(staged, index=False)
    return 0


class _SeedTaskInstance:
    """Stands in for the task instance when the seed runs the operators outside Airflow (they read no XCom)."""

    def xcom_pull(self, *_: Any, **__: Any) -> None:
        return None

    def xcom_push(self, *_: Any, **__: Any) -> None:
        return None


def _train_version(config: Path) -> str:
    """``fingerprint -> validate -> train -> register -> gate`` as ``<model>__train`` runs them, minus approval."""
    from collections import defaultdict
    from types import SimpleNamespace

    from airflow_mlops.operators.gates import GateModelOperator
    from airflow_mlops.operators.training import (
        FingerprintDataOperator,
        RegisterModelOperator,
        TrainModelOperator,
        ValidateDataOperator,
    )

    context: dict[str, Any] = {
        "dag_run": SimpleNamespace(run_id=f"seed__{config.stem}_v1"),
        "params": {},
        "ti": _SeedTaskInstance(),
        "outlet_events": defaultdict(lambda: SimpleNamespace(extra=None)),
    }
    for cls, task_id in (
        (FingerprintDataOperator, "fingerprint_data"),
        (ValidateDataOperator, "validate_data"),
        (TrainModelOperator, "train_model"),
        (RegisterModelOperator, "register_model"),
    ):
        cls(task_id=task_id, config_path=str(config)).execute(context)  # type: ignore[arg-type]
    gate = GateModelOperator(task_id="gate_model", config_path=str(config))
    return str(gate.execute(context)["version"])  # type: ignore[arg-type]


def run_up(home: Path, dags_folder: Path, ports: Ports, traffic_rate: float) -> int:
    """``airflow-mlops up`` (from the repository's root, where ``dags/`` holds the example configs)."""
    missing = [str(dags_folder / "configs" / f"{m}.yaml") for m in MODELS]
    missing = [path for path in missing if not Path(path).is_file()]
    if missing:
        print(
            f"up: --dags-folder {dags_folder}: missing {', '.join(missing)} (run it from the repository's root)",
            file=sys.stderr,
        )
        return 2
    return LocalStack(StackLayout(home, dags_folder, ports), traffic_rate=traffic_rate).run()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "seed":
        sys.exit(seed(Path(sys.argv[2])))
    print("usage: python -m airflow_mlops.examples.stack seed <home>", file=sys.stderr)
    sys.exit(2)
