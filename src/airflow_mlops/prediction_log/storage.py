"""Where the prediction log's part files live: the :class:`Storage` protocol and two implementations.

A storage does two things. It **writes a part file atomically** (:meth:`Storage.write_part`): a reader sees
the whole file or nothing, and a written file survives a crash of the writer. And it **hands out the
filesystem that lists and reads part files** (:meth:`Storage.filesystem`): a ``pyarrow.fs.FileSystem`` and
the root's path in it, which is what ``pyarrow.dataset`` consumes (see :mod:`.reader`).

- :class:`LocalStorage`: a local directory; a part is written to a temporary name, fsynced and renamed.
- :class:`FsspecStorage`: any ``fsspec.AbstractFileSystem`` under a root prefix (Azure Blob through
  ``adlfs``, ``memory://`` in tests, ...); an object store shows an object only once its upload completed.

Nothing here knows about Airflow: ``airflow_mlops.hooks.object_storage`` builds a storage from a root URI
and an Airflow connection.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from airflow_mlops.exceptions import DataError
from airflow_mlops.prediction_log.wal import fsync_dir, write_all

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    from fsspec import AbstractFileSystem

__all__ = ["FsspecStorage", "LocalStorage", "Storage", "list_files"]


class Storage(Protocol):
    """Part files under one root; ``rel_path`` is ``/``-separated and relative to the root."""

    @property
    def uri(self) -> str:
        """The root as users name it (local path or URI); part paths returned by readers start with it."""
        ...

    def write_part(self, rel_path: str, data: bytes) -> None:
        """Store ``data`` at ``rel_path`` atomically; raise :class:`~airflow_mlops.exceptions.DataError`."""
        ...

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The filesystem that lists and reads part files, and the root's path in it.

        Called once per read, so a storage may hand out a filesystem with fresh credentials each time.
        """
        ...


class LocalStorage:
    """Part files in a local directory: written to a temporary name, fsynced, renamed, directory fsynced."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.path)!r})"

    @property
    def uri(self) -> str:
        return str(self.path)

    def write_part(self, rel_path: str, data: bytes) -> None:
        """Readers never see a half-written part file, and a written one survives power loss."""
        path = self.path / rel_path
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # dot: readers skip it
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            # A full disk must not fill up further with the half-written copies of every retried flush.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise DataError(f"Cannot write prediction-log part file {str(path)!r}: {exc}") from exc

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), str(self.path)


class FsspecStorage:
    """Part files under ``root`` (a path inside ``fs``, e.g. ``container/prefix``) of an fsspec filesystem.

    :param fs: the filesystem; an fsspec wrapper of a pyarrow filesystem (``ArrowFSWrapper``) is unwrapped
        for reading.
    :param root: the root's path inside ``fs``.
    :param uri: how users name the root (default: ``fs.unstrip_protocol(root)``).
    :param connection: named in write errors (the Airflow layer passes its connection id).
    """

    def __init__(
        self, fs: AbstractFileSystem, root: str, *, uri: str | None = None, connection: str | None = None
    ) -> None:
        self.fs = fs
        # As the filesystem spells its paths (the memory filesystem's start with "/"), which the listings match.
        self.root = fs._strip_protocol(root).rstrip("/")
        self._uri = (uri or fs.unstrip_protocol(root.strip("/"))).rstrip("/")
        self._connection = connection

    def __repr__(self) -> str:
        return f"FsspecStorage({type(self.fs).__name__}, {self.root!r})"

    @property
    def uri(self) -> str:
        return self._uri

    def write_part(self, rel_path: str, data: bytes) -> None:
        """One ``pipe_file``: an object store shows the object only once the upload completed."""
        try:
            self.fs.pipe_file(f"{self.root}/{rel_path}", data)
        except Exception as exc:
            via = f" (connection {self._connection!r})" if self._connection else ""
            raise DataError(
                f"Cannot write prediction-log part file {self._uri + '/' + rel_path!r}{via}: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        import pyarrow.fs as pafs
        from fsspec.implementations.arrow import ArrowFSWrapper

        if isinstance(self.fs, ArrowFSWrapper):
            return self.fs.fs, self.root
        # fsspec caches directory listings per (cached) instance: a reader must see parts written since.
        self.fs.invalidate_cache()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs)), self.root


def list_files(storage: Storage, rel_dir: str) -> tuple[pafs.FileSystem, str, list[str]]:
    """Every file under ``rel_dir`` (recursively) as paths of the storage's filesystem, sorted.

    Also returns the filesystem and the root's path in it, for reading what was listed. Names starting
    with ``.`` or ``_`` (temporary files) are skipped; a missing directory has no files.
    """
    import pyarrow.fs as pafs

    fs, base = storage.filesystem()
    directory = f"{base}/{rel_dir}".rstrip("/")
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    try:
        try:
            infos = fs.get_file_info(selector)
        except FileNotFoundError:
            # pyarrow can still report "not found" for a folder a writer is creating at this instant (seen on a
            # local disk under load, despite allow_not_found); the second listing sees it whole
            infos = fs.get_file_info(selector)
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot list {storage.uri + '/' + rel_dir!r}: {_first_line(exc)}") from exc
    files = [
        info.path for info in infos if info.type == pafs.FileType.File and not info.base_name.startswith((".", "_"))
    ]
    return fs, base, sorted(files)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
