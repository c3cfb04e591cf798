"""A content checksum of a model's artifact tree, recorded at registration and verified before every load.

The hash covers every file's relative path and bytes, in sorted order, so a changed, added or removed
file changes it, wherever the artifacts are stored (MLflow's own ``registered_model_meta`` excepted).
"""

from __future__ import annotations

import hashlib
import os
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
    """A registered version's artifacts cannot be verified: no recorded checksum, or a different one."""


def download_verified(client: MlflowClient, model: str, version: str, dst: str) -> str:
    """Download ``model`` v``version`` into ``dst`` and check it against the checksum recorded at registration.

    :raises ModelIntegrityError: the version has no ``mlops.model_sha256`` tag (an unverifiable model is
        refused) or its artifacts hash differently (changed in the store since registration).
    """
    expected = client.get_model_version(model, str(version)).tags.get(Tag.MODEL_SHA256)
    if not expected:
        raise ModelIntegrityError(f"{model} v{version} has no {Tag.MODEL_SHA256} tag; refusing an unverifiable model")
    local = download_version(client, model, version, dst)
    actual = tree_sha256(local)
    if actual != expected:
        raise ModelIntegrityError(
            f"{model} v{version}: artifact checksum {actual} does not match {expected} recorded at registration"
        )
    return local


def load_verified_sklearn(client: MlflowClient, model: str, version: str) -> Any:
    """The scikit-learn model of ``model`` v``version``, unpickled only after its checksum matched."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="mlops-load-") as tmp:
        return mlflow.sklearn.load_model(download_verified(client, model, version, tmp))
