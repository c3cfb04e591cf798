"""MLflow credentials per server, held in this process and never in ``os.environ``.

MLflow reads tracking credentials from environment variables only (``MLFLOW_TRACKING_USERNAME`` /
``_PASSWORD`` / ``_TOKEN``). Exported there, a connection's secret outlives the call, reaches every
subprocess, and goes to whichever server the next client talks to — another connection's included.
Instead, :class:`~airflow_mlops.hooks.mlflow.MlflowHook` registers a connection's credentials for its
server's origin (scheme, host, port) here, and MLflow's request-auth plugin interface (entry point
``mlflow.request_auth_provider``, selected with ``MLFLOW_TRACKING_AUTH=airflow-mlops``) adds the
``Authorization`` header only to requests for that origin. One set of credentials per MLflow server per
process: the connection used last wins.

Nothing here imports mlflow or requests at import time (the hook module is imported while DAG files parse).
"""

from __future__ import annotations

import base64
import threading
from functools import cache
from typing import Any
from urllib.parse import urlsplit

__all__ = ["AUTH_NAME", "OriginCredentialsProvider", "authorization_for", "origin_of", "register", "registered"]

#: The provider's name, the value of ``MLFLOW_TRACKING_AUTH`` that selects it.
AUTH_NAME = "airflow-mlops"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_lock = threading.Lock()
_headers: dict[str, str] = {}  # origin -> Authorization header value


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of an http(s) URL (default port filled in); ``None`` for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return f"{scheme}://{parts.hostname.lower()}:{port}"


def register(url: str, *, username: str | None = None, password: str | None = None, token: str | None = None) -> bool:
    """Use these credentials for requests to ``url``'s origin (token over login, as MLflow does).

    Returns whether anything was registered: nothing for a URI that is not http(s) (a database or file
    store has no request to authenticate) or for empty credentials.
    """
    origin = origin_of(url)
    if origin is None:
        return False
    if token:
        header = f"Bearer {token}"
    elif username:
        header = "Basic " + base64.standard_b64encode(f"{username}:{password or ''}".encode()).decode()
    else:
        return False
    with _lock:
        _headers[origin] = header
    return True


def authorization_for(url: str) -> str | None:
    """The ``Authorization`` header registered for ``url``'s origin, if any."""
    origin = origin_of(url)
    if origin is None:
        return None
    with _lock:
        return _headers.get(origin)


def registered() -> frozenset[str]:
    """Origins that have credentials in this process (for diagnostics and tests; never the secrets)."""
    with _lock:
        return frozenset(_headers)


@cache
def _auth_class() -> type[Any]:
    from requests.auth import AuthBase

    class OriginAuth(AuthBase):  # type: ignore[misc]
        """Adds the registered ``Authorization`` header to a request for a registered origin; others untouched."""

        def __call__(self, request: Any) -> Any:
            header = authorization_for(request.url)
            if header is not None:
                request.headers["Authorization"] = header
            return request

    return OriginAuth


class OriginCredentialsProvider:
    """MLflow ``RequestAuthProvider`` (developer-stable plugin API: ``get_name`` / ``get_auth``).

    Registered through the ``mlflow.request_auth_provider`` entry point in ``pyproject.toml``; MLflow
    instantiates it and calls ``get_auth()`` for every request while ``MLFLOW_TRACKING_AUTH`` names it.
    """

    def get_name(self) -> str:
        return AUTH_NAME

    def get_auth(self) -> Any:
        return _auth_class()()
