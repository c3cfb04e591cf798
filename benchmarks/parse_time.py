"""How long does Airflow take to parse ``dags/`` with 1,000 model configs, how much memory, and what does it import?

Generates ``--models`` configs (copies of the fraud example with their own names; 4 DAGs each) in a
temporary folder, imports Airflow first (as a scheduler's DAG processor already has), then parses
``dags/`` into a DagBag in a fresh process and prints:

* parse seconds, milliseconds per model, and the goal (<= 5 s for 1,000 models; Airflow kills a DAG
  file's parse after ``[core] dagbag_import_timeout``, 30 s by default, and all the models live in
  one DAG file);
* DAGs built: the model DAG file must give 4 per model, ``dags/examples`` adds its own; import errors
  (must be 0);
* peak memory: the child's peak RSS (``getrusage`` maxrss) after importing Airflow and after the
  parse, and the difference; with ``--tracemalloc``, a second parse under tracemalloc gives the
  peak of Python allocations during the parse (not timed: tracing slows it down);
* the heavy ML modules imported while parsing (must be none);

and, side by side, one DAG file that imports the heavy libraries at top level (the ratio says how
many of our whole folders parse in the time of that one file).

Python bytecode: this environment may set ``PYTHONDONTWRITEBYTECODE`` and ship no ``.pyc`` files,
which makes every parse compile every imported module from source — a cost a deployed DAG
processor does not pay. By default both sides therefore run with a bytecode cache in the
temporary folder, warmed by an untimed run first; ``--cold`` measures the environment as it is.

Offline: nothing here opens a network connection.

    .venv/bin/python benchmarks/parse_time.py [--models 1000] [--repeat 1] [--tracemalloc] [--cold]
                                              [--profile FILE] [--import-timeout S] [--skip-heavy]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "great_expectations", "evidently", "sklearn", "pandas")
DAGS_PER_MODEL = 4
GOAL_S = 5.0
GOAL_MODELS = 1000
IMPORT_TIMEOUT_S = 30.0

# Runs in the child. argv: dag_folder, mode ("time" | "tracemalloc" | "profile:<file>").
CHILD = """
import json, logging, resource, sys, time
logging.disable(logging.CRITICAL)
folder, mode = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
t_import = time.perf_counter() - t0
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
traced = None
if mode == "tracemalloc":
    import tracemalloc
    tracemalloc.start()
profiler = None
if mode.startswith("profile:"):
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
t1, c1 = time.perf_counter(), time.process_time()
bag = DagBag(dag_folder=folder)
t_parse, c_parse = time.perf_counter() - t1, time.process_time() - c1
if profiler is not None:
    profiler.disable()
    profiler.dump_stats(mode.split(":", 1)[1])
if mode == "tracemalloc":
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
files = {dag_id: str(dag.fileloc) for dag_id, dag in bag.dags.items()}
print(json.dumps({
    "airflow_import_s": t_import, "parse_s": t_parse, "parse_cpu_s": c_parse, "dags": len(bag.dags),
    "dags_by_file": {f: sum(1 for v in files.values() if v == f) for f in sorted(set(files.values()))},
    "errors": {str(k): str(v)[-300:] for k, v in bag.import_errors.items()},
    "heavy": sorted(m for m in %r if m in sys.modules),
    "rss_before_kb": rss_before, "rss_after_kb": rss_after, "tracemalloc_peak_b": traced,
}))
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
        name = f"model_{i:04d}"
        text = template.replace("name: fraud", f"name: {name}").replace("../data/", data)
        text = text.replace("cases: fraud_behaviour_cases.csv", f"cases: {cases}")
        (folder / f"{name}.yaml").write_text(text)


