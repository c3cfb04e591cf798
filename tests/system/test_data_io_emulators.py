"""The data-reading layer against S3 (moto server) and Azure Blob/ADLS (Azurite), through Airflow hooks.

Connections come from ``AIRFLOW_CONN_AWS_MOTO`` / ``AIRFLOW_CONN_WASB_AZURITE`` set by the fixtures in
``conftest.py``; each test gets a fresh bucket or container.
"""

from __future__ import annotations

import hashlib
import io
import re

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from airflow_mlops.data.fingerprint import fingerprint
from airflow_mlops.data.io import read_bytes, read_table, write_bytes
from airflow_mlops.exceptions import DataError
from emulators import BlobContainer, S3Bucket

pytestmark = pytest.mark.emulator

CSV = b"amount,is_fraud\n12.5,0\n990.0,1\n7.25,0\n"
EXPECTED = pd.DataFrame({"amount": [12.5, 990.0, 7.25], "is_fraud": [0, 1, 0]})


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


# --- S3 (moto) ------------------------------------------------------------------------------------------


def _s3_client(target: S3Bucket) -> object:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=target.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_s3_csv_round_trip(moto_s3: S3Bucket) -> None:
    uri = f"s3://{moto_s3.bucket}/x.csv"
    write_bytes(uri, CSV, moto_s3.conn_id)

    stored = _s3_client(moto_s3).get_object(Bucket=moto_s3.bucket, Key="x.csv")["Body"].read()  # type: ignore[attr-defined]
    assert stored == CSV  # written where the URI says, checked without our code

    frame, raw = read_table(uri, moto_s3.conn_id)
    assert_frame_equal(frame, EXPECTED)
    assert raw == CSV
    assert fingerprint(raw) == hashlib.sha256(CSV).hexdigest()


def test_s3_nested_key_parquet_round_trip(moto_s3: S3Bucket) -> None:
    data = _parquet_bytes(EXPECTED)
    uri = f"s3://{moto_s3.bucket}/dir/sub/x.parquet"
    write_bytes(uri, data, moto_s3.conn_id)
    frame, raw = read_table(uri, moto_s3.conn_id)
    assert_frame_equal(frame, EXPECTED)
    assert fingerprint(raw) == hashlib.sha256(data).hexdigest()


def test_s3_missing_key_names_uri_and_connection(moto_s3: S3Bucket) -> None:
    uri = f"s3://{moto_s3.bucket}/missing.csv"
    expected = f"Cannot read {uri!r} (connection 'aws_moto'): key 'missing.csv' not found in bucket {moto_s3.bucket!r}"
    with pytest.raises(DataError, match=re.escape(expected)) as info:
        read_table(uri, moto_s3.conn_id)
    assert info.value.__cause__ is not None  # the botocore error is chained


def test_s3_missing_bucket(moto_s3: S3Bucket) -> None:
    uri = "s3://no-such-bucket-here/x.csv"
    with pytest.raises(
        DataError,
        match=re.escape(f"Cannot read {uri!r} (connection 'aws_moto'): bucket 'no-such-bucket-here' does not exist"),
    ):
        read_bytes(uri, moto_s3.conn_id)


def test_s3_undefined_connection_is_an_error_not_a_fallback(airflow_home: str) -> None:
    uri = "s3://bucket/x.csv"
    with pytest.raises(
        DataError,
        match=re.escape(
            f"Cannot read {uri!r} (connection 'aws_undefined'): Airflow connection 'aws_undefined' is not defined"
        ),
    ):
        read_bytes(uri, "aws_undefined")


# --- Azure Blob / ADLS (Azurite) ------------------------------------------------------------------------


def _blob_bytes(target: BlobContainer, blob: str) -> bytes:
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(target.connection_string)
    data: bytes = client.get_blob_client(target.container, blob).download_blob().readall()
    return data


@pytest.mark.parametrize("scheme", ["wasbs", "wasb"])
def test_wasb_csv_round_trip(azurite_container: BlobContainer, scheme: str) -> None:
    uri = f"{scheme}://{azurite_container.container}@devstoreaccount1.blob.core.windows.net/dir/x.csv"
    write_bytes(uri, CSV, azurite_container.conn_id)
    assert _blob_bytes(azurite_container, "dir/x.csv") == CSV  # written where the URI says

    frame, raw = read_table(uri, azurite_container.conn_id)
    assert_frame_equal(frame, EXPECTED)
    assert raw == CSV
    assert fingerprint(raw) == hashlib.sha256(CSV).hexdigest()


@pytest.mark.parametrize("scheme", ["abfs", "abfss"])
def test_abfs_parquet_round_trip_via_blob_api(azurite_container: BlobContainer, scheme: str) -> None:
    data = _parquet_bytes(EXPECTED)
    container = azurite_container.container
    uri = f"{scheme}://{container}@devstoreaccount1.dfs.core.windows.net/dir/x.parquet"
    write_bytes(uri, data, azurite_container.conn_id)

    frame, raw = read_table(uri, azurite_container.conn_id)
    assert_frame_equal(frame, EXPECTED)
    assert fingerprint(raw) == hashlib.sha256(data).hexdigest()
    # The ADLS path and the blob path name the same object.
    blob_uri = f"wasbs://{container}@devstoreaccount1.blob.core.windows.net/dir/x.parquet"
    assert read_bytes(blob_uri, azurite_container.conn_id) == data


def test_wasb_missing_blob_names_uri_and_connection(azurite_container: BlobContainer) -> None:
    uri = f"wasbs://{azurite_container.container}@devstoreaccount1.blob.core.windows.net/dir/missing.csv"
    expected = (
        f"Cannot read {uri!r} (connection 'wasb_azurite'): "
        f"blob 'dir/missing.csv' not found in container {azurite_container.container!r}"
    )
    with pytest.raises(DataError, match=re.escape(expected)) as info:
        read_table(uri, azurite_container.conn_id)
    assert info.value.__cause__ is not None


def test_abfs_missing_container(azurite_container: BlobContainer) -> None:
    uri = "abfss://no-such-container@devstoreaccount1.dfs.core.windows.net/x.parquet"
    expected = (
        f"Cannot read {uri!r} (connection 'wasb_azurite'): "
        "container 'no-such-container' does not exist in account 'devstoreaccount1'"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        read_bytes(uri, azurite_container.conn_id)


def test_wasb_account_mismatch_is_refused(azurite_container: BlobContainer) -> None:
    uri = f"wasbs://{azurite_container.container}@otheraccount.blob.core.windows.net/x.csv"
    expected = (
        f"Cannot read {uri!r} (connection 'wasb_azurite'): the URI names storage account 'otheraccount' "
        "but the connection points at account 'devstoreaccount1'"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        read_bytes(uri, azurite_container.conn_id)


def test_wasb_undefined_connection(airflow_home: str) -> None:
    uri = "wasbs://c@devstoreaccount1.blob.core.windows.net/x.csv"
    with pytest.raises(
        DataError,
        match=re.escape(
            f"Cannot read {uri!r} (connection 'wasb_undefined'): Airflow connection 'wasb_undefined' is not defined"
        ),
    ):
        read_bytes(uri, "wasb_undefined")
