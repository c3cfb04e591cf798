"""The Models page in a real browser: Debian's headless Chromium driven by Playwright, against a live Airflow.

Setup (this process): v1 and v2 of ``fraud_ui`` (the fraud example under its own name) are trained with the real
operators; v1 is made champion and v2 gets 10 % canary traffic through
:class:`~airflow_mlops.deploy.targets.LocalGatewayTarget`. A live Airflow (``live_airflow.py``, shared with
``test_rest_api.py``, which drives ``fraud``: ``shared_live_airflow`` in ``conftest.py``) runs ``fraud_ui__train``
with ``approval.required: true`` until its ``approve`` task waits.

Browser (``tools/browser/models_page.mjs``, Node + ``playwright-core`` with ``executablePath: /usr/bin/chromium``;
no browser download): sign in on the simple auth manager's login page, open ``/plugin/models`` (the plugin's
page in the UI's frame), assert "champion v1 90%" and "canary v2 10%", follow the pending-approval link into
Airflow's required-actions UI, click Approve. Screenshots go to ``test-artifacts/browser/`` (gitignored).
The test then checks over REST that the answer was recorded by the UI's user and the run succeeds.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and ``npm ci --prefix tools/browser``: skipped
without them, failed when ``CI=true``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_rest_api import UI_MODEL, log, wait_pending_approval, wait_success

from browser_support import assert_screenshots, browser_node, run_browser
from live_airflow import API_USER
from support import train_version

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CANARY_PERCENT = 10
MODEL = UI_MODEL
TRAIN = f"{MODEL}__train"


@pytest.fixture
def browser_env(shared_live_airflow: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    node = browser_node()
    setup = shared_live_airflow.start()  # the database migrates (if not done yet) while v1 and v2 train
    for key in ("AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_MLOPS_STATE_DB"):
        monkeypatch.setenv(key, setup["env"][key])
    yield {**setup, "node": node, "live": shared_live_airflow}


def test_models_page_and_approval_in_chromium(browser_env: dict[str, Any]) -> None:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    began = time.monotonic()
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    config = browser_env["configs"][MODEL]
    v1 = train_version(config, "manual__v1")
    v2 = train_version(config, "manual__v2")
    target = LocalGatewayTarget.from_options(client=browser_env["client"], state_url=browser_env["state_url"])
    target.promote(MODEL, v1, actor="test", reason="first champion")
    target.set_traffic(MODEL, v2, CANARY_PERCENT, actor="test", reason="canary for the browser test")
    log(f"v{v1} champion, v{v2} canary {CANARY_PERCENT} % after {time.monotonic() - began:.1f} s")

    airflow = browser_env["live"].ready()
    airflow.wait_dag(TRAIN)
    for dag_id in (f"{MODEL}__deploy", f"{MODEL}__monitor"):
        airflow.wait_dag(dag_id)
        airflow.client().patch(f"/api/v2/dags/{dag_id}", json={"is_paused": True}).raise_for_status()
    run_id = airflow.trigger(TRAIN)["dag_run_id"]
    api = airflow.client()
    pending = wait_pending_approval(api, airflow, run_id, dag_id=TRAIN)
    log(f"{run_id} awaits approval after {time.monotonic() - began:.1f} s: {pending['subject']}")

    result = run_browser(
        browser_env["node"],
        {
            "base": airflow.url,
            "username": API_USER,
            "password": airflow.password,
            "model": MODEL,
            "expect": [f"champion v{v1} {100 - CANARY_PERCENT}%", f"canary v{v2} {CANARY_PERCENT}%"],
            "approve": True,
            "approvalSubject": pending["subject"],
            "artifacts": str(ARTIFACTS),
        },
    )
    log(f"browser: {result.get('steps')}")
    assert result["ok"], result.get("error")

    answered = api.get(f"/api/v2/dags/{TRAIN}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails").json()
    assert answered["response_received"] and answered["chosen_options"] == ["Approve"], answered
    assert answered["responded_by_user"]["name"] == API_USER, answered
    wait_success(api, airflow, run_id, dag_id=TRAIN)
    log(f"whole test: {time.monotonic() - began:.1f} s")

    version = browser_env["client"].get_model_version(MODEL, "3")
    assert version.tags["mlops.approved_by"] == API_USER, version.tags
    assert_screenshots(ARTIFACTS, "models-page.png", "approval-pending.png", "approval-done.png")
