"""Racing promotions in two real processes cannot leave two champions, a half-moved state or a doubled audit.

Two worker processes (``spawn``) promote at the same instant (a barrier releases both), many times:
different versions, and the same version. Each backend is real: the audit/lock database is
PostgreSQL (row lock ``SELECT ... FOR UPDATE``) or an SQLite file (``flock``), and the MLflow
registry is PostgreSQL-backed (or an SQLite file) shared by both workers.

After every round the registry holds exactly one champion, ``previous`` is the other contender (or
the old champion), and replaying the audit trail from the start reproduces the registry's aliases.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.deploy.audit import AliasEvent, AuditTrail
from airflow_mlops.deploy.promotion import Deployments, read_state

MODEL = "race"
ROUNDS = 20
PG_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "connect_timeout": 3}


@dataclass(frozen=True)
class Backend:
    audit_url: str
    mlflow_uri: str


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    return Backend(audit_url=f"sqlite:///{tmp_path}/state.db", mlflow_uri=f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture
def postgres_backend() -> Iterator[Backend]:
    """Two fresh databases on the local PostgreSQL (audit + MLflow store), dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(**PG_DSN)
    except psycopg2.OperationalError as exc:
        _skip_or_fail(f"PostgreSQL at {PG_DSN['host']}:{PG_DSN['port']} is not reachable: {exc}")
    admin.autocommit = True
    suffix = uuid.uuid4().hex[:12]
    names = [f"mlops_state_{suffix}", f"mlops_mlflow_{suffix}"]
    with admin.cursor() as cur:
        for name in names:
            cur.execute(f'CREATE DATABASE "{name}"')
    base = f"postgresql+psycopg2://{PG_DSN['user']}@{PG_DSN['host']}:{PG_DSN['port']}"
    try:
        yield Backend(audit_url=f"{base}/{names[0]}", mlflow_uri=f"{base}/{names[1]}")
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _worker(name: str, barrier: Any, tasks: Any, results: Any) -> None:
    """Promote each (backend, version) task as soon as the barrier lets both workers go."""
    import mlflow

    stores: dict[Backend, tuple[Any, AuditTrail]] = {}
    results.put(("ready", name))
    while (task := tasks.get()) is not None:
        backend, version = task
        if backend not in stores:  # connect (and warm up) before the barrier, not inside the race
            client, audit = mlflow.MlflowClient(tracking_uri=backend.mlflow_uri), AuditTrail(backend.audit_url)
            read_state(client, MODEL)
            audit.history(MODEL, limit=1)
            stores[backend] = (client, audit)
        client, audit = stores[backend]
        barrier.wait(timeout=120)
        start = time.monotonic()
        try:
            result = Deployments(client, audit).promote(MODEL, version, actor=name, reason=f"race for v{version}")
            results.put((name, version, result.changed, start, time.monotonic(), None))
        except Exception as exc:
            results.put((name, version, None, start, time.monotonic(), f"{type(exc).__name__}: {exc}"))
    for _, audit in stores.values():
        audit.dispose()


