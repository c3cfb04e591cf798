"""Read and write data by URI: local paths, ``file://``, ``s3://`` and Azure ``wasb(s)://`` / ``abfs(s)://``.

Cloud access goes through Airflow hooks, so credentials live in Airflow connections and never in a model
config. Airflow, boto, Azure and pandas are imported inside the functions: DAG files import this package at
parse time and must stay cheap. Every failure is a :class:`~airflow_mlops.exceptions.DataError` whose
message names the URI, the connection and what went wrong, so a failed task says which data and which
credentials were involved.

ADLS Gen2 (``abfs://``, ``abfss://``) is read and written with blob-level calls on the same account: they
work against every hierarchical-namespace account, and Azurite (our test emulator) has no Gen2 directory
API.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import unquote

from airflow_mlops._optional import Extra, require
from airflow_mlops.exceptions import DataError, MissingExtraError

if TYPE_CHECKING:
    import pandas as pd
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

__all__ = [
    "DEFAULT_AWS_CONN_ID",
    "DEFAULT_WASB_CONN_ID",
    "SUPPORTED_SCHEMES",
    "is_folder",
    "list_data_files",
    "read_bytes",
    "read_table",
    "write_bytes",
]

DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_WASB_CONN_ID = "wasb_default"
SUPPORTED_SCHEMES: tuple[str, ...] = ("file", "s3", "wasb", "wasbs", "abfs", "abfss")
_AZURE_SCHEMES = frozenset({"wasb", "wasbs", "abfs", "abfss"})
# the hook module each remote kind needs, and the airflow-mlops extra that installs it
_HOOK_MODULES: dict[str, tuple[str, Extra]] = {
    "s3": ("airflow.providers.amazon.aws.hooks.s3", "aws"),
    "azure": ("airflow.providers.microsoft.azure.hooks.wasb", "azure"),
}
_FORMAT_BY_SUFFIX = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_FORMAT_ALIASES = {"csv": "csv", "parquet": "parquet", "pq": "parquet"}

_T = TypeVar("_T")
_Kind = Literal["local", "s3", "azure"]


@dataclass(frozen=True)
class _Location:
    """A parsed data URI; ``container`` is the S3 bucket or Azure container, ``path`` the file/key/blob."""

    uri: str
    kind: _Kind
    path: str
    container: str = ""
    account: str = ""


def read_bytes(uri: str, conn_id: str | None = None) -> bytes:
    """Return the content at ``uri``; ``conn_id`` picks the Airflow connection for S3/Azure URIs."""
    loc = _parse_uri(uri)
    if loc.kind == "local":
        return _read_local(loc)
    if loc.kind == "s3":
        return _remote("read", loc, conn_id or DEFAULT_AWS_CONN_ID, lambda conn: _read_s3(loc, conn, conn_id))
    return _remote("read", loc, conn_id or DEFAULT_WASB_CONN_ID, lambda conn: _read_azure(loc, conn))


def write_bytes(uri: str, data: bytes, conn_id: str | None = None) -> None:
    """Store ``data`` at ``uri`` (replacing it); local parent directories are created. Used to stage data."""
    loc = _parse_uri(uri)
    if loc.kind == "local":
        _write_local(loc, data)
    elif loc.kind == "s3":
        _remote("write", loc, conn_id or DEFAULT_AWS_CONN_ID, lambda conn: _write_s3(loc, conn, conn_id, data))
    else:
        _remote("write", loc, conn_id or DEFAULT_WASB_CONN_ID, lambda conn: _write_azure(loc, conn, data))


def read_table(uri: str, conn_id: str | None = None, fmt: str | None = None) -> tuple[pd.DataFrame, bytes]:
    """Read ``uri`` once and parse it as CSV or Parquet.

    The raw bytes come back with the frame so the caller can fingerprint exactly what was parsed, without
    a second read that could see different data. The format is ``fmt`` or the URI's suffix (``.csv``,
    ``.parquet``, ``.pq``); it is checked before any I/O.
    """
    table_format = _table_format(_parse_uri(uri), fmt)
    data = read_bytes(uri, conn_id)
    return _parse_table(uri, data, table_format), data


# --- URI parsing ----------------------------------------------------------------------------------------


def _parse_uri(uri: str) -> _Location:
    """Split ``uri`` by hand (not ``urlsplit``): keys and blob names may contain ``?``, ``#`` or ``%``."""
    if not uri:
        raise DataError("Invalid data URI '': it is empty")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return _Location(uri=uri, kind="local", path=uri)
    scheme = scheme.lower()
    if scheme == "file":
        return _parse_file_uri(uri, rest)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket or not key:
            raise DataError(f"Invalid data URI {uri!r}: S3 URIs must look like s3://bucket/path/to/key")
        return _Location(uri=uri, kind="s3", path=key, container=bucket)
    if scheme in _AZURE_SCHEMES:
        return _parse_azure_uri(uri, scheme, rest)
    supported = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
    raise DataError(f"Unsupported data URI scheme {scheme!r} in {uri!r}: use a local path or one of {supported}")


