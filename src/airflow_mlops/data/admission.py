"""Which data a DAG run may be pointed at from outside: REST ``conf`` and Asset-event extras are hostile.

A model's config names its data (``data.uri``, ``data.conn_id``); operators' explicit arguments are
written by DAG authors. Both are trusted. A ``data_uri`` / ``data_conn_id`` that arrives with a DAG run
(``conf``) or a new-data Asset event is not: it is admitted only when

- the URI has no ``~``, no ``..`` segment, no control character, and a supported scheme;
- it lies under an *allowed root*: the folder of the config's own ``data.uri`` (the folder itself when
  ``data.uri`` is a folder), or one of ``[mlops] data_roots`` (comma-separated paths or URI prefixes);
- the connection is the config's ``data.conn_id`` or one of ``[mlops] data_conn_ids``.

Anything else fails the task before a byte is read, naming where the value came from, the field, the
value and what is allowed. Relative local paths resolve against the config's folder, as in the config.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Final

from airflow_mlops import settings
from airflow_mlops.data.io import SUPPORTED_SCHEMES
from airflow_mlops.exceptions import DataError

__all__ = ["admit_location", "allowed_roots"]

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_URI: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")


def _normalized(location: str) -> str:
    """A local path made absolute and normalized, or a URI with its path normalized (no trailing ``/``)."""
    match = _URI.match(location)
    if match is None or match["scheme"].lower() == "file":
        path = match["rest"] if match else location
        return str(Path(path).resolve())
    rest = posixpath.normpath("/" + match["rest"]).lstrip("/")
    return f"{match['scheme'].lower()}://{rest}"


def _folder_of(uri: str) -> str:
    """The folder a config's ``data.uri`` lives in: the URI itself for a folder, else its parent."""
    if uri.endswith("/"):
        return _normalized(uri)
    match = _URI.match(uri)
    if match is None or match["scheme"].lower() == "file":
        path = Path(match["rest"] if match else uri)
        return str((path if path.is_dir() else path.parent).resolve())
    return _normalized(uri.rsplit("/", 1)[0] if "/" in match["rest"] else uri)


def allowed_roots(config_uri: str) -> list[str]:
    """Where run-time data may come from: the config's data folder and ``[mlops] data_roots``."""
    extra = [root.strip() for root in (settings.get("data_roots") or "").split(",") if root.strip()]
    return [_folder_of(config_uri), *(_normalized(root) for root in extra)]


def _under(location: str, root: str) -> bool:
    return location == root or location.startswith(root.rstrip("/") + "/")


def admit_location(
    uri: str,
    conn_id: str | None,
    *,
    source: str,
    config_uri: str,
    config_conn_id: str | None,
    base: Path,
) -> tuple[str, str | None]:
    """``(uri, conn_id)`` as the task will use them, or :class:`DataError` saying why they are refused.

    :param source: Where the values came from, for the message (``"DAG run conf"``, an Asset event).
    :param config_uri: The config's ``data.uri``, resolved (its folder is always allowed).
    :param base: The folder a relative local ``uri`` is relative to (the config's folder).
    """
    if not isinstance(uri, str) or not uri.strip():
        raise DataError(f"{source}: data_uri: got {uri!r}; expected a non-empty path or URI")
    if _CONTROL.search(uri) or (conn_id is not None and _CONTROL.search(str(conn_id))):
        raise DataError(f"{source}: data_uri / data_conn_id: control characters are not allowed")
    match = _URI.match(uri)
    scheme = match["scheme"].lower() if match else "file"
    if scheme not in SUPPORTED_SCHEMES:
        raise DataError(
            f"{source}: data_uri: got {uri!r}; scheme {scheme!r} is not one of {', '.join(SUPPORTED_SCHEMES)}"
        )
    path = match["rest"] if match else uri
    if path.startswith("~") or ".." in re.split(r"[\\/]", path):
        raise DataError(f"{source}: data_uri: got {uri!r}; '~' and '..' are not allowed in a run-time data location")
    if match is None and not Path(uri).is_absolute():
        uri = str(base / uri)
    location = _normalized(uri)
    roots = allowed_roots(config_uri)
    if not any(_under(location, root) for root in roots):
        raise DataError(
            f"{source}: data_uri: got {uri!r}; expected a location under one of {roots} "
            "(the config's data folder, or [mlops] data_roots)"
        )
    allowed_conns = {c for c in (config_conn_id,) if c} | {
        c.strip() for c in (settings.get("data_conn_ids") or "").split(",") if c.strip()
    }
    if conn_id and conn_id not in allowed_conns:
        raise DataError(
            f"{source}: data_conn_id: got {conn_id!r}; expected one of {sorted(allowed_conns)} "
            "(the config's data.conn_id, or [mlops] data_conn_ids)"
        )
    return (location if scheme == "file" and match is None else uri), conn_id
