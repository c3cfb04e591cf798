"""Optional extras: one lazy import (``airflow_mlops._optional.require``) that names the pip install to run."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

from airflow_mlops._optional import EXTRAS, require
from airflow_mlops.exceptions import MissingExtraError, MlopsError

REPO = Path(__file__).resolve().parents[2]
OPTIONAL_PREFIXES = (
    "airflow.providers.amazon",
    "airflow.providers.microsoft",
    "evidently",
    "adlfs",
    "boto3",
    "botocore",
)
OPTIONAL_PREFIXES += ("azure",)


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` unimportable, as when their package is not installed (``None`` in sys.modules)."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_require_returns_the_module_when_installed() -> None:
    assert require("json", "aws", purpose="testing") is sys.modules["json"]


def test_a_missing_module_names_the_extra_and_its_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "evidently")
    with pytest.raises(MissingExtraError, match=r"^The report needs the optional package evidently") as info:
        require("evidently", "reports", purpose="The report")
    assert str(info.value).endswith("install it with: pip install 'airflow-mlops[reports]'")
    assert isinstance(info.value, ImportError) and isinstance(info.value, MlopsError)
    assert (info.value.extra, info.value.module, info.value.name) == ("reports", "evidently", "evidently")


def test_a_broken_installed_module_is_not_reported_as_a_missing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module exists but imports something that does not: the original error propagates."""
    (tmp_path / "half_installed.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz") as info:
        require("half_installed", "aws", purpose="testing")
    assert not isinstance(info.value, MissingExtraError)


@pytest.mark.parametrize(
    ("uri", "hidden", "extra"),
    [
        ("s3://bucket/train.csv", ("airflow.providers.amazon", "airflow.providers.amazon.aws.hooks.s3"), "aws"),
        (
            "wasbs://data@acct.blob.core.windows.net/train.csv",
            ("airflow.providers.microsoft", "airflow.providers.microsoft.azure.hooks.wasb"),
            "azure",
        ),
    ],
    ids=["s3-without-aws", "wasbs-without-azure"],
)
def test_cloud_uris_without_their_extra_say_what_to_install(
    uri: str, hidden: tuple[str, ...], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops.data.io import list_data_files, read_table, write_bytes

    hide(monkeypatch, *hidden)
    hint = re.escape(f"install it with: pip install 'airflow-mlops[{extra}]'")
    with pytest.raises(
        MissingExtraError, match=rf"^Cannot read {re.escape(repr(uri))} \(connection '\w+'\): needs .*{hint}$"
    ):
        read_table(uri)
    with pytest.raises(MissingExtraError, match=rf"^Cannot write {re.escape(repr(uri))}.*{hint}$"):
        write_bytes(uri, b"x")
    folder = uri.replace("train.csv", "batches/")
    with pytest.raises(MissingExtraError, match=rf"^Cannot list .*{hint}"):
        list_data_files(folder)


def test_the_evidently_report_without_the_reports_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pandas as pd

    from airflow_mlops.monitoring.report import evidently_drift

    hide(monkeypatch, "evidently", "evidently.presets")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(MissingExtraError, match=r"evidently drift report .* pip install 'airflow-mlops\[reports\]'"):
        evidently_drift(frame, frame, ["x"], tmp_path / "report.html", act_thresholds={"x": 0.25}, drifted_share=0.3)
    assert not (tmp_path / "report.html").exists()


def test_the_extras_in_pyproject_are_the_ones_the_messages_name() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        return {req.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for req in requirements}

    assert {extra: names(extras[extra]) for extra in EXTRAS} == {extra: set(pkgs) for extra, pkgs in EXTRAS.items()}
    assert extras["all"] == [f"airflow-mlops[{','.join(EXTRAS)}]"]
    assert "airflow-mlops[all]" in extras["test"], "make test / make demo install .[test]: it must pull every extra"
    core = names(project["dependencies"])
    assert not core & set().union(*map(set, EXTRAS.values())), "an optional package is back in the core dependencies"


def _runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_optional_packages_are_imported_only_through_require() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: import {module}"
        for path in sorted((REPO / "src").rglob("*.py"))
        for line, module in _runtime_imports(path)
        if any(module == prefix or module.startswith(prefix + ".") for prefix in OPTIONAL_PREFIXES)
    ]
    assert offenders == [], "use airflow_mlops._optional.require(module, extra, purpose=...):\n" + "\n".join(offenders)


def test_the_import_guard_can_fail(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import boto3\n"
        "def f():\n    from evidently import Report\n"
    )
    assert _runtime_imports(probe) == [(1, "typing"), (5, "evidently")]
