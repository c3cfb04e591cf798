"""The CI templates users copy (``templates/ci/``) and ``airflow-mlops changed-configs`` they run.

The templates' shell commands are taken from the YAML as GitHub Actions and GitLab CI would run them
and executed with bash in a scratch git repository: a base commit with two model configs, then a commit
changing one. The install line (``pip install ...``) is skipped; this virtualenv's ``bin`` is on PATH
instead, so the installed ``airflow-mlops`` console script runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml

from airflow_mlops.cli import main

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates" / "ci"
VENV_BIN = Path(sys.executable).parent
INSTALL_LINE = re.compile(r"^\s*(python3? -m )?pip install ")
TEMPLATE_NAMES = ["github-actions.yml", "gitlab-ci.yml"]
# A job that trains takes ~10 s (a fresh interpreter imports pandas and scikit-learn). Both templates run the
# same check script (test_both_templates_run_the_same_check_script), so make test-fast trains through one.
ONE_FAST = [
    pytest.param("github-actions.yml", id="github-actions.yml"),
    pytest.param("gitlab-ci.yml", id="gitlab-ci.yml", marks=pytest.mark.integration),
]
BOTH_SLOW = [pytest.param(name, id=name, marks=pytest.mark.integration) for name in TEMPLATE_NAMES]


# --- reading the templates as the CI systems do ----------------------------------------------------------


@dataclass
class Job:
    """The shell scripts of a job, in order, with the environment the CI system gives them."""

    scripts: list[str]
    env: dict[str, str]
    install_lines: list[str]


def _without_install(script: str, installs: list[str]) -> str:
    kept = []
    for line in script.splitlines():
        (installs if INSTALL_LINE.match(line) else kept).append(line)
    return "\n".join(kept) + "\n"


def github_job(doc: dict[str, Any], base_sha: str) -> Job:
    """Every ``run:`` step of the workflow's only job; ``${{ }}`` expressions filled in from the event."""
    expressions = {"github.event.pull_request.base.sha": base_sha}

    def render(value: Any) -> str:
        def expression(match: re.Match[str]) -> str:
            assert match.group(1) in expressions, f"unexpected expression {match.group(0)}"
            return expressions[match.group(1)]

        return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", expression, str(value))

    ((_, job),) = doc["jobs"].items()
    env = {k: render(v) for k, v in {**doc.get("env", {}), **job.get("env", {})}.items()}
    scripts, installs = [], []
    for step in job["steps"]:
        if "run" in step:
            env.update({k: render(v) for k, v in step.get("env", {}).items()})
            scripts.append(render(_without_install(step["run"], installs)))
    return Job(scripts, env, installs)


def gitlab_job(doc: dict[str, Any], base_sha: str) -> Job:
    """``before_script`` then ``script`` of the file's only job; ``$VARIABLES`` expanded as the runner does."""
    predefined = {"CI_MERGE_REQUEST_DIFF_BASE_SHA": base_sha, "CI_PIPELINE_SOURCE": "merge_request_event"}
    ((_, job),) = [(k, v) for k, v in doc.items() if isinstance(v, dict) and "script" in v]
    env = {
        k: Template(str(v)).substitute(predefined) for k, v in {**doc.get("variables", {}), **job["variables"]}.items()
    }
    installs: list[str] = []
    scripts = [_without_install(line, installs) for line in [*job.get("before_script", []), *job["script"]]]
    return Job([s for s in scripts if s.strip()], env, installs)


def load_job(name: str, base_sha: str) -> Job:
    doc = yaml.safe_load((TEMPLATES / name).read_text())
    return github_job(doc, base_sha) if name.startswith("github") else gitlab_job(doc, base_sha)


