"""Model integrity end to end: hashed before upload, checked at registration, signed, verified at every load.

Real operators (``execute(context)``) against a real local MLflow store (SQLite in tmp). The signing key is an
Airflow connection given through ``AIRFLOW_CONN_*``; the gateway's loader (``ModelCache``) is called directly,
without starting a server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from airflow_mlops import settings
from airflow_mlops.exceptions import GateFailedError
from airflow_mlops.operators.gates import GateModelOperator
from airflow_mlops.operators.training import (
    FingerprintDataOperator,
    RegisterModelOperator,
    TrainModelOperator,
    ValidateDataOperator,
)
from airflow_mlops.registry.checksum import ModelIntegrityError, load_verified_sklearn, tree_sha256, version_sha256
from airflow_mlops.registry.signing import SigningKeyError, sign
from airflow_mlops.serving.models import ModelCache, ModelLoadError, NotServableError
from airflow_mlops.vocabulary import Tag
from support import context, train_version

pytestmark = pytest.mark.integration  # trains and registers several versions (~20 s): make test, not test-fast

KEY = "model-signing-key-0123456789"
CONN_ID = "mlops_model_signing"


def op(cls: type, config: Path, **kwargs: Any) -> Any:
    return cls(task_id=cls.__name__, config_path=str(config), **kwargs)


def signing(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any] | None = None, conn_id: str = CONN_ID) -> None:
    """Signing on, keyed by connection ``conn_id`` (``conn=None``: the connection does not exist)."""
    monkeypatch.setenv(settings.OPTIONS["model_signing_conn_id"].env, conn_id)
    if conn is not None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture(autouse=True)
def _signing_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    option = settings.OPTIONS["model_signing_conn_id"]
    for name in (option.env, option.airflow_env):
        monkeypatch.delenv(name, raising=False)


def model_files(client: Any, run_id: str) -> Path:
    """Where the run's uploaded model lives: the LoggedModel's artifact location (a local folder here)."""
    model_id = client.get_run(run_id).data.tags[Tag.MODEL_ID]
    location = client.get_logged_model(model_id).artifact_location
    return Path(urlparse(location).path if location.startswith("file:") else location)


def swap_model(folder: Path, tmp_path: Path) -> None:
    """Put another valid MLflow sklearn model in ``folder``, as someone with write access to the store could."""
    import warnings

    import mlflow
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    other = tmp_path / "other-model"
    with warnings.catch_warnings():  # schema-inference hints about the toy frame
        warnings.simplefilter("ignore", UserWarning)
        mlflow.sklearn.save_model(DummyClassifier().fit(pd.DataFrame({"a": [0.0, 1.0]}), [0, 1]), str(other))
    shutil.copy(folder / "MLmodel", other / "MLmodel")  # keep the LoggedModel's metadata: only the model differs
    shutil.rmtree(folder)
    shutil.copytree(other, folder)


def trained_run(config: Path, run_id: str) -> str:
    ctx = context(run_id=run_id)
    for cls in (FingerprintDataOperator, ValidateDataOperator, TrainModelOperator):
        trained = op(cls, config).execute(ctx)
    return str(trained["mlflow_run_id"])


def test_the_folder_hashed_before_upload_is_the_registered_version(workspace: Any) -> None:
    """Signing off: the digest training computed is the one registration records, and loads work as before."""
    client = workspace.client()
    config = workspace.write_config("fraud")
    run_id = trained_run(config, "manual__hashed")
    run = client.get_run(run_id)
    trained = run.data.tags[Tag.TRAINED_MODEL_SHA256]
    assert tree_sha256(model_files(client, run_id)) == trained  # what was uploaded is what was hashed
    model_id = run.data.tags[Tag.MODEL_ID]
    assert client.get_logged_model(model_id).status.to_int() == 2  # READY, as log_model leaves it
    assert [output.model_id for output in run.outputs.model_outputs] == [model_id]
    assert Tag.MODEL_HMAC not in run.data.tags

    registered = op(RegisterModelOperator, config).execute(context(run_id="manual__hashed"))
    version = registered["version"]
    tags = client.get_model_version("fraud", version).tags
    assert tags[Tag.MODEL_SHA256] == trained == version_sha256(client, "fraud", version)
    assert Tag.MODEL_HMAC not in tags
    assert hasattr(load_verified_sklearn(client, "fraud", version), "predict_proba")
    again = op(RegisterModelOperator, config).execute(context(run_id="manual__hashed"))
    assert (again["version"], again["created"]) == (version, False)


def test_a_model_swapped_between_training_and_registration_is_refused(workspace: Any, tmp_path: Path) -> None:
    client = workspace.client()
    config = workspace.write_config("fraud")
    ctx = context(run_id="manual__swapped")
    run_id = trained_run(config, "manual__swapped")
    folder = model_files(client, run_id)
    trained = tree_sha256(folder)
    swap_model(folder, tmp_path)
    swapped = tree_sha256(folder)
    assert swapped != trained

    message = (
        rf"^fraud v1: the registry's copy hashes to {swapped}, but training computed {trained} before upload "
        rf"\(MLflow run {run_id}\); the artifacts changed after training, so no mlops.model_sha256 is recorded"
    )
    for _attempt in range(2):  # a retried register refuses again
        with pytest.raises(ModelIntegrityError, match=message):
            op(RegisterModelOperator, config).execute(ctx)
    versions = client.search_model_versions("name = 'fraud'")
    assert [str(v.version) for v in versions] == ["1"]
    assert not any(Tag.MODEL_SHA256 in v.tags for v in versions)
    with pytest.raises(GateFailedError, match=r"fraud v1 failed its gate: .*fraud v1 has no mlops.model_sha256 tag"):
        op(GateModelOperator, config).execute(ctx)
    with pytest.raises(ModelLoadError, match=r"^fraud v1: mlops.gate is 'failed'"):
        ModelCache(client).load("fraud", "1")


def test_a_run_without_a_trained_digest_is_not_registered(workspace: Any) -> None:
    """A run trained by an older airflow-mlops has no digest: nothing proves its files are genuine (fail closed)."""
    client = workspace.client()
    config = workspace.write_config("fraud")
    run_id = trained_run(config, "manual__old")
    if Tag.TRAINED_MODEL_SHA256 in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, Tag.TRAINED_MODEL_SHA256)
    with pytest.raises(ModelIntegrityError, match=rf"^fraud v1: its MLflow run {run_id} has no mlops.trained_model"):
        op(RegisterModelOperator, config).execute(context(run_id="manual__old"))
    assert Tag.MODEL_SHA256 not in client.get_model_version("fraud", "1").tags


@pytest.mark.integration  # trains, registers and gates a version, then loads it a dozen ways
def test_signing_on_signed_versions_load_and_altered_ones_are_refused(
    workspace: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = workspace.client()
    config = workspace.write_config("fraud")
    signing(monkeypatch, {"conn_type": "generic", "password": KEY})
    version = train_version(config, "manual__signed")  # the gate loaded it through the verified loader
    tags = client.get_model_version("fraud", version).tags
    assert tags[Tag.GATE] == "passed"
    digest = tags[Tag.MODEL_SHA256]
    assert tags[Tag.MODEL_HMAC] == sign(KEY.encode(), "fraud", digest)
    assert ModelCache(client).load("fraud", version).version == version  # the gateway's loader

    def refused(change: dict[str, str], message: str, error: type[Exception] = ModelLoadError) -> None:
        for key, value in change.items():
            client.set_model_version_tag("fraud", version, key, value)
        try:
            with pytest.raises(error, match=message):
                ModelCache(client).load("fraud", version)
            with pytest.raises(ModelIntegrityError, match=message):
                load_verified_sklearn(client, "fraud", version)
        finally:
            for key in change:
                client.set_model_version_tag("fraud", version, key, tags[key])

    mismatch = rf"^fraud v{version}: mlops.model_hmac does not match model 'fraud'"
    refused({Tag.MODEL_HMAC: sign(b"someone-elses-key-0123456789", "fraud", digest)}, mismatch)
    refused({Tag.MODEL_HMAC: "0" * 64}, mismatch)
    client.delete_model_version_tag("fraud", version, Tag.MODEL_HMAC)
    refused({}, rf"^fraud v{version} has no mlops.model_hmac signature, and model signing is on; refusing")
    client.set_model_version_tag("fraud", version, Tag.MODEL_HMAC, tags[Tag.MODEL_HMAC])

    # new artifacts with their own correct checksum: a checksum alone would accept them, the signature does not
    folder = model_files(client, client.get_model_version("fraud", version).run_id)
    genuine = tmp_path / "genuine"
    shutil.copytree(folder, genuine)
    swap_model(folder, tmp_path)
    refused({Tag.MODEL_SHA256: tree_sha256(folder)}, rf"{mismatch} with checksum {tree_sha256(folder)}")
    shutil.rmtree(folder)
    shutil.copytree(genuine, folder)

    # the key cannot be read: refused (the gateway retries at its next poll), nothing downloaded
    no_key = rf"^fraud v{version}: model signing is on \(\[mlops\] model_signing_conn_id = 'missing_key'\) but"
    signing(monkeypatch, None, conn_id="missing_key")
    refused({}, rf"{no_key} the connection cannot be read", NotServableError)
    signing(monkeypatch, {"conn_type": "generic", "password": ""}, conn_id="missing_key")
    refused({}, rf"{no_key} the connection has no password", NotServableError)
    signing(monkeypatch, {"conn_type": "generic", "password": KEY})
    assert ModelCache(client).load("fraud", version).version == version  # restored: loads again

    # the gate refuses a badly signed version too, and says why
    client.set_model_version_tag("fraud", version, Tag.MODEL_HMAC, "0" * 64)
    with pytest.raises(GateFailedError, match=rf"ModelIntegrityError: fraud v{version}: mlops.model_hmac does not"):
        op(GateModelOperator, config).execute(context(run_id="manual__signed"))


def test_signing_on_needs_a_key_to_train_and_a_signed_run_to_register(
    workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = workspace.client()
    config = workspace.write_config("fraud")
    run_id = trained_run(config, "manual__unsigned")  # signing off while training

    signing(monkeypatch, {"conn_type": "generic", "password": KEY})
    with pytest.raises(
        ModelIntegrityError, match=rf"^fraud v1 \(MLflow run {run_id}\) has no mlops.model_hmac signature"
    ):
        op(RegisterModelOperator, config).execute(context(run_id="manual__unsigned"))
    assert Tag.MODEL_SHA256 not in client.get_model_version("fraud", "1").tags

    ctx = context(run_id="manual__no_key")
    for cls in (FingerprintDataOperator, ValidateDataOperator):
        run_id = op(cls, config).execute(ctx)["mlflow_run_id"]
    signing(monkeypatch, None, conn_id="missing_key")
    with pytest.raises(SigningKeyError, match=rf"^fraud \(MLflow run {run_id}\): cannot sign the model: model signing"):
        op(TrainModelOperator, config).execute(ctx)
    assert Tag.MODEL_URI not in client.get_run(run_id).data.tags  # refused before training
