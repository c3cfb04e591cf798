"""``make demo``: the fraud model's whole loop on embedded SQLite Airflow + SQLite MLflow, on loopback.

1. ``fraud__train`` on batch 1 registers v1 (no champion yet: only absolute gates decide); the demo
   promotes it to champion (audited).
2. ``fraud__train`` on batch 2 (passed as ``conf``, as a REST caller would) is gated against v1.
3. The serving gateway starts on loopback and generated traffic flows (with delayed labels).
4. ``fraud__deploy`` takes v2 through shadow -> canary steps -> champion.
5. A deliberately broken candidate (it cannot handle a merchant category it never saw) passes its
   offline gate, goes to canary while new-category traffic arrives, and is rolled back automatically.
6. The traffic each version served, and the audit trail of alias moves, are printed.

The terminal gets the story; Airflow's and MLflow's own output (task logs, the expected rollback's traceback)
goes to ``<home>/demo.log``. Everything lives under one project-local folder; no network beyond loopback; no
telemetry. ``make up`` runs the same loop live, with the Airflow and MLflow UIs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from airflow_mlops import settings
from airflow_mlops.vocabulary import AssetKind, Tag, asset_uri

MODEL = "fraud"
#: Short windows so the demo's rollout takes seconds, not hours (the shipped config uses 1 h / 30 min).
DEMO_ROLLOUT = {
    "shadow": {"enabled": True, "duration": 4, "min_requests": 40, "min_agreement": 0.6},
    "canary": {"steps": [10, 50, 100], "step_duration": 4, "check_interval": 1, "max_error_rate": 0.02},
}
#: Monitoring over the last 20 s of traffic, so the demo's drift shows up at once.
DEMO_MONITORING = {"window": 20, "cooldown": "1h", "drifted_share": 0.3}


def demo_environment(home: Path, dags_folder: Path) -> dict[str, str]:
    """Environment for an isolated Airflow + MLflow under ``home`` (set before Airflow is imported)."""
    home = home.resolve()
    mlflow_conn = {
        "conn_type": "mlflow",
        "host": f"sqlite:///{home / 'mlflow.db'}",
        "extra": {"artifact_root": str(home / "mlartifacts")},
    }
    return {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder.resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("DEMO_LOG_LEVEL", "WARNING"),
        **settings.environ(config_dir=home / "configs", state_db=f"sqlite:///{home / 'state.db'}"),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(mlflow_conn),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "DO_NOT_TRACK": "1",
        "PYTHONWARNINGS": "ignore",
        "GX_ANALYTICS_ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    }


def write_demo_config(home: Path, dags_folder: Path, *, broken: bool = False, gateway_url: str | None = None) -> Path:
    """The shipped fraud config with absolute paths, demo-length rollout windows and a local prediction log."""
    source = dags_folder.resolve() / "configs" / f"{MODEL}.yaml"
    raw = yaml.safe_load(source.read_text())
    raw["data"]["uri"] = str((source.parent / raw["data"]["uri"]).resolve())
    raw["gates"]["behaviour"]["cases"] = str(source.parent / raw["gates"]["behaviour"]["cases"])
    raw["rollout"] = {**raw.get("rollout", {}), **json.loads(json.dumps(DEMO_ROLLOUT))}
    raw["serving"] = {"prediction_log": str(home.resolve() / "prediction-log"), "gateway_url": gateway_url}
    raw["monitoring"] = {**raw.get("monitoring", {}), **DEMO_MONITORING}
    # batches land in this folder; a retrain takes the newest one
    raw["data"]["uri"] = str(home.resolve() / "data" / MODEL)
    if broken:
        # the "hotfix" candidate: strict about categories, and rushed past the shadow phase
        raw["features"]["unknown_categories"] = "error"
        raw["rollout"]["shadow"]["enabled"] = False
    path = home / "configs" / f"{MODEL}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_demo(home: Path, dags_folder: Path = Path("dags")) -> int:
    """Reset ``home``, migrate Airflow's database, then run the demo in a child with the right environment."""
    reset_home(home)
    first = home / "data" / MODEL / "transactions_batch_001.csv"
    first.parent.mkdir(parents=True)
    shutil.copy(dags_folder / "data" / MODEL / first.name, first)
    write_demo_config(home, dags_folder)
    return run_in_demo_environment(home, dags_folder, "airflow_mlops.examples.demo")


