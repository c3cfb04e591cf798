"""Model checksums and HMAC signatures without an MLflow server: a folder stands in for the artifact store.

``FakeRegistry`` answers the three calls the checksum code makes (a version's tags, its download URI, tag
writes); the download itself is MLflow's real ``download_artifacts`` of a local folder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mlops import settings
from airflow_mlops.registry import signing
from airflow_mlops.registry.checksum import ModelIntegrityError, download_verified, record_checksum, tree_sha256
from airflow_mlops.registry.signing import SigningKeyError, configured_key, sign, verify
from airflow_mlops.vocabulary import Tag

KEY = "signing-key-0123456789abcdef"
CONN_ID = "mlops_model_signing"


class FakeRegistry:
    """One registered version whose artifacts are the folder ``root``."""

    tracking_uri = None

    def __init__(self, root: Path, tags: dict[str, str] | None = None) -> None:
        self.root = root
        self.tags = dict(tags or {})
        self.downloads = 0

    def get_model_version(self, model: str, version: str) -> Any:
        return SimpleNamespace(tags=dict(self.tags))

    def get_model_version_download_uri(self, model: str, version: str) -> str:
        self.downloads += 1
        return str(self.root)

    def set_model_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        self.tags[key] = value


def model_folder(path: Path, content: bytes = b"weights") -> Path:
    path.mkdir(parents=True)
    (path / "MLmodel").write_text("flavors: {}\n")
    (path / "model.skops").write_bytes(content)
    return path


@pytest.fixture
def signing_on(monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setenv(settings.OPTIONS["model_signing_conn_id"].env, CONN_ID)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "generic", "password": KEY}))
    return KEY.encode()


@pytest.fixture(autouse=True)
def _signing_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (settings.OPTIONS["model_signing_conn_id"].env, settings.OPTIONS["model_signing_conn_id"].airflow_env):
        monkeypatch.delenv(name, raising=False)


# -- the signature itself ------------------------------------------------------------------------------------------

DIGEST = hashlib.sha256(b"a model").hexdigest()
MISMATCH = r"fraud v1: mlops.model_hmac does not match"


def test_the_signature_is_hmac_sha256_over_context_model_and_digest() -> None:
    """The message is specified in signing's docstring; anyone can recompute a signature from it."""
    expected = hmac.new(
        KEY.encode(), b"airflow-mlops model checksum v1\nfraud\n" + DIGEST.encode(), hashlib.sha256
    ).hexdigest()
    assert sign(KEY.encode(), "fraud", DIGEST) == expected
    verify(KEY.encode(), "fraud", DIGEST, expected, subject="fraud v1")
    verify(KEY.encode(), "fraud", DIGEST, expected.upper(), subject="fraud v1")  # the same hex value


@pytest.mark.parametrize(
    ("signature", "model", "digest", "message"),
    [
        (None, "fraud", DIGEST, r"fraud v1 has no mlops.model_hmac signature, and model signing is on; refusing"),
        ("", "fraud", DIGEST, r"fraud v1 has no mlops.model_hmac signature"),
        (sign(b"another-key-0123456789", "fraud", DIGEST), "fraud", DIGEST, MISMATCH),
        (sign(KEY.encode(), "churn", DIGEST), "fraud", DIGEST, rf"{MISMATCH} model 'fraud'"),
        (sign(KEY.encode(), "fraud", "0" * 64), "fraud", DIGEST, rf"{MISMATCH} model 'fraud' with checksum {DIGEST}"),
        ("zz-not-hex-é", "fraud", DIGEST, MISMATCH),
        ("abc", "fraud", "not-a-digest", r"fraud v1: cannot check its mlops.model_hmac signature: checksum: got"),
    ],
    ids=["missing", "empty", "other-key", "other-model", "other-digest", "garbage", "malformed-digest"],
)
def test_a_missing_or_wrong_signature_is_refused(signature: str | None, model: str, digest: str, message: str) -> None:
    with pytest.raises(ModelIntegrityError, match=f"^{message}"):
        verify(KEY.encode(), model, digest, signature, subject="fraud v1")


# -- the key -------------------------------------------------------------------------------------------------------


def test_signing_is_off_unless_the_setting_names_a_connection() -> None:
    assert configured_key() is None


