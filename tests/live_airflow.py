"""A live Airflow 3 on loopback for system tests: scheduler, dag-processor, triggerer and api-server.

Each component is its own process (and process group) on a fresh PostgreSQL database, with its
output in ``<home>/components/<name>.log``; nothing is shared with the developer's Airflow.
``airflow standalone`` is not used: it leaves children running after SIGTERM.

.. code-block:: python

    with LiveAirflow(tmp / "airflow", dags_folder, {"AIRFLOW_MLOPS_CONFIG_DIR": str(configs)}) as airflow:
        airflow.wait_dag("fraud__monitor")
        run = airflow.trigger("fraud__monitor")
        airflow.wait_run("fraud__monitor", lambda r: r["dag_run_id"] == run["dag_run_id"] and r["state"] == "success")

``start()`` (create and migrate the database in the background) and ``wait_ready()`` (start the
components, wait until the health endpoint reports them) can also be called apart, so a test can
do its own setup while the database migrates. PostgreSQL unreachable: the test is skipped, or
failed when ``CI=true``.

With ``celery_workers`` the executor is CeleryExecutor on the machine's Redis (127.0.0.1:6379, its keys
under a prefix of this harness's own, deleted at stop) with Celery's results in the metadata database;
each named worker is one more component, ``airflow celery worker --queues <queues> --concurrency 1``,
logging to ``components/worker-<name>.log`` (each line of a task it took starts "Executing workload").
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
API_USER = "ci"
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
STOP_GRACE_S = 10.0
MIGRATE_TIMEOUT_S = 600.0
TERMINAL_STATES = frozenset({"success", "failed"})


def skip_or_fail(reason: str) -> NoReturn:
    """A missing service skips the test on a user's machine and fails it in CI (``CI=true``)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"


def wait_exit_event_consumed(
    scheduler_log: Path,
    dag_id: str,
    run_id: str,
    task_id: str,
    timeout: float = 120.0,
    check_alive: Callable[[], None] | None = None,
) -> float:
    """Wait for the scheduler's log line that it consumed a task's deferral-exit event (see
    :meth:`LiveAirflow.wait_exit_event_consumed`); return the seconds waited."""
    began = time.monotonic()
    needles = (
        "Received executor event with state success for task instance",
        f"dag_id='{dag_id}'",
        f"task_id='{task_id}'",
        f"run_id='{run_id}'",
    )
    while time.monotonic() - began < timeout:
        if check_alive is not None:
            check_alive()
        try:
            text = scheduler_log.read_text(errors="replace")
        except OSError:
            text = ""
        if any(all(needle in line for needle in needles) for line in text.splitlines()):
            return time.monotonic() - began
        time.sleep(0.5)
    raise TimeoutError(f"the scheduler never consumed the deferral exit of {dag_id}.{task_id} in {run_id}")