def replay(events: list[AliasEvent]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for event in events:
        assert aliases.get(event.alias) == event.from_version, f"trail is not a chain at {event}"
        if event.to_version is None:
            aliases.pop(event.alias, None)
        else:
            aliases[event.alias] = event.to_version
    return aliases


class Workers:
    """Two spawned processes (fresh interpreters, like two Airflow workers), shared by the tests here.

    Starting them costs two ``import mlflow`` (seconds), so the module starts them once.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.results = ctx.Queue()
        barrier = ctx.Barrier(2)
        self.tasks = {name: ctx.Queue() for name in ("worker-a", "worker-b")}
        self.procs = [
            ctx.Process(target=_worker, args=(name, barrier, tasks, self.results), daemon=True)
            for name, tasks in self.tasks.items()
        ]
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            assert self._get()[0] == "ready"

    def _get(self) -> tuple[Any, ...]:
        try:
            return tuple(self.results.get(timeout=120))
        except queue.Empty:
            codes = [proc.exitcode for proc in self.procs]
            pytest.fail(f"no answer from the workers within 120 s (exit codes {codes})")

    def round(self, backend: Backend, version_a: str, version_b: str) -> dict[str, tuple[Any, ...]]:
        """worker-a promotes ``version_a`` while worker-b promotes ``version_b``; their answers by name."""
        self.tasks["worker-a"].put((backend, version_a))
        self.tasks["worker-b"].put((backend, version_b))
        answers = {answer[0]: answer for answer in (self._get(), self._get())}
        errors = [answer[5] for answer in answers.values() if answer[5]]
        assert not errors, errors
        return answers

    def close(self) -> None:
        for tasks in self.tasks.values():
            tasks.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    pool = Workers()
    yield pool
    pool.close()


class Race:
    """The parent's view of one race: it registers the versions and reads the registry and the trail."""

    def __init__(self, backend: Backend, source: Path, workers: Workers) -> None:
        import mlflow

        self.backend, self.workers, self.source = backend, workers, source
        self.client = mlflow.MlflowClient(tracking_uri=backend.mlflow_uri)
        self.client.create_registered_model(MODEL)  # also creates the store's tables, before the workers connect
        self.audit = AuditTrail(backend.audit_url)
        self.audit.history(MODEL)

    def new_version(self) -> str:
        created = self.client.create_model_version(
            MODEL, source=str(self.source), run_id=None, tags={"mlops.gate": "passed"}
        )
        return str(created.version)

    def round(self, version_a: str, version_b: str) -> dict[str, tuple[Any, ...]]:
        return self.workers.round(self.backend, version_a, version_b)

    def champions_in_registry(self, versions: list[Any]) -> list[str]:
        """The versions (of ``versions``) that the registry itself lists with the ``champion`` alias."""
        return [v for v in versions if "champion" in (self.client.get_model_version(MODEL, v).aliases or [])]


def _overlap(answers: dict[str, tuple[Any, ...]]) -> bool:
    (_, _, _, start_a, end_a, _), (_, _, _, start_b, end_b, _) = answers.values()
    return bool(start_a < end_b and start_b < end_a)


def run_race(backend: Backend, source: Path, workers: Workers) -> None:
    race = Race(backend, source, workers)
    try:
        versions: list[str] = []
        overlapping = 0
        for _ in range(ROUNDS):
            # Different versions: both promotions happen, one after the other.
            old = read_state(race.client, MODEL).champion
            a, b = race.new_version(), race.new_version()
            versions += [a, b]
            answers = race.round(a, b)
            overlapping += _overlap(answers)
            assert [answer[2] for answer in answers.values()] == [True, True]
            state = read_state(race.client, MODEL)
            assert race.champions_in_registry([v for v in (old, a, b) if v]) == [state.champion]
            assert {state.champion, state.previous} == {a, b}, (old, state)
            last_champion = [e for e in race.audit.history(MODEL, limit=4) if e.alias == "champion"][-1]
            assert last_champion.to_version == state.champion

            # The same version: one promotion happens, the other finds it done.
            old = state.champion
            c = race.new_version()
            versions.append(c)
            answers = race.round(c, c)
            overlapping += _overlap(answers)
            assert sorted(answer[2] for answer in answers.values()) == [False, True]
            state = read_state(race.client, MODEL)
            assert race.champions_in_registry([old, c]) == [c]
            assert (state.champion, state.previous) == (c, old)

        history = race.audit.history(MODEL)
        assert replay(history) == read_state(race.client, MODEL).aliases()
        champion_moves = Counter(e.to_version for e in history if e.alias == "champion")
        assert set(champion_moves.values()) == {1}, champion_moves  # no version promoted (or audited) twice
        assert len(champion_moves) == 3 * ROUNDS
        assert len({e.op_id for e in history}) == 3 * ROUNDS  # one audited operation per promotion that happened
        assert race.audit.pending(MODEL) == []
        # The barrier makes the calls overlap; if they never did, this test would prove nothing.
        assert overlapping >= ROUNDS, f"only {overlapping} of {2 * ROUNDS} rounds overlapped"
    finally:
        race.audit.dispose()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    return folder


@pytest.mark.integration  # several processes and a real registry: part of make test, not the fast layer
def test_promotion_race_sqlite(sqlite_backend: Backend, source: Path, workers: Workers) -> None:
    run_race(sqlite_backend, source, workers)


@pytest.mark.postgres
def test_promotion_race_postgres(postgres_backend: Backend, source: Path, workers: Workers) -> None:
    run_race(postgres_backend, source, workers)


@pytest.mark.postgres
def test_postgres_lock_waits_times_out_and_is_per_model(postgres_backend: Backend) -> None:
    import threading

    from airflow_mlops.deploy.promotion import model_lock
    from airflow_mlops.exceptions import RegistryError

    audit = AuditTrail(postgres_backend.audit_url)
    outcome: list[str] = []

    def contender(model: str, timeout: float) -> None:
        try:
            with model_lock(audit, model, timeout=timeout):
                outcome.append(f"{model}: got it")
        except RegistryError as exc:
            outcome.append(f"{model}: {exc}")

    try:
        with pytest.raises(KeyError), model_lock(audit, MODEL, holder="holder-1"):
            for model in (MODEL, "other"):
                thread = threading.Thread(target=contender, args=(model, 0.5))
                thread.start()
                thread.join()
            raise KeyError("an operation that fails still releases the lock")
        contender(MODEL, 0.5)
    finally:
        audit.dispose()

    assert outcome[0].startswith(f"{MODEL}: {MODEL}: another deployment operation held the lock row in mlops_model")
    assert "for more than 0.5s" in outcome[0]
    assert outcome[1:] == ["other: got it", f"{MODEL}: got it"]
