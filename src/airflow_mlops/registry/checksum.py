"""Content checksums of a model's artifact tree: computed before upload, checked at registration and before every load.

The hash covers every file's relative path and bytes, in sorted order. A changed, added or removed file
changes it, wherever the artifacts are stored. MLflow's own ``registered_model_meta`` is left out.

1. **Training** saves the model to a local folder and hashes that folder. It uploads exactly those files
   and tags the run with the digest (``mlops.trained_model_sha256``); see
   :func:`airflow_mlops.training.trainer.log_model_files`.
2. **Registration** (:func:`record_checksum`) hashes the registry's copy of the new version. Only if that
   equals the run's digest does it write ``mlops.model_sha256`` on the version. A model swapped in the
   store between training and registration is therefore caught, instead of being recorded as genuine.
3. **Every load** (:func:`download_verified`) compares the downloaded tree with ``mlops.model_sha256``
   before anything is unpickled.

With ``[mlops] model_signing_conn_id`` set, the digest is also signed (:mod:`airflow_mlops.registry.signing`).
Steps 2 and 3 then check the signature as well.

What MLflow (3.x) does to the files on the way, measured with the local and SQL stores: the upload
(``MlflowClient.log_model_artifacts``) copies the bytes unchanged to the LoggedModel's artifact location.
A version registered with that ``model_id`` downloads from that same location
(``get_model_version_download_uri``). The one file MLflow adds is ``registered_model_meta`` (the
model's name and version). It is written into the *downloaded* folder when a ``models:/<name>/<version>``
URI is downloaded, so it is excluded from the hash. Between saving and uploading,
``mlflow.sklearn.log_model`` changes the folder in two ways: it deletes ``__pycache__`` folders, and
when its serving-input check records environment variables it adds ``environment_variables.txt`` and
rewrites ``MLmodel``. ``log_model_files`` does neither (it leaves out that check). It uploads the folder
exactly as it was hashed, ``__pycache__`` included if there is one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import RegistryError
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Files MLflow itself writes into a model's artifact folder after registration (registry metadata, not
#: model content); hashing them would make a version's checksum change under our feet.
REGISTRY_METADATA_FILES = frozenset({"registered_model_meta"})


def tree_sha256(root: str | os.PathLike[str]) -> str:
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"model artifacts not found at {base}")
    digest = hashlib.sha256()
    files = (
        p for p in base.rglob("*") if p.is_file() and p.relative_to(base).as_posix() not in REGISTRY_METADATA_FILES
    )
    for path in sorted(files):
        digest.update(path.relative_to(base).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def download_version(client: MlflowClient, model: str, version: str, dst: str) -> str:
    """Download the artifacts of ``model`` v``version`` into ``dst`` through ``client``'s registry; return the path."""
    import mlflow

    location = client.get_model_version_download_uri(model, str(version))
    return str(
        mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=dst, tracking_uri=client.tracking_uri)
    )


def version_sha256(client: MlflowClient, model: str, version: str) -> str:
    """The checksum of a registered version's artifacts, computed the same way the gateway verifies it."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlops-checksum-") as tmp:
        return tree_sha256(download_version(client, model, version, tmp))


class ModelIntegrityError(RegistryError):
    """A version's artifacts cannot be verified: no recorded checksum, a different one, or a bad signature."""


