"""The provider as users install it: built wheel, fresh virtualenv, no editable install, no extras.

Steps (module-scoped fixtures, so the build and the venv are made once):

1. ``python -m build --wheel --sdist`` on a copy of the sources (setuptools writes ``<pkg>.egg-info`` next
   to the package; one in the checkout's ``src/`` makes an editable install register our plugin twice).
   The build is isolated, as a user's would be; its backend (setuptools) is installed by uv from its
   cache / PyPI, held to ``constraints.txt`` through ``UV_CONSTRAINT``.
2. A fresh venv (``python -m venv``) gets the wheel with ``uv pip install -c constraints.txt <wheel>``:
   the core install only, so an import of a package pyproject does not declare fails here.
3. With a temporary ``AIRFLOW_HOME``: ``airflow providers list``, the plugin loaded exactly once, a DagBag
   over a copy of ``dags/`` with zero import errors, and ``fraud__train`` with ``dag.test()`` on an MLflow
   SQLite store; the cloud/report paths say which extra to install.
4. ``<wheel>[all]`` in the same venv: evidently and the Amazon/Azure providers import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEV_BIN = Path(sys.executable).parent  # the project's .venv/bin: uv and build live there
UV = DEV_BIN / "uv"
CONSTRAINTS = REPO / "constraints.txt"
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "src")
UI_DATA = ("ui/templates", "ui/static")


def run(args: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run a command; on failure, show its output (a packaging failure is only useful with the log)."""
    proc = subprocess.run(
        [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{args} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Install:
    """The fresh venv and the environment of a user's Airflow (temporary home, copied DAG folder)."""

    root: Path
    python: Path
    env: dict[str, str]

    def bin(self, name: str) -> str:
        return str(self.python.with_name(name))

    def python_json(self, code: str, *args: str, timeout: float = 300) -> dict:
        out = run([self.python, "-c", code, *args], env=self.env, cwd=self.root, timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    tree = tmp_path_factory.mktemp("source-tree")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, tree / name)
    out = tmp_path_factory.mktemp("dist")
    env = {
        **os.environ,
        "PATH": f"{DEV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "UV_CONSTRAINT": str(CONSTRAINTS),
    }
    run([sys.executable, "-m", "build", "--wheel", "--sdist", "--installer", "uv", "--outdir", out, tree], env=env)
    (wheel,) = out.glob("airflow_mlops-*.whl")
    (sdist,) = out.glob("airflow_mlops-*.tar.gz")
    return Dist(wheel=wheel, sdist=sdist)


def _user_env(root: Path, venv: Path) -> dict[str, str]:
    """A user's shell: nothing of the test session's Airflow/MLflow settings or of this checkout's paths."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "MLFLOW_", "PYTHON", "VIRTUAL_ENV", "UV_"))
    }
    home = root / "airflow_home"
    return {
        **inherited,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW_MLOPS_CONFIG_DIR": str(root / "dags" / "configs"),
        "AIRFLOW_MLOPS_STATE_DB": f"sqlite:///{root / 'airflow_mlops_state.db'}",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {
                "conn_type": "mlflow",
                "host": f"sqlite:///{root / 'mlflow.db'}",
                "extra": {"artifact_root": str(root / "mlflow-artifacts")},
            }
        ),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "SCARF_ANALYTICS": "false",
    }


@pytest.fixture(scope="module")
def install(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("user")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([UV, "pip", "install", "--python", python, "-c", CONSTRAINTS, dist.wheel], timeout=600)
    shutil.copytree(REPO / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "plugins", root / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    return Install(root=root, python=python, env=_user_env(root, venv))


def test_the_wheel_and_sdist_carry_what_users_need(dist: Dist) -> None:
    package = REPO / "src" / "airflow_mlops"
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(whl.read(metadata_name).decode())
        entry_points = whl.read(metadata_name.replace("METADATA", "entry_points.txt")).decode()

    ui_files = {
        f"airflow_mlops/{path.relative_to(package).as_posix()}"
        for folder in UI_DATA
        for path in (package / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert ui_files <= names, f"templates/static missing from the wheel: {sorted(ui_files - names)}"
    assert "airflow_mlops/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if "egg-info" in n or "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("tests/", "dags/", "benchmarks/"))]

    assert "Framework :: Apache Airflow :: Provider" in metadata.get_all("Classifier")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert set(metadata.get_all("Provides-Extra")) >= {"aws", "azure", "reports", "all", "test"}
    core = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert not [
        r
        for r in core
        if r.startswith(("apache-airflow-providers-amazon", "apache-airflow-providers-microsoft", "evidently"))
    ]
    assert "provider_info = airflow_mlops:get_provider_info" in entry_points
    assert "airflow_mlops = airflow_mlops.ui.plugin:AirflowMlopsPlugin" in entry_points

    with tarfile.open(dist.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "LICENSE", "src/airflow_mlops/__init__.py"} <= members
    # the build ran on a copy: the checkout keeps no egg-info next to the package (see the module docstring)
    assert not list((REPO / "src").glob("*.egg-info"))


def test_the_wheel_is_installed_not_editable_and_without_extras(install: Install) -> None:
    found = install.python_json(
        "import importlib.util, json, airflow_mlops\n"
        "from importlib.metadata import distribution\n"
        "direct = distribution('airflow-mlops').read_text('direct_url.json') or '{}'\n"
        "print(json.dumps({'file': airflow_mlops.__file__, 'direct': json.loads(direct),\n"
        "  'missing': [m for m in ('evidently', 'adlfs', 'boto3', 'airflow.providers.amazon',\n"
        "     'airflow.providers.microsoft') if importlib.util.find_spec(m.split('.')[0]) is None\n"
        "     or (m.startswith('airflow.providers.') and importlib.util.find_spec(m) is None)]}))"
    )
    assert found["file"].startswith(str(install.root / "venv")), found
    assert not found["direct"].get("dir_info", {}).get("editable", False), found
    assert set(found["missing"]) == {
        "evidently",
        "adlfs",
        "boto3",
        "airflow.providers.amazon",
        "airflow.providers.microsoft",
    }
    run([UV, "pip", "check", "--python", install.python])


def test_airflow_lists_the_provider_and_loads_the_plugin_once(install: Install) -> None:
    providers = run([install.bin("airflow"), "providers", "list"], env=install.env, cwd=install.root).stdout
    assert any(line.startswith("airflow-mlops ") and "0.1.0" in line for line in providers.splitlines()), providers

    listed = json.loads(
        run([install.bin("airflow"), "plugins", "-o", "json"], env=install.env, cwd=install.root).stdout
    )
    assert [p["name"] for p in listed].count("airflow-mlops") == 1, listed
    # the plugins folder holds the repo's plugins/airflow_mlops_plugin.py, which steps aside for the entry point
    loaded = install.python_json(
        "import json\nfrom airflow import plugins_manager\nplugins, errors = plugins_manager._get_plugins()\n"
        "print(json.dumps({'names': [p.name for p in plugins], 'errors': errors}))"
    )
    assert loaded == {"names": ["airflow-mlops"], "errors": {}}


CHECK_DAGS = """
import json, sys
from datetime import UTC, datetime
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
errors = {k: str(v) for k, v in bag.import_errors.items()}
result = {"dags": sorted(bag.dag_ids), "errors": errors}
if not errors:
    when = datetime(2026, 1, 5, tzinfo=UTC)
    run = bag.dags["fraud__train"].test(logical_date=when, run_after=when)
    result["state"] = str(run.state)
    result["tasks"] = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    from airflow_mlops.hooks.mlflow import MlflowHook
    with MlflowHook().activate() as client:
        result["versions"] = [v.version for v in client.search_model_versions("name = 'fraud'")]
print(json.dumps(result))
"""


def test_the_core_install_parses_the_dags_and_trains(install: Install) -> None:
    run([install.bin("airflow"), "db", "migrate"], env=install.env, cwd=install.root)
    result = install.python_json(CHECK_DAGS, str(install.root / "dags"), timeout=600)

    assert result["errors"] == {}
    assert {"fraud__train", "fraud__deploy", "fraud__monitor", "diabetes__train"} <= set(result["dags"])
    assert result["state"] == "success", result["tasks"]
    assert set(result["tasks"].values()) == {"success"}, result["tasks"]
    assert [str(v) for v in result["versions"]] == ["1"]


MISSING_EXTRAS = """
import json
import pandas as pd
from airflow_mlops.data.io import read_table
from airflow_mlops.exceptions import MissingExtraError
from airflow_mlops.monitoring.report import evidently_drift

messages = {}
for uri in ("s3://bucket/train.csv", "wasbs://data@acct.blob.core.windows.net/train.csv"):
    try:
        read_table(uri)
    except MissingExtraError as exc:
        messages[uri] = str(exc)
frame = pd.DataFrame({"x": [1.0, 2.0]})
try:
    evidently_drift(frame, frame, ["x"], __import__("pathlib").Path("report.html"), act_thresholds={"x": 0.25},
                    drifted_share=0.3)
except MissingExtraError as exc:
    messages["report"] = str(exc)
print(json.dumps(messages))
"""


def test_the_core_install_names_the_extra_for_cloud_storage_and_reports(install: Install) -> None:
    messages = install.python_json(MISSING_EXTRAS)
    assert messages["s3://bucket/train.csv"].endswith("install it with: pip install 'airflow-mlops[aws]'")
    assert "apache-airflow-providers-amazon" in messages["s3://bucket/train.csv"]
    wasb = messages["wasbs://data@acct.blob.core.windows.net/train.csv"]
    assert wasb.endswith("install it with: pip install 'airflow-mlops[azure]'")
    assert messages["report"].endswith("install it with: pip install 'airflow-mlops[reports]'")


def test_the_all_extra_brings_evidently_and_the_cloud_providers(install: Install, dist: Dist) -> None:
    """Last in this module: it adds the extras to the shared venv."""
    run([UV, "pip", "install", "--python", install.python, "-c", CONSTRAINTS, f"{dist.wheel}[all]"], timeout=600)
    run([UV, "pip", "check", "--python", install.python])
    found = install.python_json(
        "import json\nfrom airflow_mlops._optional import require\n"
        "mods = {'evidently': 'reports', 'evidently.presets': 'reports', 'adlfs': 'azure',\n"
        "  'airflow.providers.amazon.aws.hooks.s3': 'aws', 'botocore.exceptions': 'aws',\n"
        "  'airflow.providers.microsoft.azure.hooks.wasb': 'azure', 'azure.core.exceptions': 'azure'}\n"
        "print(json.dumps({m: require(m, e, purpose='test').__name__ for m, e in mods.items()}))"
    )
    assert found == {m: m for m in found} and len(found) == 7