def reset_home(home: Path) -> None:
    """Delete ``home`` and recreate it with an empty Airflow home."""
    if home.exists():
        shutil.rmtree(home)
    (home / "airflow").mkdir(parents=True)


def run_in_demo_environment(home: Path, dags_folder: Path, module: str) -> int:
    """Migrate the demo's Airflow database, then run ``python -m module <home> <dags_folder>`` in a child with
    :func:`demo_environment` (Airflow reads its configuration at import, so the demo proper needs its own
    process); return the child's exit code."""
    env = {**os.environ, **demo_environment(home, dags_folder)}
    airflow = Path(sys.executable).with_name("airflow")
    print(f"[demo] Airflow metadata DB: {home / 'airflow' / 'airflow.db'} (airflow db migrate)", flush=True)
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    child = [sys.executable, "-m", module, str(home), str(dags_folder.resolve())]
    return subprocess.run(child, env=env, check=False).returncode


class _Clock:
    def __init__(self, story: TextIO | None = None) -> None:
        self.start = time.monotonic()
        self.story = story or sys.stdout

    def say(self, text: str) -> None:
        self.tell(f"[demo {time.monotonic() - self.start:6.1f}s] {text}")

    def tell(self, text: str = "") -> None:
        """A line of the story (the terminal, even while Airflow's output goes to the demo's log)."""
        print(text, file=self.story, flush=True)


#: The demo's clock: prints ``[demo  12.3s] text`` lines.
DemoClock = _Clock


def _stage_batch(home: Path, batch: int) -> str:
    from airflow_mlops.examples.datasets import fraud_batch

    path = home / "data" / MODEL / f"transactions_batch_{batch:03d}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    fraud_batch(batch).to_csv(path, index=False)
    return str(path)


def _dag(kind: str) -> Any:
    return model_dag(MODEL, kind)


def model_dag(model: str, kind: str) -> Any:
    """The ``<model>__<kind>`` DAG built from the configured config folder (run it with ``.test()``)."""
    from airflow_mlops.factories import build_dags

    return build_dags(None)[f"{model}__{kind}"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Gateway:
    def __init__(self, home: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cli = Path(sys.executable).with_name("airflow-mlops")
        self.log = (home / "gateway.log").open("wb")
        args = [str(cli), "serve", "--model", MODEL, "--tracking-uri", os.environ["MLFLOW_TRACKING_URI"]]
        args += ["--log-root", str(home / "prediction-log"), "--port", str(self.port)]
        args += ["--poll-interval", "0.5", "--flush-interval", "0.5"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.proc.returncode}); see {self.log.name}")
            try:
                ready = httpx.get(f"{self.url}/ready", timeout=2.0).json()
                if predicate(ready["models"][MODEL]):
                    return dict(ready)
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gateway at {self.url} did not reach the expected state; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def _traffic(url: str) -> Any:
    """Transactions from batch 3 at a steady pace, labels sent back as feedback."""
    from airflow_mlops.examples.datasets import fraud_batch
    from airflow_mlops.examples.traffic import TrafficGenerator

    return TrafficGenerator(url, MODEL, fraud_batch(3), "is_fraud")


def _gate_lines(client: Any, version: str) -> list[str]:
    return gate_lines(client, MODEL, version)


def gate_lines(client: Any, model: str, version: str) -> list[str]:
    """A version's gate verdict, one line per check of its gate report, and where the report is."""
    mv = client.get_model_version(model, version)
    report = Path(mv.tags.get(Tag.GATE_REPORT, "").replace("gate_report.md", "gate_report.json"))
    lines = [f"  v{version}: gate={mv.tags.get(Tag.GATE)}  data={Path(mv.tags.get(Tag.DATA_URI, '')).name}"]
    if report.is_file():
        for check in json.loads(report.read_text())["checks"]:
            value = check["value"]
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"    {check['status']:>7}  {check['name'][:60]:<60} {shown:>8}  {check['threshold'] or ''}")
    lines.append(f"    report {mv.tags.get(Tag.GATE_REPORT)}")
    return lines