class Runner:
    """Runs the child with one environment (Airflow home, bytecode cache, offline settings)."""

    def __init__(self, root: Path, *, cold: bool, import_timeout: float | None) -> None:
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(root / "home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
        if import_timeout is not None:
            self.env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = str(import_timeout)
        if not cold:
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")

    def parse(self, dags_folder: Path, config_dir: Path | None, mode: str = "time") -> dict[str, Any]:
        env = dict(self.env)
        if config_dir is not None:
            env["AIRFLOW_MLOPS_CONFIG_DIR"] = str(config_dir)
        else:
            env.pop("AIRFLOW_MLOPS_CONFIG_DIR", None)
        cmd = [sys.executable, "-c", CHILD, str(dags_folder), mode]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"parse of {dags_folder} failed:\n{out.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MB"


def report(models: int, runs: list[dict[str, Any]], traced: dict[str, Any] | None, heavy: dict[str, Any] | None) -> int:
    """Print the figures; the exit status is 1 when a hard requirement fails (DAG count, errors, heavy imports)."""
    ours = runs[-1]
    times = [float(r["parse_s"]) for r in runs]
    parse_s = statistics.median(times)
    model_file = str(REPO / "dags" / "airflow_mlops_dags.py")
    model_dags = int(ours["dags_by_file"].get(model_file, 0))
    other_dags = int(ours["dags"]) - model_dags
    expected = DAGS_PER_MODEL * models
    spread = f" (median of {len(times)}: {', '.join(f'{t:.2f}' for t in times)})" if len(times) > 1 else ""

    print(f"models: {models}")
    print(
        f"DAGs built: {ours['dags']} = {model_dags} from the model DAG file (expected {expected}: "
        f"{DAGS_PER_MODEL} per model) + {other_dags} hand-written (dags/examples)"
    )
    print(f"import errors: {len(ours['errors'])}")
    for file, error in ours["errors"].items():
        print(f"  {file}: ...{error}")
    print(f"airflow import (not counted): {float(ours['airflow_import_s']):.2f} s")
    cpu_s = statistics.median(float(r["parse_cpu_s"]) for r in runs)
    print(f"parse dags/: {parse_s:.2f} s total{spread}, {parse_s / models * 1000:.2f} ms per model")
    print(f"  CPU time of the parse: {cpu_s:.2f} s (wall minus CPU is time the machine gave to other processes)")
    if models == GOAL_MODELS:
        verdict = "met" if parse_s <= GOAL_S else "MISSED"
        print(
            f"  goal <= {GOAL_S:g} s for {GOAL_MODELS} models: {verdict} "
            f"(Airflow's import timeout: {IMPORT_TIMEOUT_S:g} s)"
        )
    else:
        estimate = parse_s / models * GOAL_MODELS
        print(f"  at this rate {GOAL_MODELS} models would take ~{estimate:.1f} s (goal <= {GOAL_S:g} s)")
    rss_before, rss_after = float(ours["rss_before_kb"]), float(ours["rss_after_kb"])
    print(
        f"peak memory (maxrss): {_mb(rss_after)} after the parse; {_mb(rss_before)} after importing Airflow; "
        f"parse adds {_mb(rss_after - rss_before)} ({(rss_after - rss_before) / models:.0f} KB per model)"
    )
    if traced is not None:
        peak = float(traced["tracemalloc_peak_b"])
        print(f"tracemalloc peak during the parse: {peak / 2**20:.0f} MB ({peak / 1024 / models:.0f} KB per model)")
    print(f"heavy modules imported while parsing: {', '.join(ours['heavy']) or 'none'}")
    if heavy is not None:
        heavy_s = float(heavy["parse_s"])
        print(
            f"for comparison, ONE DAG file importing {', '.join(HEAVY)} at top level: {heavy_s:.2f} s, "
            f"{_mb(float(heavy['rss_after_kb']))} maxrss "
            f"(= {heavy_s / parse_s:.2f}x our {models} models; {heavy_s / parse_s * models:.0f} of our models "
            "parse in the time of that one file)"
        )
    failed = bool(ours["heavy"]) or bool(ours["errors"]) or model_dags != expected
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=GOAL_MODELS, help="model configs to generate (default 1000)")
    parser.add_argument("--repeat", type=int, default=1, help="timed parses of our folder; the median is reported")
    parser.add_argument("--tracemalloc", action="store_true", help="one more parse under tracemalloc (peak)")
    parser.add_argument("--cold", action="store_true", help="no bytecode cache and no warm-up run")
    parser.add_argument("--profile", type=Path, help="write a cProfile of one more parse of our folder here")
    parser.add_argument(
        "--import-timeout",
        type=float,
        help="[core] dagbag_import_timeout for the parse (default: Airflow's, 30 s); raise it to time a slow folder",
    )
    parser.add_argument("--skip-heavy", action="store_true", help="skip the heavy-imports comparison")
    args = parser.parse_args()
    if args.models < 1 or args.repeat < 1:
        parser.error("--models and --repeat must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        configs = root / "configs"
        configs.mkdir()
        write_configs(configs, args.models)
        heavy_folder = root / "heavy"
        heavy_folder.mkdir()
        (heavy_folder / "heavy_dag.py").write_text(HEAVY_DAG)
        runner = Runner(root, cold=args.cold, import_timeout=args.import_timeout)
        if not args.cold:  # fills the bytecode cache: the timed runs import what a deployed processor has compiled
            warm = root / "warm"
            warm.mkdir()
            write_configs(warm, 1)
            runner.parse(REPO / "dags", warm)
            if not args.skip_heavy:
                runner.parse(heavy_folder, None)
        runs = [runner.parse(REPO / "dags", configs) for _ in range(args.repeat)]
        traced = runner.parse(REPO / "dags", configs, "tracemalloc") if args.tracemalloc else None
        if args.profile is not None:
            runner.parse(REPO / "dags", configs, f"profile:{args.profile.resolve()}")
            print(f"cProfile of the parse written to {args.profile}")
        heavy = None if args.skip_heavy else runner.parse(heavy_folder, None)
    return report(args.models, runs, traced, heavy)


if __name__ == "__main__":
    sys.exit(main())
