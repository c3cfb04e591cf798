"""``make demo``: the fraud model's train DAG twice on embedded SQLite Airflow + SQLite MLflow.

Run 1 trains on batch 1 and registers v1 (no champion yet, so only absolute gates decide); the demo
then promotes v1 to champion. Run 2 trains on a new batch (passed as ``conf``, as a REST caller
would) and is gated against v1. Everything lives under one project-local folder; no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODEL = "fraud"


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
        "AIRFLOW_MLOPS_CONFIG_DIR": str((dags_folder / "configs").resolve()),
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


def run_demo(home: Path, dags_folder: Path = Path("dags")) -> int:
    """Reset ``home``, migrate Airflow's database, then run the demo in a child with the right environment."""
    if home.exists():
        shutil.rmtree(home)
    (home / "airflow").mkdir(parents=True)
    env = {**os.environ, **demo_environment(home, dags_folder)}
    airflow = Path(sys.executable).with_name("airflow")
    print(f"[demo] Airflow metadata DB: {home / 'airflow' / 'airflow.db'} (airflow db migrate)", flush=True)
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "airflow_mlops.demo", str(home)], env=env, check=False).returncode


def _stage_batch(home: Path, batch: int) -> str:
    from airflow_mlops.data.examples import fraud_batch

    path = home / "data" / "fraud" / f"transactions_batch_{batch:03d}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    fraud_batch(batch).to_csv(path, index=False)
    return str(path)


def _train(conf: dict[str, Any] | None) -> tuple[str, float]:
    from airflow_mlops.factories import build_dags

    dag = build_dags(None)[f"{MODEL}__train"]
    started = time.perf_counter()
    run = dag.test(run_conf=conf)
    return str(run.state), time.perf_counter() - started


def _describe(client: Any, version: str) -> dict[str, Any]:
    mv = client.get_model_version(MODEL, version)
    report_uri = mv.tags.get("mlops.gate_report", "")
    report_json = report_uri.replace("gate_report.md", "gate_report.json")
    checks = json.loads(Path(report_json).read_text())["checks"] if Path(report_json).is_file() else []
    return {"version": version, "tags": mv.tags, "aliases": mv.aliases, "checks": checks, "report": report_uri}


def _print_version(info: dict[str, Any]) -> None:
    tags = info["tags"]
    print(f"  v{info['version']}: gate={tags.get('mlops.gate')} aliases={info['aliases']}")
    print(f"    data   {tags.get('mlops.data_uri')} (sha256 {tags.get('mlops.data_sha256', '')[:16]}...)")
    print(f"    config sha256 {tags.get('mlops.config_sha256', '')[:16]}...  code {tags.get('mlops.code_version')}")
    for check in info["checks"]:
        value = check["value"]
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"    {check['status']:>7}  {check['name']:<70} {shown:>8}  {check['threshold'] or ''}")
    print(f"    report {info['report']}")


def main(home: Path) -> int:
    import mlflow

    from airflow_mlops.registry.versions import promote_champion

    client = mlflow.MlflowClient()
    print("[demo] run 1: fraud__train on the shipped batch 1 (no champion yet)", flush=True)
    state, seconds = _train(None)
    print(f"[demo]   DAG run {state} in {seconds:.1f}s")
    if state != "success":
        return 1
    promote_champion(client, MODEL, "1", actor="make demo")
    print("[demo]   promoted v1 to champion (what the deploy DAG will do after shadow and canary)")

    batch2 = _stage_batch(home, 2)
    print(f"[demo] run 2: fraud__train with conf data_uri={batch2}, gated against champion v1", flush=True)
    state2, seconds = _train({"data_uri": batch2})
    print(f"[demo]   DAG run {state2} in {seconds:.1f}s")

    print("\n[demo] registered versions")
    for mv in sorted(client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version)):
        _print_version(_describe(client, str(mv.version)))
    aliases = client.get_registered_model(MODEL).aliases
    print(f"\n[demo] aliases: {aliases}")
    print("\n[demo] where to look")
    print(f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'} --port 5000")
    print(f"  artifacts:  {home / 'mlartifacts' / MODEL}/<run id>/artifacts/(gate|validation|evaluation|...)")
    print(f"  Airflow DB: {home / 'airflow' / 'airflow.db'}")
    return 0 if state2 == "success" else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
