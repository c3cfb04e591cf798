"""How long does Airflow take to parse ``dags/`` with 100 model configs, and what does parsing import?

Generates 100 configs (copies of the fraud example with their own names) in a temporary folder,
imports Airflow first (as a scheduler's DAG processor already has), then parses ``dags/`` into a
DagBag and prints total seconds, seconds per model, and which heavy ML modules got imported
(the answer must be none). Side by side, it times one DAG file that imports the heavy libraries at
top level, which is what our factory avoids.

    .venv/bin/python benchmarks/parse_time.py [--models 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "great_expectations", "evidently", "sklearn", "pandas")

CHILD = """
import json, sys, time, logging
logging.disable(logging.CRITICAL)
t0 = time.perf_counter()
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t_parse = time.perf_counter() - t1
print(json.dumps({"airflow_import_s": t_import, "parse_s": t_parse, "dags": len(bag.dags),
                  "errors": len(bag.import_errors),
                  "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)

HEAVY_DAG = """
import mlflow, great_expectations, evidently, sklearn, pandas
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG("heavy_imports_at_top", schedule=None, start_date=datetime(2025, 1, 1)):
    EmptyOperator(task_id="noop")
"""


def write_configs(folder: Path, count: int) -> None:
    template = (REPO / "dags" / "configs" / "fraud.yaml").read_text()
    data = str(REPO / "dags" / "data") + "/"
    cases = str(REPO / "dags" / "configs" / "fraud_behaviour_cases.csv")
    for i in range(count):
        name = f"model_{i:03d}"
        text = template.replace("name: fraud", f"name: {name}").replace("../data/", data)
        text = text.replace("cases: fraud_behaviour_cases.csv", f"cases: {cases}")
        (folder / f"{name}.yaml").write_text(text)


def parse(dags_folder: Path, config_dir: Path | None, home: Path) -> dict[str, object]:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    if config_dir is not None:
        env["AIRFLOW_MLOPS_CONFIG_DIR"] = str(config_dir)
    out = subprocess.run([sys.executable, "-c", CHILD, str(dags_folder)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        configs = root / "configs"
        configs.mkdir()
        write_configs(configs, args.models)
        ours = parse(REPO / "dags", configs, root / "home")
        heavy_folder = root / "heavy"
        heavy_folder.mkdir()
        (heavy_folder / "heavy_dag.py").write_text(HEAVY_DAG)
        started = time.perf_counter()
        heavy = parse(heavy_folder, None, root / "home")
        del started
    parse_s = float(ours["parse_s"])  # type: ignore[arg-type]
    print(f"models: {args.models}  DAGs built: {ours['dags']}  import errors: {ours['errors']}")
    print(f"airflow import (not counted): {float(ours['airflow_import_s']):.2f} s")  # type: ignore[arg-type]
    print(f"parse dags/: {parse_s:.3f} s total, {parse_s / args.models * 1000:.1f} ms per model")
    print(f"heavy modules imported while parsing: {ours['heavy'] or 'none'}")
    heavy_s = float(heavy["parse_s"])  # type: ignore[arg-type]
    print(
        f"for comparison, ONE DAG file importing {', '.join(HEAVY)} at top level: {heavy_s:.2f} s "
        f"({heavy_s / parse_s:.1f}x our {args.models} models)"
    )
    return 0 if not ours["heavy"] and not ours["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
