"""Seconds from new data to a new champion serving, on Celery workers vs the LocalExecutor, same windows.

Runs the two live closed-loop system tests (they need the local PostgreSQL, and Redis for Celery):

* ``tests/system/test_closed_loop.py``: Airflow on LocalExecutor, one gateway, MLflow on SQLite;
* ``tests/system/test_closed_loop_celery.py``: Airflow on CeleryExecutor (Redis broker, three workers),
  two gateway replicas, ``mlflow server`` on PostgreSQL, the state DB on PostgreSQL;

both with the same rollout windows (shadow 10 s / 30 requests, canary 50 % -> 100 % in 10 s steps), the
same drifted batch and the same traffic. Each test writes the seconds from t0 (the drifted batch landed)
to each step of the loop to ``test-artifacts/closed-loop/<executor>.json``; this script runs them
``--rounds`` times, one after the other (never side by side: two cores), and prints the median of each
step per executor and the Celery/Local ratio of the headline figure, t0 -> new champion serving.

Most of that time is the loop's own windows (the monitor's trigger, the rollout's shadow and canary
steps); what an executor adds is queueing and task start-up on every one of the ~20 tasks on the path.

Offline: everything runs on loopback.

    .venv/bin/python benchmarks/closed_loop.py [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "test-artifacts" / "closed-loop"
TESTS = {
    "LocalExecutor": "tests/system/test_closed_loop.py",
    "CeleryExecutor": "tests/system/test_closed_loop_celery.py",
}
STEPS = (
    "monitor triggered",
    "drift event",
    "train run started",
    "train run ended",
    "candidate event",
    "deploy run started",
    "deploy run ended",
    "new champion serving",
)
HEADLINE = "new champion serving"


def run_once(executor: str) -> dict[str, float]:
    """One run of ``executor``'s test; the seconds it recorded (the test fails -> this raises)."""
    figures = FIGURES / f"{executor}.json"
    figures.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TESTS[executor]], cwd=REPO, env=env
    )
    if proc.returncode != 0 or not figures.exists():
        raise SystemExit(f"{TESTS[executor]} failed (exit {proc.returncode}); no figures for {executor}")
    seconds: dict[str, float] = json.loads(figures.read_text())["seconds_from_t0"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs of each test (median reported)")
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {executor: [] for executor in TESTS}
    for _ in range(args.rounds):
        for executor in TESTS:
            rounds[executor].append(run_once(executor))
    median = {
        executor: {step: statistics.median(r[step] for r in runs) for step in STEPS}
        for executor, runs in rounds.items()
    }
    print(f"\nseconds from t0 (drifted batch landed), median of {args.rounds} round(s) each:")
    print(f"{'step':<24}" + "".join(f"{executor:>16}" for executor in TESTS))
    for step in STEPS:
        print(f"{step:<24}" + "".join(f"{median[executor][step]:>16.1f}" for executor in TESTS))
    local, celery = median["LocalExecutor"][HEADLINE], median["CeleryExecutor"][HEADLINE]
    print(
        f"\nnew data -> new champion serving: Celery {celery:.1f} s, Local {local:.1f} s, ratio {celery / local:.2f}x"
    )


if __name__ == "__main__":
    main()
