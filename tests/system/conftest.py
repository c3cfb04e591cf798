"""Fixtures for system tests: cloud-storage emulators (moto S3, Azurite) wired to Airflow connections.

The emulator processes are session-scoped (started once, stopped at the end); every test gets its own
bucket/container, and its Airflow connection is set through ``AIRFLOW_CONN_*`` with ``monkeypatch``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# tests/ has no __init__.py: make the shared helper module importable from this directory.
_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import emulators  # noqa: E402

MOTO_CONN_ID = "aws_moto"
AZURITE_CONN_ID = "wasb_azurite"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Keep Airflow (imported lazily by the code under test) out of ~/airflow; respect a preset AIRFLOW_HOME."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("AIRFLOW_HOME"):
            mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server (S3 and friends) on a free loopback port, for the whole session."""
    with emulators.run_moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def moto_s3(moto_endpoint: str, airflow_home: str, monkeypatch: pytest.MonkeyPatch) -> emulators.S3Bucket:
    """A new, empty bucket on moto plus the Airflow connection ``aws_moto`` pointing at it."""
    import boto3

    monkeypatch.setenv(f"AIRFLOW_CONN_{MOTO_CONN_ID.upper()}", emulators.aws_connection_json(moto_endpoint))
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=emulators.MOTO_REGION,
        aws_access_key_id=emulators.MOTO_ACCESS_KEY,
        aws_secret_access_key=emulators.MOTO_SECRET_KEY,
    ).create_bucket(Bucket=bucket)
    return emulators.S3Bucket(endpoint_url=moto_endpoint, bucket=bucket, conn_id=MOTO_CONN_ID)


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on a free loopback port, for the whole session; yields the blob endpoint."""
    with emulators.run_azurite(tmp_path_factory.mktemp("azurite")) as endpoint:
        yield endpoint


@pytest.fixture
def azurite_container(
    azurite_endpoint: str, airflow_home: str, monkeypatch: pytest.MonkeyPatch
) -> emulators.BlobContainer:
    """A new, empty container on Azurite plus the Airflow connection ``wasb_azurite`` pointing at it."""
    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv(f"AIRFLOW_CONN_{AZURITE_CONN_ID.upper()}", emulators.wasb_connection_json(azurite_endpoint))
    target = emulators.BlobContainer(
        blob_endpoint=azurite_endpoint, container=f"test-{uuid.uuid4().hex[:12]}", conn_id=AZURITE_CONN_ID
    )
    BlobServiceClient.from_connection_string(target.connection_string).create_container(target.container)
    return target


# --- one live Airflow for test_rest_api.py and test_browser.py ----------------------------------------------

SHARED_LIVE_AIRFLOW = "shared_live_airflow"


class SharedLiveAirflow:
    """One :class:`~live_airflow.LiveAirflow` (``test_rest_api.live_setup`` with every model of ``LIVE_MODELS``)
    for the tests that request ``shared_live_airflow``; each test drives its own model's DAGs and registry entries.

    ``start()`` writes the setup and begins the database migration (a test may do its own work meanwhile);
    ``ready()`` waits for the components and every DAG, and pauses every model's deploy and monitor DAGs (their
    triggers are not under test). The users run next to each other (``pytest_collection_modifyitems``) and
    the components stop after the last of them (``pytest_runtest_teardown``), so no idle Airflow competes
    with other tests for the CPU.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.setup: dict[str, Any] | None = None
        self.airflow: Any = None  # LiveAirflow
        self._ready = False
        self._starts = 0

    def start(self) -> dict[str, Any]:
        from test_rest_api import LIVE_MODELS, live_setup

        from live_airflow import LiveAirflow

        if self._ready and any(proc.poll() is not None for proc in self.airflow.procs.values()):
            self.stop()  # a component died during an earlier test: this test gets an Airflow of its own
        if self.airflow is None:
            self._starts += 1
            tmp = self.root / f"live-{self._starts}"
            tmp.mkdir()
            self.setup = live_setup(tmp, models=LIVE_MODELS)
            self.airflow = LiveAirflow(tmp / "airflow", self.setup["dags"], self.setup["env"])
            self._ready = False
            try:
                self.airflow.start()
            except BaseException:
                self.stop()
                raise
        assert self.setup is not None
        return self.setup

    def ready(self) -> Any:
        from test_rest_api import LIVE_MODELS

        self.start()
        airflow = self.airflow
        if not self._ready:
            try:
                airflow.wait_ready()
                for model in LIVE_MODELS:
                    airflow.wait_dag(f"{model}__train")
                    for dag_id in (f"{model}__deploy", f"{model}__monitor"):
                        airflow.wait_dag(dag_id)
                        airflow.client().patch(f"/api/v2/dags/{dag_id}", json={"is_paused": True}).raise_for_status()
            except BaseException:
                self.stop()
                raise
            self._ready = True
        airflow._check_alive()
        return airflow

    def stop(self) -> None:
        airflow, self.airflow, self._ready = self.airflow, None, False
        if airflow is not None:
            airflow.stop()


_shared_live: SharedLiveAirflow | None = None


@pytest.fixture(scope="session")
def shared_live_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedLiveAirflow]:
    global _shared_live
    _shared_live = SharedLiveAirflow(tmp_path_factory.mktemp("shared-live-airflow"))
    try:
        yield _shared_live
    finally:
        _shared_live.stop()
        _shared_live = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the users of ``shared_live_airflow`` one after the other, where the first of them was collected."""
    users = [item for item in items if SHARED_LIVE_AIRFLOW in getattr(item, "fixturenames", ())]
    if len(users) < 2:
        return
    first = items.index(users[0])
    user_ids = {id(item) for item in users}
    others = [item for item in items if id(item) not in user_ids]
    items[:] = [*others[:first], *users, *others[first:]]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop the shared live Airflow after its last user's teardown (the session teardown then has nothing left)."""
    try:
        return (yield)
    finally:
        last_user = SHARED_LIVE_AIRFLOW in getattr(item, "fixturenames", ()) and (
            nextitem is None or SHARED_LIVE_AIRFLOW not in getattr(nextitem, "fixturenames", ())
        )
        if last_user and _shared_live is not None:
            _shared_live.stop()
