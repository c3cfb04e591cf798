"""``make demo-tickets``: the multiclass example (``dags/configs/tickets.yaml``) trained and gated by its real DAG.

A support-ticket router with four string classes (``account``, ``billing``, ``sales``, ``technical``) and a
time split, on embedded SQLite Airflow + SQLite MLflow, like ``make demo`` (and with its helpers):

1. ``tickets__train`` on the shipped tickets (January to April) registers v1: trained on the older 80 %,
   gated on the newest 20 % (only absolute gates decide; there is no champion yet). The demo prints the
   version's classes, its split, its metrics and its gate report, then promotes it to champion.
2. ``tickets__train`` on the next export (May and June, the queue mix drifting on; passed as ``conf``, as a
   REST caller would) registers v2, gated against champion v1 on ``f1_macro`` over the same held-out rows.

Exits non-zero when a run fails or a gate does not pass. Everything lives under one project-local folder.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from airflow_mlops.examples.demo import DemoClock, gate_lines, model_dag, reset_home, run_in_demo_environment
from airflow_mlops.vocabulary import Tag

MODEL = "tickets"
#: The metrics printed for each version, primary metric first.
SHOWN_METRICS = ("f1_macro", "accuracy", "balanced_accuracy", "roc_auc_ovr", "log_loss", "recall.technical")


def write_tickets_config(home: Path, dags_folder: Path) -> Path:
    """The shipped tickets config under ``home/configs``, its data copied to ``home/data/tickets`` (the folder a
    run's ``conf`` may point into) and its behaviour cases at their absolute path."""
    source = dags_folder.resolve() / "configs" / f"{MODEL}.yaml"
    raw = yaml.safe_load(source.read_text())
    data = home.resolve() / "data" / MODEL / "tickets.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy((source.parent / raw["data"]["uri"]).resolve(), data)
    raw["data"]["uri"] = str(data)
    raw["gates"]["behaviour"]["cases"] = str(source.parent / raw["gates"]["behaviour"]["cases"])
    path = home / "configs" / f"{MODEL}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_tickets_demo(home: Path, dags_folder: Path = Path("dags")) -> int:
    """Reset ``home``, migrate Airflow's database, then run :func:`main` in a child with the demo environment."""
    reset_home(home)
    write_tickets_config(home, dags_folder)
    return run_in_demo_environment(home, dags_folder, "airflow_mlops.examples.tickets_demo")


def stage_next_export(home: Path) -> str:
    """The tickets of the two months after the shipped file, with the queue mix drifting further."""
    from airflow_mlops.examples.datasets import TICKETS_ROWS
    from airflow_mlops.examples.tickets import generate_tickets

    path = home / "data" / MODEL / "tickets_2024-05_2024-06.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = generate_tickets(TICKETS_ROWS, seed=2, start="2024-04-30", days=60, mix_progress=(1.0, 1.5))
    frame.to_csv(path, index=False)
    return str(path)


def version_lines(client: Any, version: str) -> list[str]:
    """What the demo shows of a version: its classes, how its rows were split, its held-out metrics."""
    mv = client.get_model_version(MODEL, version)
    run = client.get_run(mv.run_id).data
    classes = json.loads(mv.tags.get(Tag.CLASSES, "{}")).get("classes")
    split = {k: v for k, v in run.params.items() if k == "split" or k.startswith("split.")}
    metrics = "  ".join(f"{m}={run.metrics[m]:.4f}" for m in SHOWN_METRICS if m in run.metrics)
    return [
        f"  v{version}: classes {classes}",
        f"    split {split.get('split')} on {split.get('split.time_column')}: trained on {run.params.get('n_train')} "
        f"rows, held out the {run.params.get('n_test')} from {split.get('split.test_from')} on",
        f"    {metrics}",
    ]


def _train(clock: DemoClock, client: Any, conf: dict[str, Any] | None = None) -> str | None:
    """Run ``tickets__train``; the new version if the run succeeded and its gate passed, else ``None``."""
    run = model_dag(MODEL, "train").test(run_conf=conf)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    if run.state != "success" or not versions:
        clock.say(f"  tickets__train {run.state}; see the task logs above")
        return None
    version = str(max(int(v.version) for v in versions))
    for line in version_lines(client, version) + gate_lines(client, MODEL, version):
        print(line, flush=True)
    gate = client.get_model_version(MODEL, version).tags.get(Tag.GATE)
    return version if gate == "passed" else None


def main(home: Path, dags_folder: Path) -> int:
    import mlflow

    from airflow_mlops import settings
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    clock = DemoClock()
    client = mlflow.MlflowClient()
    target = LocalGatewayTarget.from_options(client=client, state_url=settings.state_db_url())

    clock.say("run 1: tickets__train on the shipped tickets (Jan-Apr); split: time holds out the newest 20%")
    first = _train(clock, client)
    if first is None:
        return 1
    target.promote(MODEL, first, actor="make demo-tickets", reason="first champion")
    clock.say(f"  v{first} registered, gate passed, promoted to champion")

    export = stage_next_export(home)
    clock.say(f"run 2: tickets__train with conf data_uri={export} (May-Jun), gated against champion v{first}")
    second = _train(clock, client, {"data_uri": export})
    if second is None:
        return 1
    clock.say(f"  v{second} passed its gate (incl. the champion comparison on f1_macro): ready for tickets__deploy")
    print(f"\n[demo] MLflow UI: .venv/bin/mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'} --port 5000")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2])))