def record_checksum(
    client: MlflowClient,
    model: str,
    version: str,
    run_id: str,
    run_tags: Mapping[str, str],
    key: bytes | None = None,
) -> str:
    """Check the registry's copy of ``model`` v``version`` against the digest its training run recorded, then tag it.

    With ``key`` (signing on), the run's signature must verify before its digest is trusted, and it is copied to
    the version. The signature is written before the checksum, which goes last: a retry that finds the checksum
    has nothing left to do. A version that fails gets no checksum, and nothing loads a version without one.
    Returns the recorded checksum.

    :param run_tags: The training run's tags (``mlops.trained_model_sha256``, and ``mlops.model_hmac`` if signing).
    :raises ModelIntegrityError: the run recorded no digest (it was trained before models were hashed before
        upload; this fails closed: train it again), the run's signature is missing or wrong, or the registry's
        copy hashes differently from what training uploaded.
    """
    from airflow_mlops.registry.signing import verify

    subject = f"{model} v{version}"
    tags = client.get_model_version(model, str(version)).tags or {}
    recorded = tags.get(Tag.MODEL_SHA256)
    if recorded and (key is None or Tag.MODEL_HMAC in tags):
        return recorded  # an earlier attempt finished
    trained = run_tags.get(Tag.TRAINED_MODEL_SHA256)
    if not trained:
        raise ModelIntegrityError(
            f"{subject}: its MLflow run {run_id} has no {Tag.TRAINED_MODEL_SHA256} tag, so nothing proves the "
            "registered files are the ones training produced (a run trained before models were hashed before "
            f"upload?); refusing to record {Tag.MODEL_SHA256}: train the model again"
        )
    signature = run_tags.get(Tag.MODEL_HMAC)
    if key is not None:
        verify(key, model, trained, signature, subject=f"{subject} (MLflow run {run_id})")
    actual = version_sha256(client, model, version)
    if actual != trained:
        raise ModelIntegrityError(
            f"{subject}: the registry's copy hashes to {actual}, but training computed {trained} before upload "
            f"(MLflow run {run_id}); the artifacts changed after training, so no {Tag.MODEL_SHA256} is recorded "
            "and nothing will load this version"
        )
    if key is not None and signature:
        client.set_model_version_tag(model, str(version), Tag.MODEL_HMAC, signature)
    client.set_model_version_tag(model, str(version), Tag.MODEL_SHA256, trained)  # last: marks the version verified
    return trained


def registered_checksum(client: MlflowClient, model: str, version: str) -> str:
    """The checksum recorded at registration (``mlops.model_sha256``), after its signature matched when signing
    is on: what any copy of the version's artifacts must hash to.

    :raises ModelIntegrityError: no checksum recorded (an unverifiable model), or a missing or wrong signature.
    :raises SigningKeyError: signing is on but the key cannot be read.
    """
    from airflow_mlops.registry.signing import SigningKeyError, configured_key, verify

    tags = client.get_model_version(model, str(version)).tags or {}
    expected = tags.get(Tag.MODEL_SHA256)
    if not expected:
        raise ModelIntegrityError(f"{model} v{version} has no {Tag.MODEL_SHA256} tag; refusing an unverifiable model")
    try:
        key = configured_key()
    except SigningKeyError as exc:
        raise SigningKeyError(f"{model} v{version}: {exc}") from exc
    if key is not None:
        verify(key, model, expected, tags.get(Tag.MODEL_HMAC), subject=f"{model} v{version}")
    return str(expected)


def download_verified(client: MlflowClient, model: str, version: str, dst: str) -> str:
    """Download ``model`` v``version`` into ``dst`` and check it against the checksum recorded at registration.

    With signing on (``[mlops] model_signing_conn_id``), the version's ``mlops.model_hmac`` must also be the
    signature of its name and recorded checksum. This is checked before anything is downloaded.

    :raises ModelIntegrityError: the version has no ``mlops.model_sha256`` tag (an unverifiable model is
        refused) or its artifacts hash differently (changed in the store since registration); with signing
        on, its signature is missing or wrong.
    :raises SigningKeyError: signing is on but the key cannot be read (a ``ModelIntegrityError`` too).
    """
    expected = registered_checksum(client, model, version)
    local = download_version(client, model, version, dst)
    actual = tree_sha256(local)
    if actual != expected:
        raise ModelIntegrityError(
            f"{model} v{version}: artifact checksum {actual} does not match {expected} recorded at registration"
        )
    return local


def load_verified_sklearn(client: MlflowClient, model: str, version: str) -> Any:
    """The scikit-learn model of ``model`` v``version``, unpickled only after its checksum (and signature) matched."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="mlops-load-") as tmp:
        return mlflow.sklearn.load_model(download_verified(client, model, version, tmp))
