"""The closed loop in a live Airflow: drifted traffic -> drift event -> retrain -> rollout -> new champion serving.

Airflow runs for real on loopback (scheduler, dag-processor, triggerer, api-server; LocalExecutor on a
fresh PostgreSQL database, see ``live_airflow.py``), next to the serving gateway and a traffic generator:

1. v1 is trained on the shipped clean batch (in this process, with the real operators) and made champion.
2. The prediction log already holds an hour of clean traffic (``log_clean_hour``: written with the real
   ``PredictionLog`` as a gateway writes it, last hour's timestamps, the champion's own answers), so the
   monitoring window (90 minutes) spans two hour partitions and the summarize task is mapped twice.
3. The drifted batch lands (t0): a new training file appears at the config's ``data.uri`` and the generator
   switches to drifted rows. Once the drifted rows dominate the monitoring window, ``fraud__monitor`` is
   triggered again: it emits ``mlops://fraud/drift``; ``fraud__train`` starts by itself on that event, trains
   on the new file, passes its gate and emits ``mlops://fraud/candidate``; ``fraud__deploy`` takes the
   candidate through shadow and canary to champion, and the gateway serves it.

Why the retrain sees the new data: ``retraining.on_new_data`` is off and ``data.uri`` points at
``fraud_latest.csv``, which does not exist until t0, while v1 was trained on the shipped batch-1 file. The
monitor's reference is v1's own training file (by its recorded URI and fingerprint), so it never changes.
(Announcing the file with a ``mlops://fraud/data`` event instead would start a retrain before any drift
was detected, which is not the loop under test.)

The windows are shortened through the test config (shadow 10 s / 30 requests, canary 50 % -> 100 % in
10 s steps checked every second; see ``DEFERRED_WINDOW_S`` for why not 5 s). The test prints the time from
t0 to the retrain run starting and to the new champion answering clients. Near the top of the hour the
drifted batch waits for the hour to turn (see ``settle_hour_boundary``).

The part from t0 on (``drift_to_new_champion``, ``assert_chain``) is shared with
``test_closed_loop_celery.py``, the same loop on Celery workers; each writes its seconds from t0 to
``test-artifacts/closed-loop/<executor>.json`` for ``benchmarks/closed_loop.py``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from live_airflow import LiveAirflow
from support import GatewayProcess, train_version

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
FIGURES = REPO / "test-artifacts" / "closed-loop"
MODEL = "fraud"
DRIFT_URI = f"mlops://{MODEL}/drift"
CANDIDATE_URI = f"mlops://{MODEL}/candidate"
CLEAN_HOUR_ROWS = 300  # last hour's clean traffic, already in the prediction log when the test begins
DRIFTED_RATE = 60.0  # requests/s once the drifted batch landed
DRIFTED_OVER_CLEAN = 3.0  # monitor again once drifted answers outnumber clean ones this much in the window
NEW_HOUR_POLL_S = 30.0  # NewPredictionHourTrigger's poll interval (the monitor's new-hour watcher)
HOUR_MARGIN_S = 150.0  # no top of the hour this close after t0 (see settle_hour_boundary)
# Deferred windows of 10 s, not 5: Airflow 3.3.2 fails a deferred task whose trigger fires before the scheduler
# has drained the executor's "success" event of the defer-exit (apache/airflow#67287, #72716). That event is
# normally ~0.05 s late, but was once 5 s late on this loaded 2-core machine, which failed a 5 s canary step.
DEFERRED_WINDOW_S = 10
ROLLOUT = {
    "target": "local",
    "shadow": {
        "enabled": True,
        "duration": DEFERRED_WINDOW_S,
        "min_requests": 30,
        "min_agreement": 0.5,  # concept drift: the retrained model is meant to disagree with v1 at times
        "max_error_rate": 0.05,
        "max_latency_p95_ms": 1000.0,  # a loaded 2-core machine; the check is about errors, not speed
    },
    "canary": {
        "steps": [50, 100],
        "step_duration": DEFERRED_WINDOW_S,
        "check_interval": 1,
        "max_error_rate": 0.05,
        "max_latency_p95_ms": 1000.0,
    },
}


def log(message: str) -> None:
    print(f"[closed-loop {datetime.now(UTC).strftime('%H:%M:%S.%f')[:-3]}] {message}", flush=True)


def parse_ts(value: str | None, default: datetime) -> datetime:
    return datetime.fromisoformat(value) if value else default


class Traffic:
    """One client thread posting fraud transactions at a set rate; the row source switches clean -> drifted.

    With more than one gateway URL the requests go round-robin, as a load balancer in front of replicas would.
    """

    def __init__(self, *urls: str) -> None:
        from airflow_mlops.examples.datasets import fraud_batch
        from airflow_mlops.examples.fraud import generate_transactions

        self.rows = {
            "clean": fraud_batch(11).drop(columns=["is_fraud"]).to_dict("records"),
            "drifted": generate_transactions(6000, seed=12, data_drift=1.0)
            .drop(columns=["is_fraud"])
            .to_dict("records"),
        }
        self.urls = urls
        self.phase, self.rate = "clean", 0.0
        self.ok = {"clean": 0, "drifted": 0}
        self.statuses: dict[int | str, int] = {}
        self.served: dict[tuple[str, str], int] = {}
        self.first_seen: dict[tuple[str, str], datetime] = {}
        self.ok_by_url = dict.fromkeys(urls, 0)
        self.last_ok: datetime | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def set(self, phase: str, rate: float) -> None:
        with self._lock:
            self.phase, self.rate = phase, rate

    def _run(self) -> None:
        i = 0
        next_at = time.monotonic()
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                with self._lock:
                    phase, rate = self.phase, self.rate
                if rate <= 0:
                    time.sleep(0.05)
                    next_at = time.monotonic()
                    continue
                rows, url = self.rows[phase], self.urls[i % len(self.urls)]
                try:
                    answer = client.post(f"{url}/v1/models/{MODEL}/predict", json={"records": rows[i % len(rows)]})
                    status: int | str = answer.status_code
                except httpx.HTTPError as exc:
                    answer, status = None, type(exc).__name__
                with self._lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if answer is not None and answer.status_code == 200:
                        self.ok[phase] += 1
                        self.ok_by_url[url] += 1
                        self.last_ok = datetime.now(UTC)
                        body = answer.json()
                        key = (str(body["model_version"]), str(body["role"]))
                        self.served[key] = self.served.get(key, 0) + 1
                        self.first_seen.setdefault(key, datetime.now(UTC))
                i += 1
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.monotonic()))


def log_clean_hour(root: Path, client: Any, version: str) -> int:
    """Last hour's clean traffic, as a gateway would have logged it (inputs from the shipped clean batch,
    outputs from the champion itself); returns the rows written."""
    import mlflow

    from airflow_mlops.examples.datasets import fraud_batch
    from airflow_mlops.prediction_log import LocalStorage, PredictionLog, PredictionRecord

    frame = fraud_batch(11).drop(columns=["is_fraud"]).head(CLEAN_HOUR_ROWS)
    saved = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)  # mlflow-artifacts:/ URIs are read through the tracking server
    try:
        model = mlflow.sklearn.load_model(client.get_model_version_download_uri(MODEL, version))
    finally:
        mlflow.set_tracking_uri(saved)
    scores = model.predict_proba(frame)[:, 1]
    start = datetime.now(UTC) - timedelta(minutes=65)  # always in an earlier hour partition than now
    records = [
        PredictionRecord(
            request_id=f"clean-hour-{i}",
            ts=start + timedelta(seconds=i * 0.1),
            model=MODEL,
            version=version,
            role="champion",
            inputs=json.dumps(row),
            output=json.dumps({"prediction": int(score >= 0.5), "score": float(score)}),
            latency_ms=1.0,
            error=None,
        )
        for i, (row, score) in enumerate(zip(frame.to_dict("records"), scores, strict=True))
    ]
    writer = PredictionLog(LocalStorage(root))
    writer.append(records)
    writer.close()
    return len(records)


def settle_hour_boundary(airflow: LiveAirflow, traffic: Traffic) -> None:
    """Keep the top of the hour out of the drift phase.

    ``fraud__monitor`` is also scheduled on its prediction log's new-hour watcher. A new hour partition
    appearing between t0 and the triggered monitor run would start a second monitor run on the drifted
    traffic, racing ours for the single drift event (the cooldown holds back the loser). Close to the hour,
    let the hour turn first (a few clean answers open the new partition) and let that watcher run finish.
    The same when the hour already turned since the last answer (Airflow's start-up can take that long).
    """
    last, now = traffic.last_ok, datetime.now(UTC)
    if last is not None and (last.date(), last.hour) != (now.date(), now.hour):
        log("the hour turned since the last answer: opening the new hour before the drifted batch lands")
        open_new_hour(airflow, traffic)
        now = datetime.now(UTC)
    to_boundary = 3600.0 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if to_boundary > HOUR_MARGIN_S:
        return
    log(f"top of the hour in {to_boundary:.0f} s: letting it pass before the drifted batch lands")
    time.sleep(to_boundary + 1.0)
    open_new_hour(airflow, traffic)


def open_new_hour(airflow: LiveAirflow, traffic: Traffic) -> None:
    """A few clean answers in the new hour, then wait for the watcher's monitor run to come and finish."""
    monitor = f"{MODEL}__monitor"
    before = {run["dag_run_id"] for run in airflow.runs(monitor)}
    traffic.set("clean", 10.0)
    time.sleep(1.0)
    traffic.set("clean", 0.0)
    deadline = time.monotonic() + NEW_HOUR_POLL_S + 150.0
    while time.monotonic() < deadline:
        runs = airflow.runs(monitor)
        if any(r["dag_run_id"] not in before for r in runs) and all(r["state"] in ("success", "failed") for r in runs):
            log(f"new-hour monitor run done: {[(r['dag_run_id'], r['run_type'], r['state']) for r in runs]}")
            return
        time.sleep(1.0)
    log("no new-hour monitor run seen; going on")


def write_configs(tmp: Path, log_root: Path, latest: Path) -> tuple[Path, Path]:
    """The live config (DAG folder's config dir) and v1's config (same model, trained on the shipped batch)."""
    source = REPO / "dags" / "configs" / f"{MODEL}.yaml"
    raw = yaml.safe_load(source.read_text())
    raw["gates"]["behaviour"]["cases"] = str((source.parent / raw["gates"]["behaviour"]["cases"]).resolve())
    raw["schedule"] = None
    raw["rollout"] = ROLLOUT
    raw["serving"] = {"prediction_log": str(log_root)}
    raw["monitoring"] = {**raw["monitoring"], "schedule": None, "window": "90m", "cooldown": "1h"}
    raw["retraining"] = {"on_drift": True, "on_new_data": False}
    live = tmp / "configs" / f"{MODEL}.yaml"
    live.parent.mkdir(parents=True)
    live.write_text(yaml.safe_dump({**raw, "data": {**raw["data"], "uri": str(latest)}}, sort_keys=False))
    first = tmp / "v1-config" / f"{MODEL}.yaml"
    first.parent.mkdir(parents=True)
    shipped = (source.parent / raw["data"]["uri"]).resolve()
    first.write_text(yaml.safe_dump({**raw, "data": {**raw["data"], "uri": str(shipped)}}, sort_keys=False))
    return live, first


@pytest.fixture
def loop_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Files, MLflow store and environment shared by this process, the gateway and the live Airflow."""
    from airflow_mlops.config.loader import load_config

    log_root = tmp_path / "prediction-log"
    latest = tmp_path / "data" / "fraud_latest.csv"
    latest.parent.mkdir(parents=True)
    live_config, v1_config = write_configs(tmp_path, log_root, latest)
    load_config(live_config)  # a broken test config should fail here, not as a __config_error DAG
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "airflow_mlops_dags.py", dags / "airflow_mlops_dags.py")
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmp_path / "artifacts"
    conn = {"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(artifacts)}}
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {
        "AIRFLOW_MLOPS_CONFIG_DIR": str(live_config.parent),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(conn),
        "AIRFLOW_MLOPS_STATE_DB": state_url,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "PYTHONWARNINGS": "ignore",
    }
    for key in ("AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_MLOPS_STATE_DB"):
        monkeypatch.setenv(key, env[key])
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    # every experiment keeps its artifacts under tmp_path, whichever process creates runs in it first
    for name in (f"airflow-mlops/{MODEL}", f"airflow-mlops/{MODEL}/monitoring"):
        client.create_experiment(name, artifact_location=str(artifacts / name.replace("/", "_")))
    yield {
        "tmp": tmp_path,
        "dags": dags,
        "env": env,
        "log_root": log_root,
        "latest": latest,
        "v1_config": v1_config,
        "tracking_uri": tracking_uri,
        "state_url": state_url,
        "client": client,
    }


def test_drift_retrains_and_rolls_out_a_new_champion(loop_env: dict[str, Any]) -> None:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    began = time.monotonic()
    airflow = LiveAirflow(loop_env["tmp"] / "airflow", loop_env["dags"], loop_env["env"])
    gateway: GatewayProcess | None = None
    traffic: Traffic | None = None
    try:
        airflow.start()  # the database migrates while v1 trains
        v1 = train_version(loop_env["v1_config"], "manual__v1")
        target = LocalGatewayTarget.from_options(client=loop_env["client"], state_url=loop_env["state_url"])
        target.promote(MODEL, v1, actor="test", reason="first champion")
        clean_hour = log_clean_hour(loop_env["log_root"], loop_env["client"], v1)
        gateway = GatewayProcess(
            models=[MODEL],
            tracking_uri=loop_env["tracking_uri"],
            log_root=loop_env["log_root"],
            extra=["--poll-interval", "0.5", "--flush-interval", "0.5"],
        )
        gateway.wait_ready(timeout=120)
        traffic = Traffic(gateway.url).__enter__()
        # a few answers now: the hour's log partition exists before the triggerer starts the new-hour watcher
        traffic.set("clean", 10.0)
        time.sleep(1.0)
        traffic.set("clean", 0.0)
        log(f"v1 champion and gateway ready after {time.monotonic() - began:.1f} s; starting Airflow")

        airflow.wait_ready()
        for dag_id in (f"{MODEL}__monitor", f"{MODEL}__train", f"{MODEL}__deploy"):
            assert not airflow.wait_dag(dag_id, timeout=180)["is_paused"]
        log(f"Airflow ready ({airflow.timings}) after {time.monotonic() - began:.1f} s")

        outcome = drift_to_new_champion(
            airflow, traffic, [gateway], loop_env["latest"], v1, log_root=loop_env["log_root"], logged_before=clean_hour
        )
    finally:
        if traffic is not None:
            traffic.__exit__()
        if gateway is not None:
            gateway.kill()
        airflow.stop()
    log(f"whole test: {time.monotonic() - began:.1f} s; answers by (version, role): {traffic.served}")
    record_figures("LocalExecutor", outcome)
    assert_chain(outcome, v1, target, loop_env, traffic)


@dataclass
class LoopOutcome:
    """What ``drift_to_new_champion`` saw, read from Airflow's REST API while it was still up."""

    v2: str
    drift_run: str
    plan: dict[str, Any]
    answered_before_monitor: dict[str, int]  # each gateway URL's 200s before the monitor run (traffic paused)
    logged_before: int  # rows in the prediction log before any traffic
    served: list[dict[str, Any]]
    drift_events: list[dict[str, Any]]
    candidate_events: list[dict[str, Any]]
    train_runs: list[dict[str, Any]]
    deploy_runs: list[dict[str, Any]]
    train_trigger: list[dict[str, Any]]
    deploy_trigger: list[dict[str, Any]]
    deploy_states: dict[str, str]
    marks: dict[str, datetime]

    def seconds(self, mark: str) -> float:
        return (self.marks[mark] - self.marks["t0 drifted batch landed"]).total_seconds()


def drift_to_new_champion(
    airflow: LiveAirflow,
    traffic: Traffic,
    gateways: list[GatewayProcess],
    latest: Path,
    v1: str,
    *,
    log_root: Path,
    logged_before: int = 0,
) -> LoopOutcome:
    """The loop under test, from the drifted batch landing (t0) to the new champion answering clients.

    ``logged_before`` is how many clean rows the prediction log held before ``traffic`` began; the monitor
    runs once the drifted answers outnumber all clean rows ``DRIFTED_OVER_CLEAN`` times. Traffic pauses while
    the monitor runs, once every answer is in the log, so the rows it counts are exactly the ones logged; it
    resumes for the rollout.
    """
    from airflow_mlops.examples.fraud import generate_transactions

    marks: dict[str, datetime] = {}
    settle_hour_boundary(airflow, traffic)
    staged = latest.with_suffix(".tmp")
    generate_transactions(6000, seed=202, data_drift=1.0, concept_drift=0.5).to_csv(staged, index=False)
    staged.replace(latest)
    traffic.set("drifted", DRIFTED_RATE)
    t0 = marks["t0 drifted batch landed"] = datetime.now(UTC)
    deadline = time.monotonic() + 120
    while traffic.ok["drifted"] < DRIFTED_OVER_CLEAN * (logged_before + traffic.ok["clean"]):
        assert time.monotonic() < deadline, f"drifted traffic too slow: {traffic.ok}"
        time.sleep(0.2)
    traffic.set("drifted", 0.0)
    time.sleep(0.5)  # the last request in flight
    answered_before_monitor = dict(traffic.ok_by_url)
    wait_logged(log_root, logged_before + sum(answered_before_monitor.values()))
    drift_run = airflow.trigger(f"{MODEL}__monitor", run_id="manual__monitor_drifted")["dag_run_id"]
    marks["monitor triggered"] = datetime.now(UTC)
    log(f"answers so far {traffic.ok} by replica {traffic.ok_by_url}; monitor triggered")
    done = airflow.wait_run_done(f"{MODEL}__monitor", drift_run, timeout=300)
    drift_states = airflow.task_states(f"{MODEL}__monitor", drift_run)
    assert done["state"] == "success", airflow.describe_run(f"{MODEL}__monitor", done)
    assert drift_states["emit_drift"] == "success", airflow.describe_run(f"{MODEL}__monitor", done)
    plan = airflow.xcom(f"{MODEL}__monitor", drift_run, "plan_window", "plan")
    traffic.set("drifted", DRIFTED_RATE)

    # --- drift event -> retrain -> candidate -> rollout -----------------------------------------------------
    train = airflow.wait_run(
        f"{MODEL}__train",
        lambda r: r["state"] in ("success", "failed"),
        timeout=420,
        fail_on=lambda r: r["state"] == "failed",
    )
    assert train["state"] == "success" and train["run_type"] == "asset_triggered", train
    v2 = str(airflow.asset_events(CANDIDATE_URI)[-1]["extra"]["version"])
    assert v2 != v1
    log(f"retrain run {train['dag_run_id']} registered v{v2}; waiting for its rollout")
    deploy = airflow.wait_run(
        f"{MODEL}__deploy", lambda r: r["state"] in ("success", "failed"), timeout=420, interval=0.5
    )
    assert deploy["state"] == "success", airflow.describe_run(f"{MODEL}__deploy", deploy)
    served = [
        gateway.wait_ready(predicate=lambda r: r["models"][MODEL]["champion"] == v2, timeout=30) for gateway in gateways
    ]
    deadline = time.monotonic() + 30
    while (v2, "champion") not in traffic.first_seen:
        assert time.monotonic() < deadline, f"no client answer from v{v2} as champion: {traffic.served}"
        time.sleep(0.2)
    time.sleep(1.0)  # a little traffic on the new champion

    outcome = LoopOutcome(
        v2=v2,
        drift_run=drift_run,
        plan=plan,
        answered_before_monitor=answered_before_monitor,
        logged_before=logged_before,
        served=served,
        drift_events=airflow.asset_events(DRIFT_URI),
        candidate_events=airflow.asset_events(CANDIDATE_URI),
        train_runs=airflow.runs(f"{MODEL}__train"),
        deploy_runs=airflow.runs(f"{MODEL}__deploy"),
        train_trigger=airflow.upstream_asset_events(f"{MODEL}__train", train["dag_run_id"]),
        deploy_trigger=airflow.upstream_asset_events(f"{MODEL}__deploy", deploy["dag_run_id"]),
        deploy_states=airflow.task_states(f"{MODEL}__deploy", deploy["dag_run_id"]),
        marks=marks,
    )
    log(f"monitor runs: {[(r['dag_run_id'], r['run_type'], r['state']) for r in airflow.runs(f'{MODEL}__monitor')]}")
    log(f"drift event: {[e['extra'] for e in outcome.drift_events]}")
    drift_events, candidate_events = outcome.drift_events, outcome.candidate_events
    marks["drift event"] = parse_ts(drift_events[0]["timestamp"] if drift_events else None, t0)
    marks["train run queued"] = parse_ts(train.get("queued_at"), t0)
    marks["train run started"] = parse_ts(train["start_date"], t0)
    marks["train run ended"] = parse_ts(train["end_date"], t0)
    marks["candidate event"] = parse_ts(candidate_events[-1]["timestamp"] if candidate_events else None, t0)
    marks["deploy run started"] = parse_ts(deploy["start_date"], t0)
    marks["deploy run ended"] = parse_ts(deploy["end_date"], t0)
    marks["new champion serving"] = traffic.first_seen[(v2, "champion")]
    for name, when in sorted(marks.items(), key=lambda item: item[1]):
        log(f"{(when - t0).total_seconds():8.1f} s  {name}")
    log(
        f"t0 -> retrain run start: {outcome.seconds('train run started'):.1f} s; "
        f"t0 -> new champion serving: {outcome.seconds('new champion serving'):.1f} s"
    )
    return outcome


def wait_logged(log_root: Path, rows: int, timeout: float = 30.0) -> None:
    """Wait until the prediction log holds ``rows`` prediction rows (the gateways flush every 0.5 s)."""
    from airflow_mlops.prediction_log import LocalStorage, count_prediction_parts, list_partitions

    storage, seen = LocalStorage(log_root), -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = count_prediction_parts(storage, list_partitions(storage, MODEL))
        if seen >= rows:
            assert seen == rows, f"the prediction log holds {seen} rows, more than the {rows} answered"
            return
        time.sleep(0.2)
    raise TimeoutError(f"the prediction log holds {seen} rows after {timeout} s; {rows} were answered")


def record_figures(executor: str, outcome: LoopOutcome) -> None:
    """Seconds from t0 to each mark, for ``benchmarks/closed_loop.py`` (``test-artifacts/closed-loop/``)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    figures = {name: round(outcome.seconds(name), 2) for name in outcome.marks}
    (FIGURES / f"{executor}.json").write_text(json.dumps({"executor": executor, "seconds_from_t0": figures}, indent=1))


def assert_chain(outcome: LoopOutcome, v1: str, target: Any, loop_env: dict[str, Any], traffic: Traffic) -> None:
    """One drift event -> one retrain on it -> one candidate -> one rollout on it -> v2 champion, v1 previous."""
    v2 = outcome.v2
    assert [e["source_run_id"] for e in outcome.drift_events] == [outcome.drift_run], outcome.drift_events
    assert {e["id"] for e in outcome.train_trigger} == {outcome.drift_events[0]["id"]}, outcome.train_trigger
    assert [(r["run_type"], r["state"]) for r in outcome.train_runs] == [("asset_triggered", "success")]
    assert [e["extra"]["version"] for e in outcome.candidate_events] == [v2], outcome.candidate_events
    assert {e["id"] for e in outcome.deploy_trigger} == {outcome.candidate_events[0]["id"]}, outcome.deploy_trigger
    assert [(r["run_type"], r["state"]) for r in outcome.deploy_runs] == [("asset_triggered", "success")]
    assert set(outcome.deploy_states.values()) == {"success"}, outcome.deploy_states
    assert all(served["models"][MODEL]["champion"] == v2 for served in outcome.served)
    assert traffic.statuses.keys() == {200}, f"clients got more than 200s: {traffic.statuses}"
    assert traffic.served.get((v2, "canary"), 0) > 0 and traffic.served.get((v1, "champion"), 0) > 0
    state = target.state(MODEL)
    assert (state.champion, state.previous, state.canary, state.shadow) == (v2, v1, None, None)
    assert loop_env["client"].get_model_version(MODEL, v2).tags["mlops.data_uri"] == str(loop_env["latest"])
    assert 0 < outcome.seconds("train run started") < outcome.seconds("new champion serving")
    # the monitor counted every logged row: the clean hour and each gateway's answers
    answered = outcome.answered_before_monitor
    assert all(count > 0 for count in answered.values()), answered
    assert outcome.plan["logged_rows"] == outcome.logged_before + sum(answered.values()), (outcome.plan, answered)
