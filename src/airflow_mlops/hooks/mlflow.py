"""``MlflowHook``: an Airflow connection of type ``mlflow`` -> an MLflow tracking/registry client.

The tracking URI lives in the connection's host (``http://mlflow:5000``, ``https://...``,
``sqlite:////abs/path/mlflow.db``, ``postgresql+psycopg2://...``, or MLflow's own ``databricks`` /
``databricks://<profile>`` / ``databricks-uc``, passed on unchanged). Credentials come from the
connection (login/password -> basic auth, extra ``token`` -> bearer token), never from config files, and
are kept per MLflow server in this process (:mod:`airflow_mlops.hooks.mlflow_auth`), not exported to the
environment.
The optional extra ``ui_url`` is the MLflow UI's base URL for links (Models page, operator extra
links); without it an http(s) tracking URI is used.
mlflow is imported only when a client is needed, so DAG files stay cheap to parse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

if TYPE_CHECKING:
    from mlflow import MlflowClient

_CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
#: Selects MLflow's request-auth plugin; our provider adds a registered server's credentials to its requests.
_AUTH_ENV = "MLFLOW_TRACKING_AUTH"
#: Tracking/registry URIs MLflow understands without ``://`` (Databricks workspace, Unity Catalog).
_SCHEME_ONLY_URIS = frozenset({"databricks", "databricks-uc"})


class MlflowHook(BaseHook):
    """Talk to an MLflow tracking server / registry through an Airflow connection.

    :param mlflow_conn_id: The Airflow connection id (type ``mlflow``); host holds the tracking URI.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"host": "Tracking URI", "login": "Username", "password": "Password"},
            "placeholders": {
                "host": "http://127.0.0.1:5000 or sqlite:////abs/path/mlflow.db",
                "extra": '{"token": "<bearer token>", "registry_uri": "<optional>", "artifact_root": "<optional>", '
                '"ui_url": "<optional MLflow UI base URL for links>"}',
            },
        }

    @cached_property
    def _settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.mlflow_conn_id)
        host = (conn.host or "").strip()
        if not host:
            raise ValueError(f"connection {self.mlflow_conn_id!r}: host is empty; set it to the MLflow tracking URI")
        if "://" not in host and host not in _SCHEME_ONLY_URIS:
            host = f"{conn.schema or 'http'}://{host}"
        if conn.port and host.startswith(("http://", "https://")) and host.count(":") < 2:
            host = f"{host.rstrip('/')}:{conn.port}"
        extra = conn.extra_dejson or {}
        credentials = {}
        if conn.login:
            credentials["MLFLOW_TRACKING_USERNAME"] = conn.login
            credentials["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
        if extra.get("token"):
            credentials["MLFLOW_TRACKING_TOKEN"] = str(extra["token"])
        return {
            "tracking_uri": host,
            "registry_uri": extra.get("registry_uri") or host,
            "artifact_root": extra.get("artifact_root"),
            "ui_url": extra.get("ui_url"),
            "credentials": credentials,
        }

    @property
    def tracking_uri(self) -> str:
        return str(self._settings["tracking_uri"])

    @property
    def artifact_root(self) -> str | None:
        """Where new experiments keep artifacts (extra ``artifact_root``); the server's default otherwise."""
        root = self._settings["artifact_root"]
        return str(root) if root else None

    @property
    def ui_url(self) -> str | None:
        """The MLflow UI's base URL for links: extra ``ui_url``, else the tracking URI when it is http(s).

        Never carries credentials (``user:password@`` is dropped); ``None`` for a ``sqlite:`` or
        database tracking URI without ``ui_url`` (no UI to link to).
        """
        from airflow_mlops.ui.data import mlflow_ui_base

        return mlflow_ui_base(self.tracking_uri, self._settings["ui_url"])

    def _use_credentials(self) -> None:
        """Register this connection's credentials for its servers' origins and select the provider.

        Credentials reach MLflow only through :mod:`airflow_mlops.hooks.mlflow_auth`, never ``os.environ``.
        If ``MLFLOW_TRACKING_AUTH`` already names another provider (Kubernetes, a plugin of yours), a
        connection with credentials cannot be honoured without replacing it: that is an error, not a guess.
        """
        from airflow_mlops.hooks import mlflow_auth

        credentials = self._settings["credentials"]
        if not credentials:
            return
        uris = {self._settings["tracking_uri"], self._settings["registry_uri"]}
        kwargs = {
            "username": credentials.get("MLFLOW_TRACKING_USERNAME"),
            "password": credentials.get("MLFLOW_TRACKING_PASSWORD"),
            "token": credentials.get("MLFLOW_TRACKING_TOKEN"),
        }
        if not any([mlflow_auth.register(uri, **kwargs) for uri in uris]):
            return  # a database or file store: no HTTP request to authenticate
        current = os.environ.get(_AUTH_ENV)
        if current and current != mlflow_auth.AUTH_NAME:
            raise ValueError(
                f"connection {self.mlflow_conn_id!r} has credentials, but {_AUTH_ENV}={current!r} selects another "
                f"MLflow auth provider; unset it or remove the connection's login/token"
            )
        os.environ[_AUTH_ENV] = mlflow_auth.AUTH_NAME

    @contextmanager
    def activate(self) -> Iterator[MlflowClient]:
        """Point mlflow's fluent API at this connection (URI + credentials) for the block; yield a client.

        Restores exactly what was there before: the global URIs (including "never set"). Credential
        variables found in the environment are hidden for the block, so they never go to this
        connection's server; the connection's own credentials travel through the auth provider.
        """
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        settings = self._settings
        self._use_credentials()
        saved_env = {k: os.environ.get(k) for k in (*_CREDENTIAL_ENV, *_URI_ENV)}
        saved_tracking = tracking_utils._tracking_uri
        saved_registry = registry_utils._registry_uri
        for key in _CREDENTIAL_ENV:
            os.environ.pop(key, None)
        mlflow.set_tracking_uri(settings["tracking_uri"])
        mlflow.set_registry_uri(settings["registry_uri"])
        try:
            yield mlflow.MlflowClient(tracking_uri=settings["tracking_uri"], registry_uri=settings["registry_uri"])
        finally:
            mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]  # None = "not set", as found
            registry_utils._registry_uri = saved_registry
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def get_conn(self) -> MlflowClient:
        """An explicit client for this connection's tracking and registry URIs; mlflow's globals stay as they are.

        Use it wherever only the client is needed (sensors, triggers, the Models page): concurrent users
        of different connections do not interfere, and the connection's login/token is sent only to its
        own server (see :mod:`airflow_mlops.hooks.mlflow_auth`).
        """
        import mlflow

        self._use_credentials()
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self._settings["registry_uri"])

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.activate() as client:
                client.search_experiments(max_results=1)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Connected to MLflow at {self.tracking_uri}"
