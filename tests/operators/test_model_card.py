"""Every gated version carries a model card (markdown + HTML in its run), kept current by approvals and the monitor.

The real operators train, register and gate a version of the fraud example into a local MLflow store; the card
is read back from the run's artifacts as a reader would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_mlops import cli
from airflow_mlops.monitoring.verdicts import monitoring_experiment
from airflow_mlops.operators.registry import RecordApprovalOperator
from airflow_mlops.registry.card import CARD_HTML, CARD_MARKDOWN, CardText, write_card
from airflow_mlops.vocabulary import Tag
from support import approval_answer, context, train_version

CARD = {
    "card": {
        "intended_use": "Rank card transactions for the fraud team's manual review queue.",
        "limitations": ["Not checked on corporate cards.", "Amounts above 10,000 are rare in training."],
    }
}


def attributions(method: str) -> dict[str, Any]:
    """Feature attributions on few rows, to keep the gate quick."""
    return {"gates": {"attributions": {"method": method, "rows": 60, "slice_rows": 20}}}


def artifact(client: Any, run_id: str, path: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()


@pytest.fixture
def trained(workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{tmp_path / 'state.db'}")  # its own audit trail
    config = workspace.write_config("fraud", {**CARD, **attributions("permutation")})
    return config, train_version(config, "manual__card_1")


def test_the_gate_writes_the_card_with_what_people_wrote_and_what_was_measured(
    workspace: Any, trained: tuple[Path, str], tmp_path: Path
) -> None:
    _, version = trained
    client = workspace.client()
    registered = client.get_model_version("fraud", version)

    card = artifact(client, registered.run_id, CARD_MARKDOWN, tmp_path)

    assert card.startswith(f"# Model card: fraud v{version}\n")
    assert "- intended use: Rank card transactions for the fraud team's manual review queue." in card
    assert "  - Not checked on corporate cards." in card
    assert f"- data sha256: `{registered.tags[Tag.DATA_SHA256]}`" in card
    assert f"- config sha256: `{registered.tags[Tag.CONFIG_SHA256]}`" in card
    assert "| estimator | sklearn.linear\\_model.LogisticRegression |" in card
    assert "| n\\_train |" in card and "| roc\\_auc |" in card
    assert "Result: **passed**" in card and "### Per-slice metrics\n- slice:" in card
    assert "## Approvals\nnone recorded" in card and "no monitoring run of this version yet" in card
    assert "### What drives its answers\nMethod: **permutation** — how much roc\\_auc worsens" in card
    assert "- merchant\\_category = " in card  # per group of the slice column
    html = artifact(client, registered.run_id, CARD_HTML, tmp_path / "html")
    assert html.startswith("<!doctype html>") and "Not checked on corporate cards." in html
    assert "<h3>What drives its answers</h3>" in html and "Method: <b>permutation</b>" in html


@pytest.mark.slow
def test_with_shap_installed_the_card_shows_shap_attributions(
    workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``method: auto`` as users get it with the ``explain`` extra (installed in the test environment)."""
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{tmp_path / 'state.db'}")
    config = workspace.write_config("fraud", attributions("auto"))
    version = train_version(config, "manual__card_shap")
    client = workspace.client()
    registered = client.get_model_version("fraud", version)

    card = artifact(client, registered.run_id, CARD_MARKDOWN, tmp_path)

    assert (
        "### What drives its answers\nMethod: **shap** — mean \\|SHAP value\\| of the probability of the positive "
        "class; " in card
    )
    html = artifact(client, registered.run_id, CARD_HTML, tmp_path / "html")
    assert "Method: <b>shap</b>" in html


def test_an_approval_and_a_monitoring_run_update_the_card(
    workspace: Any, trained: tuple[Path, str], tmp_path: Path
) -> None:
    config, version = trained
    client = workspace.client()
    answer = approval_answer("ok <script>alert(1)</script> [x](http://evil)")
    RecordApprovalOperator(task_id="r", config_path=str(config), answer=answer).execute(
        context(run_id="manual__card_1")
    )
    experiment = client.create_experiment(monitoring_experiment("fraud"))
    window = client.create_run(
        experiment,
        tags={
            Tag.CHAMPION: version,
            Tag.DRIFT_ACT: "true",
            Tag.WINDOW_START: "10:00",
            Tag.WINDOW_END: "11:00",
            Tag.FEEDBACK_WARNING: "labels arrive for 0.0% of 900 answers with class '0' <b>x</b>",
        },
    )
    for name, value in {"rows": 1200.0, "drifted_share": 0.5, "live_roc_auc": 0.81, "label_coverage": 0.25}.items():
        client.log_metric(window.info.run_id, name, value)
    client.set_terminated(window.info.run_id)  # a recorded window; a run still going (or FAILED) is not shown
    unfinished = client.create_run(experiment, tags={Tag.CHAMPION: version, Tag.DRIFT_ACT: "false"})
    write_card(client, "fraud", version, CardText(intended_use="x"))  # what the monitor does after its run

    run_id = client.get_model_version("fraud", version).run_id
    card = artifact(client, run_id, CARD_MARKDOWN, tmp_path)
    assert "| challenger | approved | alice | 2026-12-07T12:00:00+00:00 | ok &lt;script" in card
    assert "<script>" not in card and "[x](" not in card
    assert f"- latest monitoring run `{window.info.run_id}` (10:00 to 11:00): drift" in card
    assert unfinished.info.run_id not in card
    assert "- live\\_roc\\_auc: 0.8100" in card and "- rows in the window: 1200.0000" in card
    assert "- label coverage: 25.0% of the window's sampled answers got a label" in card
    assert "- **one-sided feedback:** labels arrive for 0.0% of 900 answers with class '0' &lt;b\\>x&lt;/b\\>" in card
    html = artifact(client, run_id, CARD_HTML, tmp_path / "html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "label coverage: 25.0 %" in html and "one-sided feedback:</b> labels arrive" in html and "<b>x" not in html


def test_a_card_that_cannot_be_written_does_not_stop_training(
    workspace: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The card is a view of evidence kept elsewhere: a failed write is logged, the gate's verdict stands."""
    import airflow_mlops.registry.card as card_module

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("artifact store down")

    monkeypatch.setattr(card_module, "write_card", broken)
    config = workspace.write_config("fraud")
    version = train_version(config, "manual__card_broken")
    assert workspace.client().get_model_version("fraud", version).tags[Tag.GATE] == "passed"
    logged = capfd.readouterr()  # Airflow's task logger writes to the console
    assert (
        f"model card of fraud v{version} not written: ConnectionError: artifact store down" in logged.out + logged.err
    )


def test_cli_card(workspace: Any, trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, version = trained
    uri, configs = workspace.tracking_uri, str(workspace.config_dir)
    assert cli.main(["card", "fraud", version, "--tracking-uri", uri, "--config-dir", configs]) == 0
    assert capsys.readouterr().out.startswith(f"# Model card: fraud v{version}\n")
    assert cli.main(["card", "fraud", "@champion", "--tracking-uri", uri, "--config-dir", configs]) == 1
    assert "card: fraud @champion:" in capsys.readouterr().err  # no champion yet
    workspace.client().set_registered_model_alias("fraud", "champion", version)
    assert cli.main(["card", "fraud", "--html", "--tracking-uri", uri, "--config-dir", configs]) == 0
    assert "<h1>Model card: fraud v" in capsys.readouterr().out
    assert cli.main(["card", "fraud", "latest", "--tracking-uri", uri, "--config-dir", configs]) == 2
