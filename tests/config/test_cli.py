"""``airflow-mlops validate-config``: exit codes and the exact lines printed for each file.

Runs ``airflow_mlops.cli.main`` in-process (fast, ``capsys``), plus the installed console script once
through a subprocess to prove the entry point is wired.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlops.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "configs"
CONSOLE_SCRIPT = Path(sys.executable).with_name("airflow-mlops")


def copy_fraud(folder: Path, *, with_cases: bool = True) -> Path:
    """The shipped fraud config in ``folder`` (its data path is not checked by validate-config)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = Path(shutil.copy(EXAMPLES / "fraud.yaml", folder / "fraud.yaml"))
    if with_cases:
        shutil.copy(EXAMPLES / "fraud_behaviour_cases.csv", folder / "fraud_behaviour_cases.csv")
    return config


def test_shipped_configs_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", str(EXAMPLES)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"ok   {EXAMPLES / 'diabetes.yaml'} (diabetes)\nok   {EXAMPLES / 'fraud.yaml'} (fraud)\n"
        f"ok   {EXAMPLES / 'tickets.yaml'} (tickets)\n"
    )
    assert err == ""


def test_single_file_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", str(EXAMPLES / "fraud.yaml")]) == 0
    assert capsys.readouterr().out == f"ok   {EXAMPLES / 'fraud.yaml'} (fraud)\n"


def test_broken_file_fails_and_names_file_field_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = copy_fraud(tmp_path)
    broken = tmp_path / "churn.yaml"
    broken.write_text(
        "name: churn\ntask: classification\ndata: {uri: 'ftp://host/churn.csv'}\ntarget: churned\n"
        "features: {numeric: [tenure]}\nestimator: {class: sklearn.linear_model.LogisticRegression, seed: -1}\n"
    )

    assert main(["validate-config", str(tmp_path)]) == 1

    out, err = capsys.readouterr()
    assert out == f"ok   {good} (fraud)\n"
    assert err.splitlines() == [
        f"FAIL {broken}",
        f"  {broken}: data.uri: got 'ftp://host/churn.csv'; expected a local path or a file://, s3://, wasbs://, "
        "wasb://, abfs:// or abfss:// URI (scheme 'ftp' is not supported)",
        f"  {broken}: estimator.seed: got -1; expected: input should be greater than or equal to 0",
    ]


def test_missing_behaviour_cases_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = copy_fraud(tmp_path, with_cases=False)

    assert main(["validate-config", str(tmp_path)]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    expected_location = (tmp_path / "fraud_behaviour_cases.csv").resolve()
    assert err.splitlines() == [
        f"FAIL {config}",
        f"  {config}: gates.behaviour.cases: got 'fraud_behaviour_cases.csv'; "
        f"expected an existing CSV file ({expected_location})",
    ]


def test_every_argument_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["validate-config", str(EXAMPLES), str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out.count("ok   ") == 3
    assert err.splitlines() == [f"FAIL {missing}", f"  {missing}: cannot read file: No such file or directory"]


def test_duplicate_names_across_folders_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = copy_fraud(tmp_path / "a")
    second = copy_fraud(tmp_path / "b")
    assert main(["validate-config", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out, err = capsys.readouterr()
    assert out == f"ok   {first} (fraud)\n"
    assert err.splitlines() == [
        f"FAIL {second}",
        f"  {second}: name: got 'fraud'; expected a name not already used by {first}",
    ]


def test_no_config_files_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "README.md").write_text("no configs here")
    assert main(["validate-config", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"no config files found in [{str(tmp_path)!r}]\n"


def test_paths_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["validate-config"])
    assert e.value.code == 2
    assert "the following arguments are required: paths" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "code", "stdout", "stderr_start"),
    [
        pytest.param(
            "dags/configs",
            0,
            "ok   dags/configs/diabetes.yaml (diabetes)\nok   dags/configs/fraud.yaml (fraud)\n"
            "ok   dags/configs/tickets.yaml (tickets)\n",
            "",
            id="valid",
        ),
        pytest.param("dags/no_such_folder", 1, "", "FAIL dags/no_such_folder\n", id="invalid"),
    ],
)
def test_console_script_entry_point(target: str, code: int, stdout: str, stderr_start: str) -> None:
    assert CONSOLE_SCRIPT.is_file(), f"console script not installed at {CONSOLE_SCRIPT}"
    proc = subprocess.run(
        [str(CONSOLE_SCRIPT), "validate-config", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (code, stdout), proc.stderr
    assert proc.stderr.startswith(stderr_start)
    if stderr_start:
        assert "Traceback" not in proc.stderr