# --- a scratch repository ---------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com", GIT_CONFIG_GLOBAL=os.devnull)
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The shipped configs, cases and data at their repository paths, committed as the base."""
    root = tmp_path / "repo"
    for folder in ("dags/configs", "dags/data"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "README.md").write_text("models\n")
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    return root


def edit_config(repo: Path, name: str, change: Any) -> None:
    path = repo / "dags" / "configs" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def run_job(name: str, repo: Path, base: str) -> tuple[int, str]:
    """Run the job's scripts in order with bash -e, as both CI systems do; the first failure ends the job."""
    job = load_job(name, base)
    assert len(job.install_lines) == 1, job.install_lines  # the template installs the package once
    env = {**os.environ, **job.env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONWARNINGS": "ignore"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo.parent / 'mlflow.db'}"
    output = ""
    for script in job.scripts:
        proc = subprocess.run(
            ["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        output += proc.stdout + proc.stderr
        if proc.returncode != 0:
            return proc.returncode, output
    assert not (repo.parent / "mlflow.db").exists(), "the job wrote to MLflow"
    return 0, output


# --- the templates ----------------------------------------------------------------------------------------


def test_both_templates_run_the_same_check_script() -> None:
    github, gitlab = load_job("github-actions.yml", "BASE"), load_job("gitlab-ci.yml", "BASE")
    assert github.scripts[-1] == gitlab.scripts[-1]
    assert 'airflow-mlops changed-configs --base "$BASE_SHA"' in github.scripts[-1]
    assert (github.env["BASE_SHA"], gitlab.env["BASE_SHA"]) == ("BASE", "BASE")
    assert github.env["CONFIG_DIR"] == gitlab.env["CONFIG_DIR"] == "dags/configs"


def test_the_templates_trigger_on_config_changes_with_the_whole_history() -> None:
    github = yaml.safe_load((TEMPLATES / "github-actions.yml").read_text())
    trigger = github.get("on", github.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "dags/configs/**" in trigger["pull_request"]["paths"]
    (job,) = github["jobs"].values()
    (checkout,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0

    gitlab = yaml.safe_load((TEMPLATES / "gitlab-ci.yml").read_text())
    job = gitlab["model-configs"]
    (rule,) = job["rules"]
    assert rule["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert "dags/configs/**/*" in rule["changes"]
    assert job["variables"]["GIT_DEPTH"] == "0"


@pytest.mark.parametrize("template", ONE_FAST)
def test_a_changed_config_is_validated_and_dry_gated_alone(template: str, repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")

    def change(raw: dict[str, Any]) -> None:
        raw["estimator"]["params"].update(alpha=0.5)
        raw["gates"]["attributions"] = {"method": "permutation"}  # SHAP would cost seconds here

    edit_config(repo, "diabetes", change)
    commit(repo, "diabetes: less regularisation")

    code, output = run_job(template, repo, base)

    assert code == 0, output
    assert "changed model configs:\ndags/configs/diabetes.yaml\n" in output
    assert "ok   dags/configs/diabetes.yaml (diabetes)" in output
    assert "## Dry gate: dags/configs/diabetes.yaml (diabetes) — **PASSED**" in output
    assert "## Feature attributions" in output and "Method: **permutation** — how much rmse worsens" in output
    assert "fraud" not in output  # the unchanged config is neither validated nor trained
    assert output.rstrip().endswith("dry gate: 1 of 1 config(s) passed")


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_an_invalid_config_fails_the_job_before_training(template: str, repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    edit_config(repo, "fraud", lambda raw: raw["estimator"].update(seed=-1))
    commit(repo, "fraud: broken seed")

    code, output = run_job(template, repo, base)

    assert code == 1, output
    assert "FAIL dags/configs/fraud.yaml\n  dags/configs/fraud.yaml: estimator.seed: got -1;" in output
    assert "Dry gate" not in output  # validate-config stopped the job


@pytest.mark.parametrize("template", BOTH_SLOW)
def test_a_gate_no_candidate_can_pass_fails_the_job(template: str, repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    edit_config(repo, "diabetes", lambda raw: raw["gates"]["thresholds"].append({"metric": "r2", "min": 0.99}))
    commit(repo, "diabetes: an impossible bar")

    code, output = run_job(template, repo, base)

    assert code == 1, output
    assert "ok   dags/configs/diabetes.yaml (diabetes)" in output
    assert "## Dry gate: dags/configs/diabetes.yaml (diabetes) — **FAILED**" in output
    assert re.search(r"dags/configs/diabetes\.yaml: threshold:r2 \(fail: 0\.\d{4} vs >= 0\.99\)", output)


def test_a_change_to_no_config_checks_nothing(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("models, documented\n")
    commit(repo, "docs")

    code, output = run_job("github-actions.yml", repo, base)

    assert (code, output) == (0, "no model config changed\n")


# --- changed-configs --------------------------------------------------------------------------------------


def changed(repo: Path, base: str, capsys: pytest.CaptureFixture[str], *paths: str) -> list[str]:
    assert main(["changed-configs", "--base", base, *(paths or ("dags/configs",))]) == 0
    return capsys.readouterr().out.splitlines()


def test_changed_configs_follows_the_files_a_config_names(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    base = git(repo, "rev-parse", "HEAD")
    cases = repo / "dags" / "configs" / "fraud_behaviour_cases.csv"
    cases.write_text(cases.read_text() + "\n")
    commit(repo, "fraud cases")
    assert changed(repo, base, capsys) == ["dags/configs/fraud.yaml"]

    data = repo / "dags" / "data" / "diabetes" / "diabetes.csv"
    data.write_text(data.read_text() + "\n")
    commit(repo, "diabetes data")
    assert changed(repo, base, capsys) == ["dags/configs/diabetes.yaml", "dags/configs/fraud.yaml"]
    assert changed(repo, base, capsys, "dags/configs/diabetes.yaml") == ["dags/configs/diabetes.yaml"]


def test_changed_configs_lists_new_configs_not_deleted_ones(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    base = git(repo, "rev-parse", "HEAD")
    configs = repo / "dags" / "configs"
    (configs / "fraud.yaml").rename(configs / "fraud_v2.yaml")
    (configs / "diabetes.yaml").unlink()
    commit(repo, "rename fraud, drop diabetes")
    assert changed(repo, base, capsys) == ["dags/configs/fraud_v2.yaml"]


def test_changed_configs_compares_with_the_fork_point(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``base...HEAD``: what the base branch did after the fork is not the request's change."""
    monkeypatch.chdir(repo)
    fork = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    edit_config(repo, "fraud", lambda raw: raw.update(description="edited on the branch"))
    commit(repo, "feature")
    git(repo, "checkout", "-q", "main")
    edit_config(repo, "diabetes", lambda raw: raw.update(description="edited on main"))
    main_tip = commit(repo, "main moved on")
    git(repo, "checkout", "-q", "feature")
    assert changed(repo, main_tip, capsys) == ["dags/configs/fraud.yaml"]
    assert changed(repo, fork, capsys) == ["dags/configs/fraud.yaml"]


def test_changed_configs_says_how_to_fetch_a_missing_base(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    missing = "0" * 40
    assert main(["changed-configs", "--base", missing, "dags/configs"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"changed-configs: commit {missing!r} is not in this clone; fetch the whole history "
        "(GitHub: actions/checkout with fetch-depth: 0; GitLab: GIT_DEPTH: 0)\n"
    )
