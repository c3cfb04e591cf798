"""HMAC signatures over model checksums: only a holder of the key can publish a model that will be loaded.

A checksum proves that the artifacts have not changed since they were hashed. It does not prove who
hashed them: anyone who can write to MLflow can register another model and tag it with that model's own
correct checksum. When ``[mlops] model_signing_conn_id`` is set, the key is that Airflow connection's
password, and:

1. training signs the checksum of the folder it is about to upload and tags the run with the signature
   (``mlops.model_hmac``);
2. registration checks the run's signature before it trusts the run's checksum, and copies the signature
   to the version;
3. every load (the gate, the gateway) recomputes the signature over the version's ``mlops.model_sha256``
   and compares the two in constant time.

A missing or wrong signature, or a key that cannot be read, refuses the model: the checks fail closed.

The signed message binds the registered model's name and the checksum, and nothing else. Both are fixed
once the version exists, while aliases and other tags change. It is three lines joined by ``\\n``:
:data:`CONTEXT`, the model name (UTF-8), and the 64-hex-digit checksum. The checksum cannot contain a
newline, so the message has only one reading. The signature is the lowercase hex HMAC-SHA256 of that
message.

Pure functions, apart from key resolution, which imports Airflow only when it is called.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from airflow_mlops import settings
from airflow_mlops.registry.checksum import ModelIntegrityError
from airflow_mlops.vocabulary import Tag

__all__ = ["CONTEXT", "MIN_KEY_LENGTH", "SigningKeyError", "configured_key", "key_from_connection", "sign", "verify"]

#: First line of every signed message: a signature made for another purpose never verifies here.
CONTEXT: Final = b"airflow-mlops model checksum v1"
#: Shortest key accepted (characters of the connection's password), as for the gateway's API keys.
MIN_KEY_LENGTH: Final = 16
_DIGEST = re.compile(r"[0-9a-f]{64}")


class SigningKeyError(ModelIntegrityError):
    """Signing is on but its key cannot be read, so every signature check refuses until it can."""


def message(model: str, digest: str) -> bytes:
    """The canonical bytes that are signed for ``model`` with checksum ``digest``."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"checksum: got {digest!r}; expected 64 lowercase hex digits (a SHA-256)")
    return b"\n".join((CONTEXT, model.encode("utf-8"), digest.encode("ascii")))


def sign(key: bytes, model: str, digest: str) -> str:
    """Hex HMAC-SHA256 of :func:`message` under ``key``."""
    return hmac.new(key, message(model, digest), hashlib.sha256).hexdigest()


def verify(key: bytes, model: str, digest: str, signature: str | None, *, subject: str) -> None:
    """Raise ``ModelIntegrityError`` unless ``signature`` is the signature of ``model`` with checksum ``digest``.

    :param subject: What the signature belongs to, e.g. ``"fraud v3"``. Every error message starts with it.
    """
    if not signature:
        raise ModelIntegrityError(
            f"{subject} has no {Tag.MODEL_HMAC} signature, and model signing is on; refusing an unsigned model"
        )
    try:
        expected = sign(key, model, digest)
    except ValueError as exc:
        raise ModelIntegrityError(f"{subject}: cannot check its {Tag.MODEL_HMAC} signature: {exc}") from exc
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode("utf-8")):
        raise ModelIntegrityError(
            f"{subject}: {Tag.MODEL_HMAC} does not match model {model!r} with checksum {digest} under the "
            "signing key (it was signed with another key, or the signature, checksum or model name was edited); "
            "refusing the model"
        )


def configured_key() -> bytes | None:
    """The signing key when ``[mlops] model_signing_conn_id`` is set; ``None`` when signing is off."""
    conn_id = settings.model_signing_conn_id()
    return key_from_connection(conn_id) if conn_id else None


def key_from_connection(conn_id: str) -> bytes:
    """The password of Airflow connection ``conn_id``, as the HMAC key (UTF-8).

    :raises SigningKeyError: the connection cannot be read, or its password is empty or shorter than
        :data:`MIN_KEY_LENGTH` characters.
    """
    setting = f"[mlops] model_signing_conn_id = {conn_id!r}"
    try:
        from airflow.sdk.bases.hook import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # not found, a secrets backend down, Airflow not installed: all refuse
        raise SigningKeyError(
            f"model signing is on ({setting}) but the connection cannot be read "
            f"({type(exc).__name__}: {exc}); refusing models until it can"
        ) from exc
    password = conn.password or ""
    if not password:
        raise SigningKeyError(
            f"model signing is on ({setting}) but the connection has no password (the password is the key); "
            "refusing models until it has one"
        )
    if len(password) < MIN_KEY_LENGTH:
        raise SigningKeyError(
            f"model signing is on ({setting}) but the connection's password is {len(password)} characters long, "
            f"shorter than {MIN_KEY_LENGTH}; use a long random key"
        )
    return password.encode("utf-8")
