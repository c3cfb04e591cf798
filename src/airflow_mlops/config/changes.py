"""Which model configs a change touches: the CI templates' one way of finding what to check.

A config counts as changed when, between the base commit and ``HEAD`` (``git diff base...HEAD``: the
changes since the two histories forked, as a pull/merge request shows them), its YAML file changed or a
local file it names changed: ``data.uri`` (a file, or any file under a data folder) or
``gates.behaviour.cases``. Deleted configs are not listed (there is nothing left to check).
Nothing is validated here; ``validate-config`` and ``dry-gate`` do that with the list.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from airflow_mlops.config.loader import CONFIG_SUFFIXES, config_files
from airflow_mlops.exceptions import MlopsError


class GitDiffError(MlopsError):
    """``git`` could not say what changed (not a repository, or the base commit is not fetched)."""


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise GitDiffError("git is not installed (the CI image needs git to find changed configs)") from exc
    if proc.returncode != 0:
        raise GitDiffError(f"git {' '.join(args)}: {proc.stderr.strip() or f'exit code {proc.returncode}'}")
    return proc.stdout


def changed_files(base: str, head: str = "HEAD", cwd: Path | None = None) -> set[Path]:
    """Absolute paths of the files that differ between ``base...head`` (renames as delete + add)."""
    cwd = Path.cwd() if cwd is None else cwd
    top = Path(_git(["rev-parse", "--show-toplevel"], cwd).strip())
    for commit in (base, head):
        try:
            _git(["cat-file", "-e", f"{commit}^{{commit}}"], cwd)
        except GitDiffError as exc:
            raise GitDiffError(
                f"commit {commit!r} is not in this clone; fetch the whole history (GitHub: actions/checkout "
                "with fetch-depth: 0; GitLab: GIT_DEPTH: 0)"
            ) from exc
    out = _git(["diff", "--name-only", "--no-renames", "-z", f"{base}...{head}"], cwd)
    return {(top / name).resolve() for name in out.split("\0") if name}


def _named_files(config: Path) -> list[Path]:
    """The local files and folders a config names (``data.uri``, ``gates.behaviour.cases``), resolved as the
    loader resolves them; an unreadable config names none (validate-config reports it)."""
    try:
        raw: Any = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    if not isinstance(raw, dict):
        return []
    named = [_get(raw, "data", "uri"), _get(raw, "gates", "behaviour", "cases")]
    return [(config.parent / Path(v).expanduser()).resolve() for v in named if isinstance(v, str) and "://" not in v]


def _get(raw: dict[str, Any], *keys: str) -> Any:
    value: Any = raw
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _touched(path: Path, changed: set[Path]) -> bool:
    return path in changed or any(path in c.parents for c in changed)


def changed_configs(paths: Iterable[str | os.PathLike[str]], changed: set[Path]) -> list[Path]:
    """The config files in ``paths`` (files, or folders of ``*.yaml``/``*.yml``) that ``changed`` touches."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        candidates = config_files(path) if path.is_dir() else [path]
        for config in candidates:
            if config.suffix not in CONFIG_SUFFIXES or not config.is_file() or config in found:
                continue
            if _touched(config.resolve(), changed) or any(_touched(f, changed) for f in _named_files(config)):
                found.append(config)
    return found