def test_the_key_is_the_connections_password(signing_on: bytes) -> None:
    assert configured_key() == signing_on


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        (None, r"the connection cannot be read \(AirflowNotFoundException: "),
        ({"conn_type": "generic"}, r"the connection has no password \(the password is the key\)"),
        ({"conn_type": "generic", "password": ""}, r"the connection has no password"),
        (
            {"conn_type": "generic", "password": "short"},
            r"the connection's password is 5 characters long",
        ),
    ],
    ids=["no-connection", "no-password", "empty-password", "short-password"],
)
def test_an_unreadable_key_refuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, conn: dict[str, str] | None, message: str
) -> None:
    monkeypatch.setenv(settings.OPTIONS["model_signing_conn_id"].env, CONN_ID)
    if conn is None:
        monkeypatch.delenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", raising=False)
    else:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    prefix = rf"model signing is on \(\[mlops\] model_signing_conn_id = '{CONN_ID}'\) but "
    with pytest.raises(SigningKeyError, match=f"^{prefix}{message}"):
        configured_key()
    # every load refuses, naming the version, before anything is downloaded
    folder = model_folder(tmp_path / "v1")
    registry = FakeRegistry(folder, {Tag.MODEL_SHA256: tree_sha256(folder)})
    with pytest.raises(SigningKeyError, match=f"^fraud v1: {prefix}{message}"):
        download_verified(registry, "fraud", "1", str(tmp_path / "dl"))  # type: ignore[arg-type]
    assert registry.downloads == 0


def test_the_module_imports_no_airflow() -> None:
    source = Path(signing.__file__).read_text()
    top_level = source.split("def key_from_connection", 1)[0]
    assert not re.search(r"^\s*(from|import) airflow\b", top_level, re.MULTILINE)


# -- verified loads ------------------------------------------------------------------------------------------------


def test_signing_off_loads_an_unsigned_version_as_before(tmp_path: Path) -> None:
    """A regression guard: with the setting unset nothing about loading changes (no key is looked up)."""
    folder = model_folder(tmp_path / "v1")
    registry = FakeRegistry(folder, {Tag.MODEL_SHA256: tree_sha256(folder)})
    local = download_verified(registry, "fraud", "1", str(tmp_path / "dl"))  # type: ignore[arg-type]
    assert tree_sha256(local) == tree_sha256(folder)


def test_signing_on_loads_a_signed_version(tmp_path: Path, signing_on: bytes) -> None:
    folder = model_folder(tmp_path / "v1")
    digest = tree_sha256(folder)
    registry = FakeRegistry(folder, {Tag.MODEL_SHA256: digest, Tag.MODEL_HMAC: sign(signing_on, "fraud", digest)})
    local = download_verified(registry, "fraud", "1", str(tmp_path / "dl"))  # type: ignore[arg-type]
    assert tree_sha256(local) == digest
    del registry.tags[Tag.MODEL_HMAC]  # the same version, unsigned: signing on refuses it
    with pytest.raises(ModelIntegrityError, match=r"^fraud v1 has no mlops.model_hmac signature"):
        download_verified(registry, "fraud", "1", str(tmp_path / "dl2"))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["unsigned", "other-key", "other-model", "swapped-with-its-checksum"])
def test_signing_on_refuses_a_version_that_is_not_signed_as_itself(
    tmp_path: Path, signing_on: bytes, case: str
) -> None:
    """The last case is the one a checksum alone cannot catch: new artifacts with a matching new checksum tag."""
    folder = model_folder(tmp_path / "v1")
    genuine = tree_sha256(folder)
    tags = {Tag.MODEL_SHA256: genuine, Tag.MODEL_HMAC: sign(signing_on, "fraud", genuine)}
    expected = MISMATCH
    if case == "unsigned":
        del tags[Tag.MODEL_HMAC]
        expected = r"fraud v1 has no mlops.model_hmac signature, and model signing is on"
    elif case == "other-key":
        tags[Tag.MODEL_HMAC] = sign(b"attacker-key-0123456789", "fraud", genuine)
    elif case == "other-model":
        tags[Tag.MODEL_HMAC] = sign(signing_on, "churn", genuine)
    else:
        (folder / "model.skops").write_bytes(b"someone else's weights")
        tags[Tag.MODEL_SHA256] = tree_sha256(folder)
    registry = FakeRegistry(folder, tags)
    with pytest.raises(ModelIntegrityError, match=f"^{expected}"):
        download_verified(registry, "fraud", "1", str(tmp_path / "dl"))  # type: ignore[arg-type]
    assert registry.downloads == 0  # refused on the tags, before any byte was downloaded


