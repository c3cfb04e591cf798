"""Deployment-wide settings: the ``[mlops]`` section of Airflow's configuration.

Each option is read, first hit wins, from

1. the environment variable ``AIRFLOW_MLOPS_<OPTION>`` (the short spelling, for processes that are
   not Airflow: the gateway, the CLI, a notebook);
2. the environment variable ``AIRFLOW__MLOPS__<OPTION>`` — Airflow's own convention;
3. ``airflow.cfg`` ``[mlops] <option>``, when the process has loaded Airflow's configuration already
   (scheduler, workers, dag-processor, api-server). Reading it never imports Airflow: the gateway
   and the CLI stay light;
4. the option's default.

An empty value counts as unset. Nothing else in the package reads these variables
(``tests/unit/test_vocabulary.py`` checks it); :data:`OPTIONS` also feeds the provider's ``config``
metadata, so ``airflow config list`` documents the section.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "OPTIONS",
    "SECTION",
    "Option",
    "code_version",
    "config_dir",
    "environ",
    "estimator_allowlist",
    "executor",
    "gateway_url",
    "get",
    "model_signing_conn_id",
    "prediction_log_root",
    "state_db_url",
    "strict",
    "ui_mlflow_deadline",
]

SECTION = "mlops"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One option of the ``[mlops]`` section."""

    key: str
    description: str
    type: Literal["string", "boolean"] = "string"
    example: str | None = None
    default: str | None = None
    #: may hold a password (a database URL): Airflow masks it and accepts ``..._SECRET`` / ``..._CMD``
    sensitive: bool = False

    @property
    def env(self) -> str:
        """``AIRFLOW_MLOPS_<KEY>``: the short variable."""
        return f"AIRFLOW_MLOPS_{self.key.upper()}"

    @property
    def airflow_env(self) -> str:
        """``AIRFLOW__MLOPS__<KEY>``: Airflow's variable for the same option."""
        return f"AIRFLOW__{SECTION.upper()}__{self.key.upper()}"


OPTIONS: dict[str, Option] = {
    option.key: option
    for option in (
        Option(
            "config_dir",
            "Folder of per-model YAML configs read by the DAG file, the Models page and validate-config.",
            example="/opt/airflow/dags/configs",
        ),
        Option(
            "state_db",
            "SQLAlchemy URL of the state database (model locks, pending operations, audit trail). "
            "Default with a local executor: sqlite:///<cwd>/airflow_mlops_state.db; with a distributed one "
            "(Celery, Kubernetes, ...) this or state_db_conn_id is required, and tasks fail with a message "
            "saying so.",
            example="postgresql+psycopg2://airflow@postgres:5432/mlops",
            sensitive=True,
        ),
        Option(
            "state_db_conn_id",
            "Airflow connection of the state database, used when state_db is unset (conn type postgres or "
            "sqlite): its password stays in Airflow's connections or secrets backend.",
            example="mlops_state",
        ),
        Option(
            "prediction_log",
            "Deployment-wide prediction-log root for models whose config sets no serving.prediction_log.",
            example="s3://ml-logs/prediction-log",
        ),
        Option(
            "gateway_url",
            "Base URL of the serving gateway for models whose config sets no serving.gateway_url: "
            "<model>__rollback waits until it serves the restored version.",
            example="http://gateway:8081",
        ),
        Option(
            "estimator_allowlist",
            "Comma-separated dotted prefixes allowed in estimator.class besides 'sklearn.'.",
            example="xgboost.,lightgbm.",
        ),
        Option(
            "data_roots",
            "Comma-separated folders or URI prefixes a DAG run's conf or a new-data Asset event may point "
            "data_uri at, besides the folder of the model config's own data.uri.",
            example="/data/landing,s3://ml-data/landing",
        ),
        Option(
            "data_conn_ids",
            "Comma-separated Airflow connection ids a DAG run's conf or a new-data Asset event may name as "
            "data_conn_id, besides the model config's own data.conn_id.",
            example="aws_landing,wasb_landing",
        ),
        Option(
            "strict",
            "Raise on the first invalid model config at DAG parse time instead of building a __config_error DAG.",
            type="boolean",
            example="false",
            default="false",
        ),
        Option(
            "model_signing_conn_id",
            "Airflow connection whose password is the HMAC key that signs each model version's artifact "
            "digest at training; when set, every model load (the gate, the gateway) refuses a version whose "
            "signature is missing or wrong. Unset: digests are checked, not signed.",
            example="mlops_model_signing",
        ),
        Option(
            "ui_mlflow_deadline",
            "Seconds the Models page waits for MLflow per page; models not read by then are shown as "
            "unavailable instead of holding the api-server's request.",
            example="10",
            default="10",
        ),
        Option(
            "code_version",
            "Code version recorded in lineage (default: the package version plus the configs' git commit).",
            example="release-2026.12+build.7",
        ),
    )
}


