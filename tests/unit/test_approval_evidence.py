"""The approval form's evidence, read from a real (local) MLflow store: verdicts, drift, lineage, hostile reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.exceptions import RegistryError
from airflow_mlops.gates.evidence import GATE_REPORT_JSON, approval_body, cell, code, read_evidence, version_page
from airflow_mlops.vocabulary import Tag

MODEL = "fraud"


@pytest.fixture
def client(tmp_path: Path) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def register(client: Any, tmp_path: Path, report: Any, *, run_tags: dict[str, str] | None = None) -> str:
    """A training run with ``report`` as its gate report artifact, registered as a version of ``fraud``."""
    experiment = client.create_experiment("train", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment, tags=run_tags or {})
    source = tmp_path / "report"
    (source / "gate").mkdir(parents=True, exist_ok=True)
    (source / GATE_REPORT_JSON).write_text(report if isinstance(report, str) else json.dumps(report))
    client.log_artifacts(run.info.run_id, str(source))
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, run.info.artifact_uri, run_id=run.info.run_id)
    client.set_model_version_tag(MODEL, version.version, Tag.DATA_SHA256, "ab" * 32)
    client.set_model_version_tag(MODEL, version.version, Tag.DATA_URI, "s3://bucket/fraud/batch_7.csv")
    return str(version.version)


REPORT = {
    "model": MODEL,
    "version": "1",
    "run_id": "r",
    "result": "passed",
    "checks": [
        {"name": "roc_auc", "kind": "threshold", "status": "pass", "value": 0.91234, "threshold": ">= 0.8"},
        {
            "name": "champion:roc_auc",
            "kind": "champion",
            "status": "pass",
            "value": 0.9123,
            "threshold": ">= 0.8800 (champion v3 = 0.9000, max regression 0.02)",
        },
        {"name": "slice:country=FR", "kind": "slice", "status": "pass", "value": 0.04, "threshold": "<= 0.1"},
        {"name": "slice:country=DE", "kind": "slice", "status": "pass", "value": 0.07, "threshold": "<= 0.1"},
        {"name": "case:big_ticket", "kind": "behaviour", "status": "fail", "value": "0", "detail": "expected 1"},
    ],
}


def test_the_body_shows_every_verdict_the_champion_the_worst_slice_and_the_lineage(client: Any, tmp_path: Path) -> None:
    version = register(client, tmp_path, REPORT)

    evidence = read_evidence(client, MODEL, version, stage="champion", ui_url="http://mlflow.internal:5000/")
    body = approval_body(evidence)

    assert body.startswith(f"**fraud v{version} → `champion`?** Gate **passed**.")
    assert r"**1 failing check(s):** case:big\_ticket" in body
    assert (
        r"| champion:roc\_auc | champion | 0.9123 | \>= 0.8800 \(champion v3 = 0.9000, max regression 0.02\) | pass |"
        in body
    )
    assert r"| roc\_auc | threshold | 0.9123 | \>= 0.8 | pass |" in body
    assert "Largest slice gap: slice:country=DE = 0.0700 (pass)." in body
    assert "- data sha256: `" + "ab" * 32 + "`" in body and "- data: `s3://bucket/fraud/batch_7.csv`" in body
    assert f"[open v{version} in MLflow](http://mlflow.internal:5000/#/models/fraud/versions/{version})" in body
    assert "Retrained for drift" not in body


ATTRIBUTIONS = {
    "method": "permutation",
    "unit": "how much roc_auc worsens when the feature's values are shuffled (mean of 3)",
    "rows": 200,
    "seconds": 0.61,
    "note": "",
    "overall": [{"feature": f"f{i}", "value": 0.5 - i / 10, "spread": 0.01} for i in range(6)],
    "groups": [
        {"column": "country", "group": "FR", "rows": 50, "note": "", "features": [{"feature": "f3", "value": 0.2}]}
    ],
}


def test_the_body_shows_the_five_features_that_drive_the_answers(client: Any, tmp_path: Path) -> None:
    version = register(client, tmp_path, {**REPORT, "attributions": ATTRIBUTIONS})

    body = approval_body(read_evidence(client, MODEL, version, stage="challenger"))

    assert "#### What drives its answers\nMethod: **permutation** — how much roc\\_auc worsens" in body
    assert "200 held-out rows explained in 0.61 s." in body
    assert "| f0 | 0.5000 ± 0.0100 |" in body and "| f4 |" in body and "| f5 |" not in body
    assert "… and 1 more features." in body and "- country = FR (50 rows): f3 0.2000" in body


def test_attributions_that_are_not_the_gates_leave_them_out_not_the_form(client: Any, tmp_path: Path) -> None:
    hostile = {**ATTRIBUTIONS, "overall": [{"feature": "f0", "value": "1e309"}]}
    version = register(client, tmp_path, {**REPORT, "attributions": hostile})

    evidence = read_evidence(client, MODEL, version, stage="challenger")

    assert evidence.attributions is None
    assert "#### What drives its answers\nNot shown: " in approval_body(evidence)  # the approver is told why
    assert "overall\\[0\\].value: expected a finite number" in approval_body(evidence)
    assert evidence.checks  # the verdicts are still there


def test_a_number_no_float_can_hold_is_refused_not_raised(client: Any, tmp_path: Path) -> None:
    huge = {**ATTRIBUTIONS, "rows": 10**400}  # json.loads makes it an int
    version = register(client, tmp_path, {**REPORT, "attributions": huge})
    evidence = read_evidence(client, MODEL, version, stage="challenger")
    assert (
        evidence.attributions is None and "attributions.rows: expected a finite number" in evidence.attributions_problem
    )


def test_the_drift_that_started_the_retrain_is_shown(client: Any, tmp_path: Path) -> None:
    experiment = client.create_experiment("monitor")
    monitor = client.create_run(
        experiment, tags={Tag.DRIFT_ACT: "true", Tag.WINDOW_START: "2026-12-07T10:00", Tag.WINDOW_END: "11:00"}
    )
    for name, value in {"psi.amount": 0.61, "psi.merchant": 0.05, "drifted_share": 0.5}.items():
        client.log_metric(monitor.info.run_id, name, value)
    version = register(client, tmp_path, REPORT, run_tags={Tag.RETRAINED_FOR_DRIFT: f"{monitor.info.run_id},gone"})

    body = approval_body(read_evidence(client, MODEL, version, stage="challenger"))

    assert "#### Retrained for drift" in body
    assert (
        f"- monitoring run `{monitor.info.run_id}` (2026-12-07T10:00 to 11:00): drift; "
        "amount PSI 0.610, merchant PSI 0.050" in body
    )
    assert "- monitoring run `gone` (): monitoring run not found" in body
    assert "open v" not in body  # a sqlite tracking URI has no UI to link to


def test_a_hostile_report_cannot_break_out_of_its_table(client: Any, tmp_path: Path) -> None:
    nasty = {
        **REPORT,
        "checks": [
            {
                "name": "x | injected | column\n\n# heading",
                "kind": "threshold",
                "status": "pass",
                "value": "<img src=x onerror=alert(1)>",
                "threshold": "`code` " + "y" * 1000,
            }
        ],
    }
    version = register(client, tmp_path, nasty)

    body = approval_body(read_evidence(client, MODEL, version, stage="canary"))

    row = next(line for line in body.splitlines() if line.startswith("| x"))
    assert row.startswith(
        r"| x \| injected \| column \# heading | threshold | &lt;img src=x onerror=alert\(1\)\> | 'code' y"
    )
    assert row.count(" | ") == 5 and len(row) < 400
    assert "\n# heading" not in body and "<img" not in body


def test_a_report_cannot_put_links_images_or_emphasis_on_the_form(client: Any, tmp_path: Path) -> None:
    """Slice names come from data values: a value like ``[approve here](http://evil)`` must stay text."""
    lure = {
        **REPORT,
        "checks": [
            {
                "name": "slice:[approve here](http://evil.example)",
                "kind": "slice",
                "status": "fail",
                "value": 0.5,
                "detail": "![](http://tracker.example/p.png) **passed** _ok_ ~~no~~",
            }
        ],
    }
    version = register(client, tmp_path, lure)

    body = approval_body(read_evidence(client, MODEL, version, stage="champion"))

    assert "[approve here](" not in body and "![](" not in body and "**passed**" not in body.split("\n", 1)[1]
    assert r"slice:\[approve here\]\(http://evil.example\)" in body
    assert r"\!\[\]\(http://tracker.example/p.png\) \*\*passed\*\* \_ok\_ \~\~no\~\~" in body


@pytest.mark.parametrize(
    ("report", "match"),
    [
        ("not json {", "is not readable JSON"),
        (["a list"], "not a gate report"),
        ({"result": "passed"}, "not a gate report"),
        ({"result": "maybe", "checks": []}, "result: expected 'passed' or 'failed', got 'maybe'"),
        ({"result": "passed", "checks": [{"kind": "slice"}]}, r"checks\[0\]: expected an object with a 'name'"),
    ],
)
def test_a_report_that_is_not_the_gates_is_refused(client: Any, tmp_path: Path, report: Any, match: str) -> None:
    version = register(client, tmp_path, report)
    with pytest.raises(RegistryError, match=match):
        read_evidence(client, MODEL, version, stage="champion")


def test_a_version_without_a_gate_report_is_refused(client: Any, tmp_path: Path) -> None:
    client.create_registered_model(MODEL)
    experiment = client.create_experiment("bare", artifact_location=(tmp_path / "bare").as_uri())
    run = client.create_run(experiment)
    version = client.create_model_version(MODEL, run.info.artifact_uri, run_id=run.info.run_id)
    with pytest.raises(RegistryError, match=rf"fraud v{version.version}: no gate report \(gate/gate_report.json"):
        read_evidence(client, MODEL, version.version, stage="champion")


def test_cell_and_version_page() -> None:
    assert cell(float("nan")) == "nan" and cell(None) == "" and cell(0.123456) == "0.1235"
    assert cell("a\\|b") == "a\\\\\\|b" and code("a`b\nc") == "a'b c"
    assert len(cell("z" * 1000)) == 240 and cell("z" * 1000).endswith("…")
    assert version_page(None, "m", "1") is None and version_page("file:///x", "m", "1") is None
    assert version_page("https://ml.example/", "a b/c", "2") == "https://ml.example/#/models/a%20b%2Fc/versions/2"