# -- registration --------------------------------------------------------------------------------------------------


def test_registration_records_the_digest_training_computed(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "v1")
    digest = tree_sha256(folder)
    registry = FakeRegistry(folder)
    recorded = record_checksum(registry, "fraud", "1", "r1", {Tag.TRAINED_MODEL_SHA256: digest})  # type: ignore[arg-type]
    assert recorded == digest
    assert registry.tags == {Tag.MODEL_SHA256: digest}
    downloads = registry.downloads
    assert record_checksum(registry, "fraud", "1", "r1", {}) == digest  # type: ignore[arg-type]  # a retry: done
    assert registry.downloads == downloads


def test_registration_refuses_artifacts_changed_after_training(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "v1")
    trained = tree_sha256(folder)
    (folder / "model.skops").write_bytes(b"swapped")
    registry = FakeRegistry(folder)
    run_tags = {Tag.TRAINED_MODEL_SHA256: trained}
    message = (
        rf"^fraud v1: the registry's copy hashes to {tree_sha256(folder)}, but training computed {trained} before "
        r"upload \(MLflow run r1\); the artifacts changed after training, so no mlops.model_sha256 is recorded"
    )
    for _attempt in range(2):  # a retry refuses again
        with pytest.raises(ModelIntegrityError, match=message):
            record_checksum(registry, "fraud", "1", "r1", run_tags)  # type: ignore[arg-type]
    assert registry.tags == {}


def test_registration_refuses_a_run_without_a_trained_digest(tmp_path: Path) -> None:
    """A run trained before models were hashed before upload: nothing proves its files are genuine; fail closed."""
    registry = FakeRegistry(model_folder(tmp_path / "v1"))
    with pytest.raises(
        ModelIntegrityError, match=r"^fraud v1: its MLflow run r1 has no mlops.trained_model_sha256 tag"
    ):
        record_checksum(registry, "fraud", "1", "r1", {Tag.MLFLOW_RUN_ID: "r1"})  # type: ignore[arg-type]
    assert registry.tags == {} and registry.downloads == 0


def test_registration_with_signing_checks_the_runs_signature_and_copies_it(tmp_path: Path) -> None:
    key = KEY.encode()
    folder = model_folder(tmp_path / "v1")
    digest = tree_sha256(folder)
    registry = FakeRegistry(folder)
    edited = {Tag.TRAINED_MODEL_SHA256: "0" * 64, Tag.MODEL_HMAC: sign(key, "fraud", digest)}
    with pytest.raises(ModelIntegrityError, match=r"^fraud v1 \(MLflow run r1\): mlops.model_hmac does not match"):
        record_checksum(registry, "fraud", "1", "r1", edited, key)  # type: ignore[arg-type]
    with pytest.raises(ModelIntegrityError, match=r"^fraud v1 \(MLflow run r1\) has no mlops.model_hmac signature"):
        record_checksum(registry, "fraud", "1", "r1", {Tag.TRAINED_MODEL_SHA256: digest}, key)  # type: ignore[arg-type]
    assert registry.tags == {}

    signed = {Tag.TRAINED_MODEL_SHA256: digest, Tag.MODEL_HMAC: sign(key, "fraud", digest)}
    assert record_checksum(registry, "fraud", "1", "r1", signed, key) == digest  # type: ignore[arg-type]
    assert registry.tags == {Tag.MODEL_SHA256: digest, Tag.MODEL_HMAC: signed[Tag.MODEL_HMAC]}


def test_a_checksummed_but_unsigned_version_is_signed_by_a_retry_once_signing_is_on(tmp_path: Path) -> None:
    """The checksum tag alone does not end registration while signing is on: the signature must be there too."""
    key = KEY.encode()
    folder = model_folder(tmp_path / "v1")
    digest = tree_sha256(folder)
    registry = FakeRegistry(folder, {Tag.MODEL_SHA256: digest})
    signed = {Tag.TRAINED_MODEL_SHA256: digest, Tag.MODEL_HMAC: sign(key, "fraud", digest)}
    record_checksum(registry, "fraud", "1", "r1", signed, key)  # type: ignore[arg-type]
    assert registry.tags[Tag.MODEL_HMAC] == signed[Tag.MODEL_HMAC]
