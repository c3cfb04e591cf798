"""Lineage every MLflow run and model version carries: data, config, code, seed, DAG run."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from airflow_mlops import __version__, settings
from airflow_mlops.vocabulary import Tag


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
    override = settings.code_version()
    if override:
        return override
    sha = git_sha(str(config_path.resolve().parent))
    return f"airflow-mlops=={__version__}" + (f"+g{sha[:12]}" if sha else "")


def lineage_tags(
    *, data_uri: str, data_sha256: str, config_sha256: str, code: str, seed: int, dag_run_id: str
) -> dict[str, str]:
    return {
        Tag.DATA_URI: data_uri,
        Tag.DATA_SHA256: data_sha256,
        Tag.CONFIG_SHA256: config_sha256,
        Tag.CODE_VERSION: code,
        Tag.SEED: str(seed),
        Tag.DAG_RUN_ID: dag_run_id,
    }


LINEAGE_KEYS: tuple[str, ...] = Tag.LINEAGE