def _pg_admin() -> Any:
    try:
        import psycopg2
    except ImportError:
        skip_or_fail("psycopg2 is not installed (part of the `test` extra)")
    try:
        admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        skip_or_fail(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {exc}".strip())
    admin.autocommit = True
    return admin


def create_database(name: str) -> str:
    """A new, empty database on the local PostgreSQL (skipped, or failed in CI, when it is not reachable)."""
    admin = _pg_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    return name


def drop_database(name: str) -> None:
    """Drop a database made by :func:`create_database`, with any sessions still open on it."""
    admin = _pg_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def require_redis() -> None:
    """The local Redis answers (skipped, or failed in CI, when it does not)."""
    try:
        import redis
    except ImportError:
        skip_or_fail("redis is not installed (the `celery` extra brings it)")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()


def postgres_url(database: str) -> str:
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


class LiveAirflow:
    """Airflow's four long-running components on a fresh PostgreSQL database, stopped at exit.

    :param home: ``AIRFLOW_HOME`` (created); component logs go to ``home/components``, task logs to ``home/logs``.
    :param dags_folder: The DAG folder the dag-processor parses.
    :param env: Extra environment for every component (model config dir, connections, ...); it may override
        the harness's defaults (parallelism, intervals) but not the database, port, home or DAG folder.
    :param start_timeout: Seconds ``wait_ready`` waits for the migration, the api-server and the health report.
    :param celery_workers: Worker name -> comma-separated queues; given, the executor is CeleryExecutor.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        env: dict[str, str],
        *,
        start_timeout: float = 300.0,
        celery_workers: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.celery_workers = dict(celery_workers or {})
        self.dags_folder = Path(dags_folder)
        self.extra_env = dict(env)
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = f"airflow_{uuid.uuid4().hex[:12]}"
        self.password = secrets.token_urlsafe(16)
        self.log_dir = self.home / "components"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self._log_files: list[Any] = []
        self._db_created = False
        self._migrate: subprocess.Popen[bytes] | None = None
        self._migrate_thread: threading.Thread | None = None
        self._migrate_error: BaseException | None = None
        self._stopping = threading.Event()
        self._client: httpx.Client | None = None
        self.timings: dict[str, float] = {}
        self._started = time.monotonic()

    # --- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> LiveAirflow:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Create the database and run ``airflow db migrate`` in the background (``wait_ready`` waits for it)."""
        self._started = time.monotonic()
        self._create_database()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({API_USER: self.password}))
        bin_dir = str(Path(sys.executable).parent)
        defaults = {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
        }
        fixed = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (postgres_url(self.database)),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{API_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        if self.celery_workers:
            fixed.update(self._celery_env())
        self.env = {**os.environ, **defaults, **self.extra_env, **fixed}
        self._migrate_thread = threading.Thread(target=self._run_migrate, name="airflow-db-migrate", daemon=True)
        self._migrate_thread.start()

    @property
    def redis_prefix(self) -> str:
        return f"{self.database}:"

    def _celery_env(self) -> dict[str, str]:
        """CeleryExecutor on the local Redis, every key under this harness's prefix; results in the metadata DB."""
        require_redis()
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres_url(self.database)}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        }

    def _delete_redis_keys(self) -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
        try:
            keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def _create_database(self) -> None:
        try:  # Airflow 3 also opens an async engine on the metadata DB: postgresql -> postgresql+asyncpg
            import asyncpg  # noqa: F401
        except ImportError:
            skip_or_fail("asyncpg is not installed (Airflow 3's async engine needs it for PostgreSQL)")
        create_database(self.database)
        self._db_created = True

    def _drop_database(self) -> None:
        if self._db_created:
            drop_database(self.database)
            self._db_created = False

    def _run_migrate(self) -> None:
        started = time.monotonic()
        log_path = self.log_dir / "db-migrate.log"
        try:
            with log_path.open("wb") as log:
                self._migrate = subprocess.Popen(
                    [self._airflow, "db", "migrate"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.home,
                    start_new_session=True,
                )
                code = self._migrate.wait(timeout=MIGRATE_TIMEOUT_S)
            if code != 0 and not self._stopping.is_set():
                raise RuntimeError(f"airflow db migrate exited with {code}:\n{_tail(log_path)}")
            self.timings["db_migrate_s"] = time.monotonic() - started
        except BaseException as exc:  # surfaced by wait_ready
            self._migrate_error = exc

    @property
    def _airflow(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def wait_ready(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the migration, start the components, wait until all four are healthy; return the health."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        assert self._migrate_thread is not None, "call start() first"
        self._migrate_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._migrate_thread.is_alive():
            raise TimeoutError(f"airflow db migrate still running:\n{_tail(self.log_dir / 'db-migrate.log')}")
        if self._migrate_error is not None:
            raise self._migrate_error
        components_started = time.monotonic()
        for name in COMPONENTS:
            self._spawn(name)
        for worker, queues in self.celery_workers.items():
            self._spawn_worker(worker, queues)
        health = self._wait_healthy(deadline)
        for worker in self.celery_workers:
            self._wait_worker(worker, deadline)
        self.timings["components_ready_s"] = time.monotonic() - components_started
        self.timings["ready_s"] = time.monotonic() - self._started
        return health

    def _spawn(self, name: str) -> None:
        args = [self._airflow, name]
        if name == "api-server":
            args += ["--port", str(self.port), "--host", "127.0.0.1"]
        log = (self.log_dir / f"{name}.log").open("wb")
        self._log_files.append(log)
        self.procs[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.home, start_new_session=True
        )

    def _spawn_worker(self, name: str, queues: str) -> None:
        args = [self._airflow, "celery", "worker", "--queues", queues, "--concurrency", "1"]
        args += ["--celery-hostname", f"{name}@{self.database}", "--skip-serve-logs"]
        log = (self.log_dir / f"worker-{name}.log").open("wb")
        self._log_files.append(log)
        self.procs[f"worker-{name}"] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.home, start_new_session=True
        )

    def _wait_worker(self, name: str, deadline: float) -> None:
        """Celery logs "<name>@<host> ready." once the worker consumes its queues."""
        while time.monotonic() < deadline:
            self._check_alive()
            if f"{name}@{self.database} ready." in self.log_tail(f"worker-{name}", 200_000):
                return
            time.sleep(0.5)
        raise TimeoutError(f"Celery worker {name} not ready in time:\n{self.log_tail(f'worker-{name}')}")

    def worker_tasks(self, name: str) -> list[dict[str, Any]]:
        """The task instances one Celery worker took, from its "Executing workload" log lines (oldest first):
        ``dag_id``, ``task_id``, ``run_id``, ``map_index`` and ``queue`` of each."""
        text = self.log_tail(f"worker-{name}", 10_000_000)
        found = []
        for line in text.splitlines():
            if "Executing workload in Celery" not in line:
                continue
            fields = dict(re.findall(r"\b(task_id|dag_id|run_id|queue)='([^']*)'", line))
            index = re.search(r"\bmap_index=(-?\d+)", line)
            found.append({**fields, "map_index": int(index.group(1)) if index else -1})
        return found

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def _wait_healthy(self, deadline: float) -> dict[str, Any]:
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5.0)
                last = response.json() if response.status_code == 200 else response.text
                if isinstance(last, dict) and all(
                    (last.get(key) or {}).get("status") == "healthy" for key in ("metadatabase", *HEALTH_KEYS.values())
                ):
                    return last
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"Airflow not healthy in time (last health: {last}):\n{self.diagnostics()}")

    def stop(self) -> None:
        """Stop every component by process group (SIGTERM, SIGKILL after 10 s) and drop the database."""
        self._stopping.set()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._migrate is not None:
            self._kill_group(self._migrate, signal.SIGKILL)
        if self._migrate_thread is not None:
            self._migrate_thread.join(timeout=30)
        self._stop_components()
        if self.celery_workers:
            try:
                self._delete_redis_keys()
            except Exception as exc:  # teardown must not hide the test's own outcome
                print(f"LiveAirflow: could not delete Redis keys {self.redis_prefix}*: {exc}", file=sys.stderr)
        for log in self._log_files:
            log.close()
        self._log_files.clear()
        try:
            self._drop_database()
        except Exception as exc:  # teardown must not hide the test's own outcome
            print(f"LiveAirflow: could not drop database {self.database}: {exc}", file=sys.stderr)

    def _stop_components(self) -> None:
        descendants = self._descendants()
        for proc in self.procs.values():
            self._kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill_group(proc, signal.SIGKILL)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    print(f"LiveAirflow: pid {proc.pid} survived SIGKILL", file=sys.stderr)
        self.procs.clear()
        for child in descendants:  # task processes that left the components' process groups
            try:
                child.kill()
            except Exception:  # already gone
                pass

    def _descendants(self) -> list[Any]:
        try:
            import psutil
        except ImportError:
            return []
        found = []
        for proc in self.procs.values():
            try:
                found += psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                continue
        return found

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    # --- diagnostics ----------------------------------------------------------------------------------------

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return _tail(self.log_dir / f"{name}.log", chars)

    def diagnostics(self, chars: int = 2000) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_tail(name, chars)}" for name in self.procs)

    def task_log_tail(self, dag_id: str, run_id: str, task_id: str, chars: int = 4000) -> str:
        """The newest local task log of one task instance (any try, any map index)."""
        base = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        files = sorted(base.rglob("*.log"), key=lambda p: p.stat().st_mtime) if base.exists() else []
        return _tail(files[-1], chars) if files else f"<no log under {base}>"

    # --- REST -----------------------------------------------------------------------------------------------

    def token(self) -> str:
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": API_USER, "password": self.password}, timeout=30.0
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST /auth/token: {response.status_code} {response.text}")
        return str(response.json()["access_token"])

    def client(self) -> httpx.Client:
        """An httpx client on the api-server with a bearer token (one per harness, reused)."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=30.0
            )
        return self._client

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client().request(method, path, **kwargs)
        if response.status_code == 401:  # token expired: once more with a new one
            self.client().headers["Authorization"] = f"Bearer {self.token()}"
            response = self.client().request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        response = self.client().get(f"/api/v2/dags/{dag_id}")
        return dict(response.json()) if response.status_code == 200 else None

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/api/v2/importErrors").get("import_errors", []))

    def wait_dag(self, dag_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the dag-processor has serialized ``dag_id``; fail early on import errors."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            dag = self.dag(dag_id)
            if dag is not None:
                return dag
            errors = self.import_errors()
            if errors:
                raise RuntimeError(f"DAG import errors while waiting for {dag_id}: {errors}")
            time.sleep(1.0)
        raise TimeoutError(f"DAG {dag_id} not parsed in {timeout} s:\n{self.log_tail('dag-processor')}")

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return dict(self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}))

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return dict(self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body))

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first."""
        data = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "id", "limit": 100})
        return list(data["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        data = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return list(data["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``task_id`` (``task_id[i]`` for mapped instances) -> state."""
        out: dict[str, str | None] = {}
        for ti in self.task_instances(dag_id, run_id):
            key = ti["task_id"] if ti.get("map_index", -1) in (-1, None) else f"{ti['task_id']}[{ti['map_index']}]"
            out[key] = ti.get("state")
        return out

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The Asset events that triggered a run."""
        data = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")
        return list(data["asset_events"])

    def wait_run(
        self,
        dag_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        *,
        interval: float = 1.0,
        fail_on: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The first run of ``dag_id`` (oldest first) matching ``predicate``, polled until ``timeout``.

        ``fail_on`` ends the wait early (with the run's task states) when a run matches it, e.g. a failed run.
        """
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self._check_alive()
            runs = self.runs(dag_id)
            for run in runs:
                if predicate(run):
                    return run
                if fail_on is not None and fail_on(run):
                    raise AssertionError(self.describe_run(dag_id, run))
            time.sleep(interval)
        described = "\n".join(self.describe_run(dag_id, r) for r in runs[-3:])
        raise TimeoutError(f"no {dag_id} run matched in {timeout} s; newest runs:\n{described}")

    def wait_run_done(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait until one run is in a terminal state; return it."""
        return self.wait_run(
            dag_id, lambda r: r["dag_run_id"] == run_id and r["state"] in TERMINAL_STATES, timeout, interval=1.0
        )

    def describe_run(self, dag_id: str, run: dict[str, Any]) -> str:
        """A run, its task states and the log tail of its failed tasks (for assertion messages)."""
        run_id = run["dag_run_id"]
        states = self.task_states(dag_id, run_id)
        text = f"{dag_id} {run_id} ({run.get('run_type')}): {run.get('state')} {states}"
        for task, state in states.items():
            if state == "failed":
                text += f"\n--- {task} log ---\n{self.task_log_tail(dag_id, run_id, task.split('[')[0])}"
        mismatches = [line for line in self.stale_event_failures() if run_id in line]
        if mismatches:
            text += (
                "\n--- the scheduler failed a task that had just resumed from a deferral: a stale executor "
                "event from its defer-exit (Airflow race, apache/airflow#67287 / #72716) ---\n" + "\n".join(mismatches)
            )
        return text

    def wait_exit_event_consumed(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120.0) -> float:
        """Wait until the scheduler has consumed the executor's "success" event of a task's deferral exit.

        Airflow 3.3.2 fails a task that resumes (trigger fired, HITL answered) before the scheduler processed
        the event of the worker that deferred it (apache/airflow#67287, #72716); on a loaded 2-core machine
        that event was seen 5.7 s late. The scheduler logs each event it consumes, so tests wait for that
        line instead of sleeping a guessed time. Returns the seconds waited.
        """
        return wait_exit_event_consumed(
            self.log_dir / "scheduler.log", dag_id, run_id, task_id, timeout, self._check_alive
        )

    def stale_event_failures(self) -> list[str]:
        """Scheduler log lines where a finished executor event failed a task the trigger had already resumed."""
        needle = "finished with state success, but the task instance's state attribute is"
        try:
            text = (self.log_dir / "scheduler.log").read_text(errors="replace")
        except OSError:
            return []
        return [line[:400] for line in text.splitlines() if needle in line]

    def asset_id(self, uri: str) -> int | None:
        data = self._request("GET", "/api/v2/assets", params={"uri_pattern": uri, "limit": 100})
        for asset in data["assets"]:
            if asset["uri"] == uri:
                return int(asset["id"])
        return None

    def asset_events(self, uri: str) -> list[dict[str, Any]]:
        """Every event of the Asset ``uri``, oldest first (empty if the Asset is not known yet)."""
        asset_id = self.asset_id(uri)
        if asset_id is None:
            return []
        data = self._request(
            "GET", "/api/v2/assets/events", params={"asset_id": asset_id, "order_by": "timestamp", "limit": 100}
        )
        return sorted(data["asset_events"], key=lambda event: int(event["id"]))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """One XCom value of a task instance, deserialized."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        value = self._request("GET", path, params={"map_index": map_index, "deserialize": True})["value"]
        return json.loads(value) if isinstance(value, str) else value

    def post_asset_event(self, uri: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Announce an event on ``uri`` from outside Airflow (``POST /api/v2/assets/events``)."""
        asset_id = self.asset_id(uri)
        if asset_id is None:
            raise RuntimeError(f"no Asset {uri!r} known to Airflow yet")
        return dict(self._request("POST", "/api/v2/assets/events", json={"asset_id": asset_id, "extra": extra or {}}))