def _parse_file_uri(uri: str, rest: str) -> _Location:
    """``file:///abs/path`` (or ``file://localhost/abs/path``); the path is percent-decoded like a URL."""
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest.startswith("/"):
        raise DataError(f"Invalid data URI {uri!r}: file URIs must name an absolute local path (file:///abs/path)")
    return _Location(uri=uri, kind="local", path=unquote(rest))


def _parse_azure_uri(uri: str, scheme: str, rest: str) -> _Location:
    """``<scheme>://container@account.<blob|dfs>.core.windows.net/path/to/blob``."""
    netloc, _, blob = rest.partition("/")
    container, at, host = netloc.partition("@")
    if not at or not container or not host or not blob:
        service = "dfs" if scheme.startswith("abfs") else "blob"
        raise DataError(
            f"Invalid data URI {uri!r}: Azure URIs must look like "
            f"{scheme}://container@account.{service}.core.windows.net/path/to/blob"
        )
    return _Location(uri=uri, kind="azure", path=blob, container=container, account=host.split(".", 1)[0])


# --- local files ----------------------------------------------------------------------------------------


def _read_local(loc: _Location) -> bytes:
    path = Path(loc.path)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"Cannot read {loc.uri!r}: local file {str(path)!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise DataError(f"Cannot read {loc.uri!r}: {str(path)!r} is a directory, not a file") from exc
    except OSError as exc:
        raise DataError(f"Cannot read {loc.uri!r}: {exc}") from exc