def get(key: str) -> str | None:
    """The option's value (see the module docstring for where it comes from), ``None`` when unset."""
    option = OPTIONS[key]
    for name in (option.env, option.airflow_env):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    configured = _airflow_cfg(key)
    return configured if configured else option.default


def _airflow_cfg(key: str) -> str | None:
    """``[mlops] <key>`` from Airflow's configuration, only if this process has loaded it already."""
    module: Any = sys.modules.get("airflow.configuration")
    conf = getattr(module, "conf", None)
    if conf is None:
        return None
    value = conf.get(SECTION, key, fallback=None)  # a broken airflow.cfg fails here, loudly: never a silent default
    return str(value).strip() if value is not None else None


#: Set by ``airflow-mlops up`` in every process it starts (and so in their children): how it finds them again.
UP_HOME_ENV = "AIRFLOW_MLOPS_UP_HOME"


def environ(**values: str | Path) -> dict[str, str]:
    """Environment variables that set the given options for a child process (``{state_db: url}`` → env)."""
    return {OPTIONS[key].env: str(value) for key, value in values.items()}


def config_dir(default: Path | None = None) -> Path:
    """The model-config folder; ``default`` (else ``dags/configs`` under the current directory) when unset."""
    value = get("config_dir")
    return Path(value) if value else (default if default is not None else Path("dags/configs"))


#: Executors that run every task on this machine: a state DB in a local SQLite file is shared by all of them.
_LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def executor() -> str:
    """Airflow's ``[core] executor`` as this process sees it (``LocalExecutor`` when nothing says otherwise)."""
    value = os.environ.get("AIRFLOW__CORE__EXECUTOR", "").strip()
    module: Any = sys.modules.get("airflow.configuration")
    conf = getattr(module, "conf", None)
    if not value and conf is not None:
        value = str(conf.get("core", "executor", fallback="") or "").strip()
    return value or "LocalExecutor"


def _distributed(executors: str) -> list[str]:
    """The configured executors that may run tasks on other machines (unknown ones count: fail closed).

    Airflow 3 accepts a comma-separated list, each entry a name, a dotted path or ``alias:path``.
    """
    names = [entry.strip().rsplit(":", 1)[-1].rsplit(".", 1)[-1] for entry in executors.split(",") if entry.strip()]
    return [name for name in names if name not in _LOCAL_EXECUTORS]


def state_db_url() -> str:
    """The state database URL: ``state_db``, else the ``state_db_conn_id`` connection's; when neither is set,
    ``sqlite:///<cwd>/airflow_mlops_state.db`` on a local executor.

    Unset with a distributed executor (Celery, Kubernetes, ...) is an error: each worker would create its
    own SQLite file, so locks would not exclude and the audit trail would be split across machines.
    """
    configured = get("state_db")
    if configured:
        return configured
    conn_id = get("state_db_conn_id")
    if conn_id:
        return state_db_from_connection(conn_id)
    remote = _distributed(executor())
    if remote:
        option = OPTIONS["state_db"]
        raise ValueError(
            f"[mlops] state_db is not set and the executor is {', '.join(remote)}: every worker would keep its "
            f"own SQLite state DB (model locks, pending operations, audit trail). Set {option.airflow_env} (or "
            f"[mlops] state_db) to a database every worker reaches, e.g. {option.example}, or "
            f"{OPTIONS['state_db_conn_id'].airflow_env} to an Airflow connection of one"
        )
    return f"sqlite:///{Path.cwd() / 'airflow_mlops_state.db'}"


#: Airflow connection types the state DB may be, and their SQLAlchemy drivers.
_STATE_DB_DRIVERS = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2", "sqlite": "sqlite"}
#: A postgres connection's extras that reach the driver (libpq's TLS, timeout and session options).
_POSTGRES_EXTRAS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout", "options", "application_name"}
)


