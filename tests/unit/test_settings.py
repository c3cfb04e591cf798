"""The [mlops] settings: where each value comes from, and what a wrong one says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlops import settings

OPTION_KEYS = list(settings.OPTIONS)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in settings.OPTIONS.values():
        monkeypatch.delenv(option.env, raising=False)
        monkeypatch.delenv(option.airflow_env, raising=False)


@pytest.mark.parametrize("key", OPTION_KEYS)
def test_short_variable_wins_over_airflows_and_empty_means_unset(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    option = settings.OPTIONS[key]
    assert (option.env, option.airflow_env) == (f"AIRFLOW_MLOPS_{key.upper()}", f"AIRFLOW__MLOPS__{key.upper()}")
    monkeypatch.setenv(option.airflow_env, "from-airflow")
    assert settings.get(key) == "from-airflow"
    monkeypatch.setenv(option.env, "from-short")
    assert settings.get(key) == "from-short"
    monkeypatch.setenv(option.env, "  ")
    assert settings.get(key) == "from-airflow"


@pytest.mark.parametrize(
    ("executor", "refused"),
    [
        ("CeleryExecutor", "CeleryExecutor"),
        ("airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor", "KubernetesExecutor"),
        ("LocalExecutor,CeleryExecutor", "CeleryExecutor"),
        ("gpu:my_company.executors.GpuExecutor", "GpuExecutor"),  # unknown: it may run elsewhere
    ],
)
def test_a_distributed_executor_without_a_state_db_is_an_error_not_a_sqlite_file_per_worker(
    executor: str, refused: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    with pytest.raises(ValueError, match=rf"state_db is not set and the executor is {refused}:") as error:
        settings.state_db_url()
    assert "AIRFLOW__MLOPS__STATE_DB" in str(error.value)
    assert not (tmp_path / "airflow_mlops_state.db").exists()
    monkeypatch.setenv("AIRFLOW__MLOPS__STATE_DB", "postgresql+psycopg2://mlops@db/mlops")
    assert settings.state_db_url() == "postgresql+psycopg2://mlops@db/mlops"


def test_the_state_db_can_be_an_airflow_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``state_db_conn_id`` names a connection (here from ``AIRFLOW_CONN_*``, as a secrets backend would give it);
    the password is quoted into the URL, and a distributed executor accepts it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__MLOPS__STATE_DB_CONN_ID", "mlops_state")
    conn = {
        "conn_type": "postgres",
        "host": "db",
        "port": 5433,
        "login": "mlops",
        "password": "p@ss/w:rd",
        "schema": "s",
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STATE", json.dumps(conn))
    url = settings.state_db_url()
    assert url == "postgresql+psycopg2://mlops:p%40ss%2Fw%3Ard@db:5433/s"
    from sqlalchemy.engine import make_url

    assert make_url(url).password == "p@ss/w:rd"
    tls = {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem", "connect_timeout": 5}
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STATE", json.dumps({**conn, "extra": tls}))
    assert make_url(settings.state_db_url()).query == {
        "connect_timeout": "5",
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/ca.pem",
    }, "TLS settings reach the driver"
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    assert redact(f"connecting to {url} as p@ss/w:rd") == "connecting to *** as ***", "kept out of task logs"
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")  # a SQLite file only where tasks share a disk
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STATE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")}))
    assert settings.state_db_url() == f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("AIRFLOW__MLOPS__STATE_DB", "postgresql+psycopg2://other@db/mlops")  # the URL wins
    assert settings.state_db_url() == "postgresql+psycopg2://other@db/mlops"


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        (None, "the connection cannot be read"),
        ({"conn_type": "http", "host": "db"}, "got a connection of type 'http'; expected one of"),
        ({"conn_type": "postgres", "login": "mlops"}, "postgres connection without a host"),
        ({"conn_type": "sqlite"}, "sqlite connection without a host"),
        ({"conn_type": "postgres", "host": "db", "extra": {"sslmod": "require"}}, "got connection extras ['sslmod']"),
        ({"conn_type": "sqlite", "host": "/shared/state.db"}, "while the executor is CeleryExecutor; every worker"),
    ],
)
def test_a_state_db_connection_that_cannot_be_used_is_an_error_not_a_local_file(
    conn: dict[str, object] | None, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__MLOPS__STATE_DB_CONN_ID", "mlops_state_missing" if conn is None else "mlops_state")
    if conn is not None:
        monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STATE", json.dumps(conn))
    with pytest.raises(ValueError, match=r"\[mlops\] state_db_conn_id = 'mlops_state[a-z_]*': ") as error:
        settings.state_db_url()
    assert message in str(error.value)
    assert not (tmp_path / "airflow_mlops_state.db").exists()


def test_gateway_url_setting_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.gateway_url() is None
    monkeypatch.setenv("AIRFLOW__MLOPS__GATEWAY_URL", "http://gateway:8081")
    assert settings.gateway_url() == "http://gateway:8081"


@pytest.mark.parametrize("executor", ["LocalExecutor", "airflow.executors.local_executor.LocalExecutor", ""])
def test_a_local_executor_keeps_the_sqlite_default(
    executor: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    assert settings.state_db_url() == f"sqlite:///{tmp_path}/airflow_mlops_state.db"


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert settings.state_db_url() == f"sqlite:///{tmp_path}/airflow_mlops_state.db"
    assert settings.config_dir() == Path("dags/configs")
    assert settings.config_dir(default=tmp_path) == tmp_path
    assert settings.prediction_log_root() is None
    assert settings.estimator_allowlist() == ()
    assert settings.strict() is False
    assert settings.code_version() is None


def test_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__MLOPS__ESTIMATOR_ALLOWLIST", " xgboost., ,lightgbm.")
    assert settings.estimator_allowlist() == ("xgboost.", "lightgbm.")
    for raw, expected in (("TRUE", True), ("yes", True), ("1", True), ("off", False), ("false", False)):
        monkeypatch.setenv("AIRFLOW_MLOPS_STRICT", raw)
        assert settings.strict() is expected
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIG_DIR", "/srv/configs")
    assert settings.config_dir(default=Path("/elsewhere")) == Path("/srv/configs")


def test_a_misspelled_boolean_is_an_error_that_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_MLOPS_STRICT", "ture")
    with pytest.raises(ValueError, match=r"AIRFLOW_MLOPS_STRICT / \[mlops\] strict: got 'ture'; expected one of"):
        settings.strict()


def test_environ_for_child_processes() -> None:
    assert settings.environ(state_db="sqlite:////x.db", config_dir=Path("/c")) == {
        "AIRFLOW_MLOPS_STATE_DB": "sqlite:////x.db",
        "AIRFLOW_MLOPS_CONFIG_DIR": "/c",
    }
    with pytest.raises(KeyError):
        settings.environ(no_such_option="x")


PROBE = """
import json, sys
from airflow_mlops import settings
before = settings.state_db_url()
imported_airflow = "airflow" in sys.modules
import airflow.configuration  # what every Airflow component has loaded
print(json.dumps({"before": before, "after": settings.state_db_url(), "dir": str(settings.config_dir()),
                  "imported_airflow": imported_airflow}))
"""


@pytest.mark.integration  # a fresh interpreter that loads Airflow (~6 s): make test, not test-fast
def test_airflow_cfg_section_is_read_once_airflow_is_loaded(tmp_path: Path) -> None:
    """A real airflow.cfg in a fresh process: ``[mlops]`` applies in Airflow processes, and reading
    settings never imports Airflow by itself (the gateway and the CLI stay light)."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    (home / "airflow.cfg").write_text(
        "[core]\nload_examples = False\n\n[mlops]\nstate_db = sqlite:////from/airflow.cfg.db\nconfig_dir = /cfg/dir\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(home), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"].endswith("/airflow_mlops_state.db")  # Airflow not loaded yet: not read
    assert seen["after"] == "sqlite:////from/airflow.cfg.db"
    assert seen["dir"] == "/cfg/dir"
    assert seen["imported_airflow"] is False


def test_provider_config_documents_every_option() -> None:
    section = settings.provider_config()["mlops"]
    assert set(section["options"]) == set(OPTION_KEYS)
    assert section["options"]["state_db"]["sensitive"] is True
    for key, entry in section["options"].items():
        assert settings.OPTIONS[key].env in entry["description"]
        assert entry["type"] in ("string", "boolean")
