"""Run-time data locations (REST ``conf``, Asset-event extras) are admitted only where the deployment allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mlops.data.admission import admit_location, allowed_roots
from airflow_mlops.exceptions import DataError


def admit(uri: str, conn_id: str | None = None, *, config_uri: str, base: Path) -> tuple[str, str | None]:
    return admit_location(uri, conn_id, source="conf", config_uri=config_uri, config_conn_id="aws_data", base=base)


def test_a_symlink_out_of_the_data_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    (data / "innocent.csv").symlink_to(secret)

    assert admit(str(data / "train.csv"), config_uri=str(data / "train.csv"), base=tmp_path) == (
        str(data / "train.csv"),
        None,
    )
    assert admit("train.csv", config_uri=str(data / "train.csv"), base=data)[0] == str(data / "train.csv")
    with pytest.raises(DataError, match="expected a location under one of"):
        admit(str(data / "innocent.csv"), config_uri=str(data / "train.csv"), base=tmp_path)


def test_object_store_roots_keep_their_bucket_and_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config_uri = "s3://ml-data/fraud/latest.csv"
    assert allowed_roots(config_uri) == ["s3://ml-data/fraud"]
    assert admit("s3://ml-data/fraud/2026/11.csv", "aws_data", config_uri=config_uri, base=tmp_path) == (
        "s3://ml-data/fraud/2026/11.csv",
        "aws_data",
    )
    for refused in ("s3://ml-data/fraudulent/x.csv", "s3://ml-data/other/x.csv", "s3://evil/fraud/x.csv"):
        with pytest.raises(DataError, match="expected a location under one of"):
            admit(refused, config_uri=config_uri, base=tmp_path)
    with pytest.raises(DataError, match=r"data_conn_id: got 'aws_admin'; expected one of \['aws_data'\]"):
        admit("s3://ml-data/fraud/x.csv", "aws_admin", config_uri=config_uri, base=tmp_path)
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_ROOTS", "s3://landing/")
    monkeypatch.setenv("AIRFLOW_MLOPS_DATA_CONN_IDS", "aws_landing")
    assert admit("s3://landing/x.csv", "aws_landing", config_uri=config_uri, base=tmp_path)[1] == "aws_landing"


@pytest.mark.parametrize("uri", ["", "   ", "ftp://host/x.csv", "gopher://x", "\\\\server\\x"])
def test_odd_values_are_refused_with_the_field(uri: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^conf: data_uri"):
        admit(uri, config_uri="s3://ml-data/fraud/latest.csv", base=tmp_path)