def state_db_from_connection(conn_id: str) -> str:
    """The SQLAlchemy URL of Airflow connection ``conn_id`` (``[mlops] state_db_conn_id``).

    A postgres connection's libpq extras (``sslmode``, ``sslrootcert``, ...) become URL query arguments; any
    other extra is refused rather than dropped (a TLS setting must not vanish on the way). The URL, which
    holds the password, is registered with Airflow's secrets masker.

    :raises ValueError: the connection cannot be read, is not a postgres or sqlite connection, has extras
        the state DB cannot honour, or is a SQLite file while tasks may run on other machines.
    """
    setting = f"[mlops] state_db_conn_id = {conn_id!r}"
    try:
        from airflow.sdk.bases.hook import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # not found, a secrets backend down: no silent fallback to a local file
        raise ValueError(f"{setting}: the connection cannot be read ({type(exc).__name__}: {exc})") from exc
    driver = _STATE_DB_DRIVERS.get(str(conn.conn_type or "").lower())
    if driver is None:
        raise ValueError(
            f"{setting}: got a connection of type {conn.conn_type!r}; expected one of {sorted(_STATE_DB_DRIVERS)}"
        )
    if driver == "sqlite":
        return _sqlite_state_db(setting, conn.host)
    if not conn.host:
        raise ValueError(f"{setting}: got a postgres connection without a host; expected the database server")
    extras = dict(conn.extra_dejson or {})
    unknown = sorted(set(extras) - _POSTGRES_EXTRAS)
    if unknown:
        raise ValueError(
            f"{setting}: got connection extras {unknown}; expected only libpq options {sorted(_POSTGRES_EXTRAS)}"
        )
    from sqlalchemy.engine import URL

    url = URL.create(
        driver,
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host,
        port=conn.port or None,
        database=conn.schema or None,
        query={key: str(value) for key, value in sorted(extras.items())},
    ).render_as_string(hide_password=False)
    _mask(url, conn.password)
    return url


def _sqlite_state_db(setting: str, path: str | None) -> str:
    if not path:
        raise ValueError(f"{setting}: got a sqlite connection without a host; expected the database file's path")
    remote = _distributed(executor())
    if remote:
        raise ValueError(
            f"{setting}: got a sqlite connection while the executor is {', '.join(remote)}; every worker would "
            "keep its own file. Expected a postgres connection every worker reaches"
        )
    return f"sqlite:///{path}"


def _mask(url: str, password: str | None) -> None:
    """Keep the state DB's URL and password out of task logs (no-op where Airflow's masker is absent)."""
    if not password:
        return
    try:
        from urllib.parse import quote_plus

        from airflow.sdk.log import mask_secret
    except ImportError:
        return
    for secret in (url, password, quote_plus(password)):
        mask_secret(secret)


def gateway_url() -> str | None:
    """The deployment-wide gateway URL, for models whose config names none."""
    return get("gateway_url")


def prediction_log_root() -> str | None:
    """The deployment-wide prediction-log root, if one is set."""
    return get("prediction_log")


def estimator_allowlist() -> tuple[str, ...]:
    """Extra dotted prefixes allowed for ``estimator.class``."""
    raw = get("estimator_allowlist") or ""
    return tuple(prefix.strip() for prefix in raw.split(",") if prefix.strip())


def strict() -> bool:
    """Whether an invalid config fails DAG parsing (``True``) or becomes a ``__config_error`` DAG."""
    raw = (get("strict") or "false").lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    option = OPTIONS["strict"]
    raise ValueError(f"{option.env} / [mlops] strict: got {raw!r}; expected one of {list(_TRUE + _FALSE)}")


def model_signing_conn_id() -> str | None:
    """The Airflow connection holding the model-signing HMAC key, if signing is on."""
    return get("model_signing_conn_id")


def ui_mlflow_deadline() -> float:
    """Seconds the Models page waits for MLflow per page (a positive number)."""
    raw = get("ui_mlflow_deadline") or "10"
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 < value < 3600):
        option = OPTIONS["ui_mlflow_deadline"]
        raise ValueError(f"{option.env} / [mlops] ui_mlflow_deadline: got {raw!r}; expected seconds in (0, 3600)")
    return value


def code_version() -> str | None:
    """An explicit code version for lineage, if one is set."""
    return get("code_version")


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of ``get_provider_info()``: the ``[mlops]`` section, documented."""
    return {
        SECTION: {
            "description": "airflow-mlops: where model configs, the state database and the prediction log live.",
            "options": {
                option.key: {
                    "description": f"{option.description} Environment: {option.env} or {option.airflow_env}.",
                    "version_added": "0.1.0",
                    "type": option.type,
                    "example": option.example,
                    "default": option.default,
                    **({"sensitive": True} if option.sensitive else {}),
                }
                for option in OPTIONS.values()
            },
        }
    }
