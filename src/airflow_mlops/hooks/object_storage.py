"""Object storage for the prediction log, built from a root URI and an Airflow connection.

The prediction log (:mod:`airflow_mlops.prediction_log`) does not import Airflow; it writes and reads
through a :class:`~airflow_mlops.prediction_log.Storage`. This module is where a connection becomes one:

- local path or ``file://`` root: :class:`~airflow_mlops.prediction_log.LocalStorage` (no Airflow needed);
- ``wasb(s)://`` / ``abfs(s)://``: :class:`~airflow_mlops.prediction_log.FsspecStorage` over the ``adlfs``
  filesystem that Airflow's object storage (``airflow.sdk.io.attach("abfs", conn_id)``, the backend of
  ``ObjectStoragePath``) builds from the connection;
- ``s3://``: :class:`S3Storage`. ``s3fs`` cannot be installed next to the Amazon provider, so writes go
  through the connection's ``S3Hook`` (its boto3 session refreshes temporary credentials, which a gateway
  running for days needs), and reads through ``pyarrow.fs.S3FileSystem`` built at each read from the
  session's current credentials, endpoint and region (``pyarrow.dataset`` lists and reads natively).

One hook, client or filesystem per storage: building one costs 0.1-0.4 s, which would dominate a flush
every second. Errors say which URI and which connection (``data.io``'s messages).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.data.io import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    _Location,
    _parse_uri,
    _remote,
    _s3_hook,
    _wasb_hook,
)
from airflow_mlops.exceptions import DataError
from airflow_mlops.prediction_log.storage import FsspecStorage, LocalStorage

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.credentials import ReadOnlyCredentials
    from fsspec import AbstractFileSystem

    from airflow_mlops.prediction_log.storage import Storage

__all__ = ["S3Storage", "prediction_log_storage"]


def prediction_log_storage(root: str, conn_id: str | None = None) -> Storage:
    """The storage of the prediction log rooted at ``root``.

    :param root: local path, ``file://`` URI, ``s3://bucket[/prefix]`` or
        ``wasb(s)://`` / ``abfs(s)://container@account.<blob|dfs>.core.windows.net[/prefix]``.
    :param conn_id: Airflow connection for object-store roots (default ``aws_default`` / ``wasb_default``);
        ignored for local roots.
    :raises DataError: the URI is malformed or unsupported, or the connection cannot be used.
    """
    root = root.rstrip("/") or root
    loc = _parse_uri(f"{root}/_")  # a child URI always has a key, even for a bare ``s3://bucket`` root
    if loc.kind == "local":
        return LocalStorage(Path(loc.path).parent)
    if loc.kind == "s3":
        return S3Storage(root, conn_id)
    conn = conn_id or DEFAULT_WASB_CONN_ID
    root_loc = _root_location(root, loc)
    fs = _remote("use", root_loc, conn, lambda conn: _adlfs(root_loc, conn))
    return _AzureStorage(fs, root_loc, conn)


class _AzureStorage(FsspecStorage):
    """An Azure container prefix; a read from a container that does not exist fails instead of finding nothing."""

    def __init__(self, fs: AbstractFileSystem, loc: _Location, conn: str) -> None:
        super().__init__(fs, f"{loc.container}/{loc.path}", uri=loc.uri, connection=conn)
        self._loc, self._conn = loc, conn

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        import pyarrow.fs as pafs

        fs, base = super().filesystem()
        found = _remote("read", self._loc, self._conn, lambda _: fs.get_file_info(self._loc.container))
        if found.type == pafs.FileType.NotFound:
            raise DataError(
                f"Cannot read {self.uri!r} (connection {self._conn!r}): "
                f"container {self._loc.container!r} does not exist"
            )
        return fs, base


def _adlfs(loc: _Location, conn: str) -> AbstractFileSystem:
    from airflow.sdk.io import attach

    _wasb_hook(loc, conn, "use")  # refuses a connection that points at another account than the URI
    fs: AbstractFileSystem = attach("abfs", conn_id=conn).fs
    return fs


def _root_location(root: str, loc: _Location) -> _Location:
    return _Location(root, loc.kind, loc.path[: -len("/_")], loc.container, loc.account)


class S3Storage:
    """Prediction-log part files under ``s3://bucket[/prefix]``, through one Airflow AWS connection.

    :param root: ``s3://bucket`` or ``s3://bucket/prefix``.
    :param conn_id: the Airflow AWS connection (default ``aws_default``, which may fall back to boto3's
        credential chain as ``S3Hook`` does; a named connection must exist).
    """

    def __init__(self, root: str, conn_id: str | None = None) -> None:
        self._uri = root.rstrip("/") or root
        loc = _parse_uri(f"{self._uri}/_")
        if loc.kind != "s3":
            raise ValueError(f"S3Storage needs an s3:// root, got {root!r}")
        self._bucket = loc.container
        self._key_root = loc.path[: -len("_")]  # "" or "prefix/"
        self._conn = conn_id or DEFAULT_AWS_CONN_ID
        self._hook: S3Hook = _remote(
            "use", _root_location(self._uri, loc), self._conn, lambda conn: _s3_hook(conn, conn_id)
        )
        self._session: Any = None  # boto3.Session, built on first read
        self._session_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Storage({self._uri!r}, conn_id={self._conn!r})"

    @property
    def uri(self) -> str:
        return self._uri

    def write_part(self, rel_path: str, data: bytes) -> None:
        """One upload: S3 shows the object only once it completed."""
        key = f"{self._key_root}{rel_path}"
        loc = _Location(f"{self._uri}/{rel_path}", "s3", key, self._bucket)
        _remote("write", loc, self._conn, lambda _: self._hook.load_bytes(data, key, self._bucket, replace=True))

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """``pyarrow.fs.S3FileSystem`` with the connection's current credentials, endpoint and region."""
        import pyarrow.fs as pafs

        loc = _Location(self._uri, "s3", self._key_root, self._bucket)
        credentials = _remote("read", loc, self._conn, lambda _: self._credentials())
        config = self._hook.conn_config
        options: dict[str, object] = {}
        if credentials is not None:
            options.update(
                access_key=credentials.access_key, secret_key=credentials.secret_key, session_token=credentials.token
            )
        if config.endpoint_url:
            options["endpoint_override"] = config.endpoint_url
        if self._hook.conn_region_name:
            options["region"] = self._hook.conn_region_name
        fs = pafs.S3FileSystem(**options)
        # A prefix with no objects lists as nothing, and so would a bucket that does not exist: tell them apart.
        if _remote("read", loc, self._conn, lambda _: fs.get_file_info(self._bucket)).type == pafs.FileType.NotFound:
            raise DataError(
                f"Cannot read {self._uri!r} (connection {self._conn!r}): bucket {self._bucket!r} does not exist"
            )
        return fs, f"{self._bucket}/{self._key_root}".rstrip("/")

    def _credentials(self) -> ReadOnlyCredentials | None:
        """The session's credentials now (a refreshable session renews them when they are about to expire)."""
        with self._session_lock:
            if self._session is None:
                self._session = self._hook.get_session()
            session = self._session
        found = session.get_credentials()
        return None if found is None else found.get_frozen_credentials()
