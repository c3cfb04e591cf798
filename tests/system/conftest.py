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
