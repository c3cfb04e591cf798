"""Lineage every MLflow run and model version carries: data, config, code, seed, DAG run."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from airflow_mlops import __version__

CODE_VERSION_ENV = "AIRFLOW_MLOPS_CODE_VERSION"


@functools.lru_cache(maxsize=32)
def git_sha(folder: str) -> str | None:
    """HEAD of the git checkout holding ``folder`` (the configs), if there is one."""
    try:
        out = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def code_version(config_path: Path) -> str:
    """``airflow-mlops==X+g<sha>``: the package version and the configs' git commit where available."""
    override = os.environ.get(CODE_VERSION_ENV)
    if override:
        return override
    sha = git_sha(str(config_path.resolve().parent))
    return f"airflow-mlops=={__version__}" + (f"+g{sha[:12]}" if sha else "")


def lineage_tags(
    *, data_uri: str, data_sha256: str, config_sha256: str, code: str, seed: int, dag_run_id: str
) -> dict[str, str]:
    return {
        "mlops.data_uri": data_uri,
        "mlops.data_sha256": data_sha256,
        "mlops.config_sha256": config_sha256,
        "mlops.code_version": code,
        "mlops.seed": str(seed),
        "mlops.dag_run_id": dag_run_id,
    }


LINEAGE_KEYS: tuple[str, ...] = (
    "mlops.data_uri",
    "mlops.data_sha256",
    "mlops.config_sha256",
    "mlops.code_version",
    "mlops.seed",
    "mlops.dag_run_id",
)
