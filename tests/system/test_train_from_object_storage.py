"""``<model>__train`` reading its data from object storage (moto S3, Azurite Blob), chosen per run via ``conf``.

REST callers override the config's data location with ``conf={"data_uri": ..., "data_conn_id": ...}``;
``dag.test(run_conf=...)`` takes the same path. The run must train on exactly the uploaded bytes: the
version's lineage names the object-storage URI and the sha256 of the file's content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from emulators import BlobContainer, S3Bucket

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

FRAUD_CSV = Path(__file__).resolve().parents[2] / "dags" / "data" / "fraud" / "transactions_batch_001.csv"
BLOB_PATH = "fraud/batch.csv"
LINEAGE = (
    "mlops.data_uri",
    "mlops.data_sha256",
    "mlops.config_sha256",
    "mlops.code_version",
    "mlops.seed",
    "mlops.dag_run_id",
)


def _fraud_csv() -> bytes:
    """The example batch minus its last row: not byte-identical to the config's local file, so a matching
    sha256 in the lineage proves the run read the uploaded object, not the default path."""
    local = FRAUD_CSV.read_bytes()
    data = local.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"
    assert hashlib.sha256(data).digest() != hashlib.sha256(local).digest()
    return data


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _train_and_check(workspace: Any, uri: str, conn_id: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace.write_config("fraud")
    # conf may name this bucket/container and connection only when the deployment allows them
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_ROOTS", uri.rsplit("/", 1)[0])
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_CONN_IDS", conn_id)

    run = workspace.dag("fraud").test(run_conf={"data_uri": uri, "data_conn_id": conn_id})

    assert run.state == "success", _states(run)
    client = workspace.client()
    assert [str(v.version) for v in client.search_model_versions("name = 'fraud'")] == ["1"]
    version = client.get_model_version("fraud", "1")
    assert version.tags["mlops.data_uri"] == uri
    assert version.tags["mlops.data_sha256"] == hashlib.sha256(data).hexdigest()
    assert version.tags["mlops.dag_run_id"] == run.run_id
    mlflow_run = client.get_run(version.run_id)
    for key in LINEAGE:
        assert version.tags[key] == mlflow_run.data.tags[key], key
    assert mlflow_run.data.tags["mlops.data_conn_id"] == conn_id
    aliases = {alias: str(v) for alias, v in client.get_registered_model("fraud").aliases.items()}
    assert aliases == {"challenger": "1"}


def test_train_on_s3_data_given_in_conf(
    workspace: Any, airflow_db: Any, moto_s3: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    data = _fraud_csv()
    boto3.client(
        "s3",
        endpoint_url=moto_s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).put_object(Bucket=moto_s3.bucket, Key=BLOB_PATH, Body=data)

    _train_and_check(workspace, f"s3://{moto_s3.bucket}/{BLOB_PATH}", moto_s3.conn_id, data, monkeypatch)


def test_train_on_azure_blob_data_given_in_conf(
    workspace: Any, airflow_db: Any, azurite_container: BlobContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import BlobServiceClient

    data = _fraud_csv()
    service = BlobServiceClient.from_connection_string(azurite_container.connection_string)
    service.get_blob_client(azurite_container.container, BLOB_PATH).upload_blob(data)
    uri = f"wasbs://{azurite_container.container}@{azurite_container.account}.blob.core.windows.net/{BLOB_PATH}"

    _train_and_check(workspace, uri, azurite_container.conn_id, data, monkeypatch)