def _served_table(home: Path) -> list[str]:
    from airflow_mlops.prediction_log import LocalStorage, read_predictions

    rows = read_predictions(LocalStorage(home / "prediction-log"), MODEL)
    if rows.empty:
        return ["  (no traffic logged)"]
    rows["ok"] = rows["error"].isna()
    table = rows.groupby(["version", "role"]).agg(requests=("request_id", "size"), ok=("ok", "sum"))
    return [
        f"  v{version:<3} {role:<9} {int(r.requests):>6} requests  {int(r.requests - r.ok):>4} errors"
        for (version, role), r in table.iterrows()
    ]


def _drift_events() -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == asset_uri(MODEL, AssetKind.DRIFT))
        ).all()
    return [dict(row[0] or {}) for row in rows]


def _close_the_loop(clock: _Clock, client: Any, target: Any, traffic: Any, gateway: _Gateway, home: Path) -> None:
    """Clean traffic -> no drift; drifted batch + traffic -> drift event -> retrain -> rollout -> new champion."""
    from airflow_mlops.examples.fraud import generate_transactions

    time.sleep(20)  # a window of clean traffic
    run = _dag("monitor").test()
    clock.say(f"monitor (clean traffic): {run.state}; drift events so far: {len(_drift_events())}")

    landed = time.monotonic()
    drifted = generate_transactions(6000, seed=40, data_drift=1.0, concept_drift=0.6)
    drifted.to_csv(home / "data" / MODEL / "transactions_batch_004.csv", index=False)
    traffic.use(generate_transactions(6000, seed=41, data_drift=1.0, concept_drift=0.6))
    clock.say("a drifted batch lands in the data folder and live traffic drifts the same way")
    time.sleep(20)
    run = _dag("monitor").test()
    events = _drift_events()
    reasons = "; ".join(events[-1].get("reasons", [])) if events else "none"
    clock.say(f"monitor (drifted traffic): {run.state}; drift event: {reasons}")
    if not events:
        return
    drift = asset_uri(MODEL, AssetKind.DRIFT)
    clock.say(f"fraud__train runs on {drift} (the scheduler starts it; dag.test() runs it here)")
    retrain_start = time.monotonic()
    if _dag("train").test().state != "success":
        clock.say("  retrain did not pass its gate; the champion stays")
        return
    new = str(max(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")))
    clock.say(f"  v{new} trained on the newest batch, gated against the champion -> candidate; rolling out")
    run = _dag("deploy").test(run_conf={"version": new})
    gateway.wait(lambda m: m["champion"] == new, timeout=15)
    serving = time.monotonic()
    clock.say(f"  fraud__deploy {run.state}: v{new} is champion -> {target.state(MODEL).aliases()}")
    clock.say(
        f"timeline: drifted batch landed -> retrain started {retrain_start - landed:.1f}s, "
        f"-> new champion serving {serving - landed:.1f}s"
    )


def main(home: Path, dags_folder: Path) -> int:
    """The demo with Airflow's and MLflow's output (file descriptors 1 and 2) in ``<home>/demo.log``."""
    story = os.fdopen(os.dup(1), "w")
    log_path = home / "demo.log"
    with log_path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    clock = _Clock(story)
    clock.tell(f"[demo] Airflow's and MLflow's own output (task logs, tracebacks): {log_path}")
    try:
        code = _story(clock, home, dags_folder)
    except Exception as exc:
        import traceback

        traceback.print_exc()  # into the log
        clock.say(f"the demo failed: {type(exc).__name__}: {exc} (details in {log_path})")
        return 1
    if code != 0:
        clock.say(f"the demo did not finish as expected (exit {code}); Airflow's side of it is in {log_path}")
        return code
    clock.tell("\n[demo] see the same loop live, in the Airflow UI and the MLflow UI: make up")
    return code


def _story(clock: _Clock, home: Path, dags_folder: Path) -> int:
    import mlflow

    from airflow_mlops.deploy.audit import AuditTrail, format_history
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    client = mlflow.MlflowClient()
    target = LocalGatewayTarget.from_options(client=client, state_url=settings.state_db_url())

    clock.say("run 1: fraud__train on the shipped batch 1 (no champion yet)")
    if _dag("train").test().state != "success":
        return 1
    target.promote(MODEL, "1", actor="make demo", reason="first champion")
    clock.say("  v1 registered and promoted to champion")

    batch2 = _stage_batch(home, 2)
    clock.say(f"run 2: fraud__train with conf data_uri={batch2}, gated against champion v1")
    if _dag("train").test(run_conf={"data_uri": batch2}).state != "success":
        return 1
    for line in _gate_lines(client, "1") + _gate_lines(client, "2"):
        clock.tell(line)

    gateway = _Gateway(home)
    traffic: Any = None
    try:
        gateway.wait(lambda m: m["champion"] == "1")
        clock.say(f"gateway serving v1 at {gateway.url}; generated traffic starts (labels fed back)")
        traffic = _traffic(gateway.url)
        traffic.start()
        write_demo_config(home, dags_folder, gateway_url=gateway.url)

        clock.say("deploy v2: shadow -> canary 10% -> 50% -> 100% -> champion")
        run = _dag("deploy").test(run_conf={"version": "2"})
        clock.say(f"  fraud__deploy {run.state}; registry: {target.state(MODEL).aliases()}")
        gateway.wait(lambda m: m["champion"] == "2", timeout=10)

        write_demo_config(home, dags_folder, broken=True, gateway_url=gateway.url)
        clock.say("run 3: a 'hotfix' candidate that fails on merchant categories it never saw")
        if _dag("train").test().state != "success":
            return 1
        broken = str(max(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")))
        clock.say(f"  v{broken} passed its offline gate (its data has no new categories); deploy with shadow skipped")
        traffic.override, traffic.override_share = {"merchant_category": "crypto"}, 0.05
        clock.say("  traffic now includes a new merchant category 'crypto' (5%)")
        run = _dag("deploy").test(run_conf={"version": broken})
        state = target.state(MODEL)
        reason = client.get_model_version(MODEL, broken).tags.get(Tag.ROLLBACK_REASON, "-")
        clock.say(
            f"  as expected, fraud__deploy {run.state}: v{broken} rolled back automatically ({reason}); "
            f"champion stays v{state.champion}"
        )
        gateway.wait(lambda m: m["canary"] is None and m["champion"] == "2", timeout=10)
        traffic.override_share = 0.0

        _close_the_loop(clock, client, target, traffic, gateway, home)
    finally:
        if traffic is not None:
            traffic.stop()
        gateway.stop()

    clock.tell(f"\n[demo] client responses by HTTP status: {traffic.statuses if traffic else {}}")
    clock.tell("[demo] traffic each version served (from the prediction log):")
    for line in _served_table(home):
        clock.tell(line)
    clock.tell("\n[demo] audit trail (airflow-mlops history fraud):")
    clock.tell(format_history(AuditTrail(settings.state_db_url()).history(MODEL)))
    clock.tell("\n[demo] where to look")
    clock.tell(f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'} --port 5000")
    clock.tell(f"  artifacts:  {home / 'mlartifacts' / MODEL}/<run id>/artifacts/(gate|validation|evaluation)")
    clock.tell(f"  predictions: {home / 'prediction-log' / MODEL}  gateway log: {home / 'gateway.log'}")
    state_env = settings.OPTIONS["state_db"].env
    clock.tell(f"  history:    {state_env}=sqlite:///{home / 'state.db'} .venv/bin/airflow-mlops history fraud")
    healthy = traffic is not None and set(traffic.statuses) == {200}
    return 0 if healthy and target.state(MODEL).champion not in (None, "1") else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2])))