def _write_local(loc: _Location, data: bytes) -> None:
    path = Path(loc.path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise DataError(f"Cannot write {loc.uri!r}: {exc}") from exc


# --- remote stores --------------------------------------------------------------------------------------


def _remote(op: str, loc: _Location, conn: str, action: Callable[[str], _T]) -> _T:
    """Run ``action(conn)``; turn whatever the hook or SDK raises into a DataError naming URI and connection.

    A missing extra (no Amazon or Azure provider installed) is a :class:`MissingExtraError` saying which
    ``pip install 'airflow-mlops[...]'`` to run, raised before any connection is looked up.
    """
    if loc.kind in _HOOK_MODULES:
        _hook_module(loc, f"Cannot {op} {loc.uri!r} (connection {conn!r}):")
    try:
        return action(conn)
    except (DataError, MissingExtraError):
        raise
    except Exception as exc:
        raise DataError(f"Cannot {op} {loc.uri!r} (connection {conn!r}): {_explain(exc, loc, conn)}") from exc


def _hook_module(loc: _Location, purpose: str) -> Any:
    """The Airflow hook module for ``loc``'s storage (``require``: a missing extra names its pip install)."""
    module, extra = _HOOK_MODULES[loc.kind]
    return require(module, extra, purpose=purpose)


def _s3_hook(conn: str, explicit_conn_id: str | None) -> S3Hook:
    """An ``S3Hook`` for ``conn``, failing on a named but undefined connection.

    ``S3Hook`` only logs a warning and falls back to boto3's default credential chain when its connection
    is missing, which would silently use whatever credentials the worker happens to have. Without an
    explicit id (``aws_default``) that fallback is Airflow's documented behaviour, so we keep it.
    """
    module, extra = _HOOK_MODULES["s3"]
    s3 = require(module, extra, purpose=f"S3 access (connection {conn!r})")

    if explicit_conn_id is not None:
        s3.S3Hook.get_connection(conn)
    hook: S3Hook = s3.S3Hook(aws_conn_id=conn)
    return hook


def _read_s3(loc: _Location, conn: str, explicit_conn_id: str | None) -> bytes:
    # One GetObject (not get_key's HEAD + GET): a single request, and S3 says NoSuchKey vs NoSuchBucket.
    response = _s3_hook(conn, explicit_conn_id).get_conn().get_object(Bucket=loc.container, Key=loc.path)
    body: bytes = response["Body"].read()
    return body


def _write_s3(loc: _Location, conn: str, explicit_conn_id: str | None, data: bytes) -> None:
    _s3_hook(conn, explicit_conn_id).load_bytes(data, key=loc.path, bucket_name=loc.container, replace=True)


def _wasb_hook(loc: _Location, conn: str, op: str) -> WasbHook:
    """A ``WasbHook`` for ``conn``, refusing a connection that points at another account than the URI."""
    wasb = _hook_module(loc, f"Cannot {op} {loc.uri!r} (connection {conn!r}):")

    hook: WasbHook = wasb.WasbHook(wasb_conn_id=conn)
    actual = getattr(hook.blob_service_client, "account_name", None)
    if actual and actual.lower() != loc.account.lower():
        raise DataError(
            f"Cannot {op} {loc.uri!r} (connection {conn!r}): the URI names storage account {loc.account!r} "
            f"but the connection points at account {actual!r}"
        )
    return hook


def _read_azure(loc: _Location, conn: str) -> bytes:
    hook = _wasb_hook(loc, conn, "read")
    data: bytes = hook.download(container_name=loc.container, blob_name=loc.path).readall()
    return data


def _write_azure(loc: _Location, conn: str, data: bytes) -> None:
    hook = _wasb_hook(loc, conn, "write")
    hook.upload(container_name=loc.container, blob_name=loc.path, data=data, overwrite=True)


# --- error messages -------------------------------------------------------------------------------------


def _explain(exc: Exception, loc: _Location, conn: str) -> str:
    """One line saying what went wrong, in terms of the URI's parts rather than the SDK's."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    if isinstance(exc, AirflowNotFoundException):
        return f"Airflow connection {conn!r} is not defined (create it, or set AIRFLOW_CONN_{conn.upper()})"
    if loc.kind == "s3":
        return _explain_s3(exc, loc)
    return _explain_azure(exc, loc)


def _explain_s3(exc: Exception, loc: _Location) -> str:
    errors = require("botocore.exceptions", "aws", purpose=f"Explaining an S3 error on {loc.uri!r}")

    if isinstance(exc, errors.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in {"NoSuchKey", "404", "NotFound"}:
            return f"key {loc.path!r} not found in bucket {loc.container!r}"
        if code == "NoSuchBucket":
            return f"bucket {loc.container!r} does not exist"
        if code in {"AccessDenied", "403", "Forbidden"}:
            return f"access denied to key {loc.path!r} in bucket {loc.container!r}"
        return f"S3 error {code}: {error.get('Message') or _first_line(exc)}"
    if isinstance(exc, errors.BotoCoreError):
        return f"S3 request failed: {_first_line(exc)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _explain_azure(exc: Exception, loc: _Location) -> str:
    errors = require("azure.core.exceptions", "azure", purpose=f"Explaining an Azure error on {loc.uri!r}")

    if isinstance(exc, errors.ResourceNotFoundError):
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            return f"container {loc.container!r} does not exist in account {loc.account!r}"
        return f"blob {loc.path!r} not found in container {loc.container!r}"
    if isinstance(exc, errors.ClientAuthenticationError):
        return f"authentication to account {loc.account!r} failed: {_first_line(exc)}"
    if isinstance(exc, errors.AzureError):
        return f"Azure storage error: {_first_line(exc)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- tables ---------------------------------------------------------------------------------------------


def _table_format(loc: _Location, fmt: str | None) -> str:
    if fmt is not None:
        table_format = _FORMAT_ALIASES.get(fmt.lower().lstrip("."))
        if table_format is None:
            raise DataError(f"Unsupported table format {fmt!r} for {loc.uri!r}: use 'csv' or 'parquet'")
        return table_format
    suffix = PurePosixPath(loc.path).suffix.lower()
    table_format = _FORMAT_BY_SUFFIX.get(suffix)
    if table_format is None:
        raise DataError(
            f"Cannot tell the table format of {loc.uri!r} from its suffix {suffix!r}: "
            "name it .csv, .parquet or .pq, or pass fmt='csv' or fmt='parquet'"
        )
    return table_format


def _parse_table(uri: str, data: bytes, table_format: str) -> pd.DataFrame:
    import pandas as pd

    try:
        if table_format == "csv":
            return pd.read_csv(io.BytesIO(data))
        return pd.read_parquet(io.BytesIO(data))
    except (ValueError, OSError) as exc:  # pandas' parser errors and pyarrow's ArrowInvalid are ValueErrors
        raise DataError(f"Cannot parse {uri!r} as {table_format}: {_first_line(exc)}") from exc


# --- folders of data files (retraining on the newest window) --------------------------------------------


def is_folder(uri: str) -> bool:
    """A local directory, or an object-store prefix written with a trailing ``/``."""
    loc = _parse_uri(uri) if "://" in uri else _Location(uri=uri, kind="local", path=uri)
    return Path(loc.path).is_dir() if loc.kind == "local" else uri.endswith("/")


def list_data_files(uri: str, conn_id: str | None = None) -> list[tuple[str, datetime]]:
    """The CSV/Parquet files under the folder ``uri`` with their last-modified time (UTC), oldest first."""
    loc = _parse_uri(uri)
    if loc.kind == "local":
        found = _list_local(loc)
    elif loc.kind == "s3":
        found = _remote("list", loc, conn_id or DEFAULT_AWS_CONN_ID, lambda conn: _list_s3(loc, conn, conn_id))
    else:
        found = _remote("list", loc, conn_id or DEFAULT_WASB_CONN_ID, lambda conn: _list_azure(loc, conn))
    files = [(name, ts) for name, ts in found if Path(name.rsplit("/", 1)[-1]).suffix.lower() in _FORMAT_BY_SUFFIX]
    return sorted(files, key=lambda item: (item[1], item[0]))


def _list_local(loc: _Location) -> list[tuple[str, datetime]]:
    folder = Path(loc.path)
    if not folder.is_dir():
        raise DataError(f"Cannot list {loc.uri!r}: {str(folder)!r} is not a directory")
    return [
        (str(p), datetime.fromtimestamp(p.stat().st_mtime, tz=UTC))
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
    ]


def _list_s3(loc: _Location, conn: str, explicit_conn_id: str | None) -> list[tuple[str, datetime]]:
    client = _s3_hook(conn, explicit_conn_id).get_conn()
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.container, Prefix=loc.path):
        for item in page.get("Contents", []):
            found.append((f"s3://{loc.container}/{item['Key']}", item["LastModified"].astimezone(UTC)))
    return found


def _list_azure(loc: _Location, conn: str) -> list[tuple[str, datetime]]:
    hook = _wasb_hook(loc, conn, "list")
    container: Any = hook.blob_service_client.get_container_client(loc.container)
    base = loc.uri[: len(loc.uri) - len(loc.path)]
    return [
        (f"{base}{blob.name}", blob.last_modified.astimezone(UTC))
        for blob in container.list_blobs(name_starts_with=loc.path)
    ]
