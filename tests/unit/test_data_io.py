"""Unit tests for the data-reading layer: local files, table parsing, fingerprints and error messages.

No emulator and no Airflow here; the S3/Azure paths are covered in tests/system/test_data_io_emulators.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from airflow_mlops.data.fingerprint import fingerprint
from airflow_mlops.data.io import read_bytes, read_table, write_bytes
from airflow_mlops.exceptions import DataError

CSV = b"amount,is_fraud\n12.5,0\n990.0,1\n"
EXPECTED = pd.DataFrame({"amount": [12.5, 990.0], "is_fraud": [0, 1]})
SRC_DIR = Path(__file__).resolve().parents[2] / "src"


def _parquet_bytes(frame: pd.DataFrame, tmp_path: Path) -> bytes:
    path = tmp_path / "frame.parquet"
    frame.to_parquet(path, index=False)
    return path.read_bytes()


# --- local read/write -----------------------------------------------------------------------------------


def test_write_creates_parent_dirs_and_read_returns_same_bytes(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "data.bin"
    write_bytes(str(target), b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    assert read_bytes(str(target)) == b"\x00\x01payload"


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "data.csv"
    write_bytes(str(target), b"old")
    write_bytes(str(target), b"new")
    assert read_bytes(str(target)) == b"new"


def test_file_uri_is_percent_decoded(tmp_path: Path) -> None:
    target = tmp_path / "with space" / "data.csv"
    uri = target.as_uri()  # file:///.../with%20space/data.csv
    assert "%20" in uri
    write_bytes(uri, CSV)
    assert target.read_bytes() == CSV
    assert read_bytes(uri) == CSV
    assert read_bytes("file://localhost" + uri[len("file://") :]) == CSV


def test_file_uri_with_a_host_is_rejected() -> None:
    with pytest.raises(
        DataError,
        match=re.escape(
            "Invalid data URI 'file://server/share/x.csv': file URIs must name an absolute local path (file:///abs/path)"
        ),
    ):
        read_bytes("file://server/share/x.csv")


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "train.csv"
    with pytest.raises(
        DataError, match=re.escape(f"Cannot read {str(missing)!r}: local file {str(missing)!r} does not exist")
    ):
        read_bytes(str(missing))


def test_missing_local_file_via_file_uri_names_uri_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "train.csv"
    uri = missing.as_uri()
    with pytest.raises(
        DataError, match=re.escape(f"Cannot read {uri!r}: local file {str(missing)!r} does not exist")
    ) as info:
        read_bytes(uri)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_reading_a_directory_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"{str(tmp_path)!r} is a directory, not a file")):
        read_bytes(str(tmp_path))


# --- tables ---------------------------------------------------------------------------------------------


def test_read_table_csv_returns_frame_and_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(CSV)
    frame, raw = read_table(str(path))
    assert_frame_equal(frame, EXPECTED)
    assert raw == CSV


@pytest.mark.parametrize("name", ["train.parquet", "train.pq", "TRAIN.PARQUET"])
def test_read_table_parquet_by_suffix(tmp_path: Path, name: str) -> None:
    data = _parquet_bytes(EXPECTED, tmp_path)
    path = tmp_path / name
    path.write_bytes(data)
    frame, raw = read_table(path.as_uri())
    assert_frame_equal(frame, EXPECTED)
    assert raw == data


def test_fmt_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes(CSV)
    frame, _ = read_table(str(path), fmt="CSV")
    assert_frame_equal(frame, EXPECTED)


def test_unknown_suffix_without_fmt_fails_before_any_io(tmp_path: Path) -> None:
    path = str(tmp_path / "does-not-exist.json")  # never read: the format check comes first
    with pytest.raises(
        DataError,
        match=re.escape(
            f"Cannot tell the table format of {path!r} from its suffix '.json': "
            "name it .csv, .parquet or .pq, or pass fmt='csv' or fmt='parquet'"
        ),
    ):
        read_table(path)


def test_unknown_fmt_is_rejected(tmp_path: Path) -> None:
    path = str(tmp_path / "x.csv")
    with pytest.raises(
        DataError, match=re.escape(f"Unsupported table format 'json' for {path!r}: use 'csv' or 'parquet'")
    ):
        read_table(path, fmt="json")


def test_corrupt_parquet_is_a_data_error_naming_the_uri(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(CSV)
    with pytest.raises(DataError, match=re.escape(f"Cannot parse {str(path)!r} as parquet: ")):
        read_table(str(path))


def test_empty_csv_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(f"Cannot parse {str(path)!r} as csv: ")):
        read_table(str(path))


# --- fingerprint ----------------------------------------------------------------------------------------


def test_fingerprint_is_sha256_of_content() -> None:
    assert fingerprint(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert fingerprint(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert fingerprint(CSV) == hashlib.sha256(CSV).hexdigest()
    assert fingerprint(b"abc") != fingerprint(b"abd")


def test_fingerprint_of_read_table_bytes_matches_file(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(CSV)
    _, raw = read_table(str(path))
    assert fingerprint(raw) == hashlib.sha256(path.read_bytes()).hexdigest()


# --- URI errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", [read_bytes, read_table])
def test_unsupported_scheme(func: object) -> None:
    with pytest.raises(
        DataError,
        match=re.escape(
            "Unsupported data URI scheme 'ftp' in 'ftp://host/data/x.csv': "
            "use a local path or one of file://, s3://, wasb://, wasbs://, abfs://, abfss://"
        ),
    ):
        func("ftp://host/data/x.csv")  # type: ignore[operator]


def test_unsupported_scheme_on_write() -> None:
    with pytest.raises(DataError, match=re.escape("Unsupported data URI scheme 'gs' in 'gs://bucket/x.csv'")):
        write_bytes("gs://bucket/x.csv", CSV)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket-only", "Invalid data URI 's3://bucket-only': S3 URIs must look like s3://bucket/path/to/key"),
        ("s3:///key.csv", "Invalid data URI 's3:///key.csv': S3 URIs must look like s3://bucket/path/to/key"),
        (
            "wasbs://account.blob.core.windows.net/x.csv",
            "Invalid data URI 'wasbs://account.blob.core.windows.net/x.csv': Azure URIs must look like "
            "wasbs://container@account.blob.core.windows.net/path/to/blob",
        ),
        (
            "abfss://c@account.dfs.core.windows.net/",
            "Invalid data URI 'abfss://c@account.dfs.core.windows.net/': Azure URIs must look like "
            "abfss://container@account.dfs.core.windows.net/path/to/blob",
        ),
        ("", "Invalid data URI '': it is empty"),
    ],
)
def test_malformed_remote_uris(uri: str, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        read_bytes(uri)


def test_importing_io_stays_cheap() -> None:
    """DAG files import this module at parse time: it must not pull in Airflow, pandas, boto or Azure."""
    heavy = ("airflow", "pandas", "boto3", "botocore", "azure", "pyarrow")
    code = (
        "import sys, airflow_mlops\n"
        "before = set(sys.modules)\n"
        "import airflow_mlops.data.io, airflow_mlops.data.fingerprint\n"
        f"heavy = {heavy!r}\n"
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & set(heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC_DIR), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
