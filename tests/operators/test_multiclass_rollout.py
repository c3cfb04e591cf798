"""The canary step reads each version's classes before it moves traffic (issue 13): an edited tag fails it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_mlops import settings
from airflow_mlops.exceptions import DataError
from airflow_mlops.operators.rollout import CanaryStepOperator, version_classes
from airflow_mlops.training.classes import ClassSet
from airflow_mlops.vocabulary import Tag
from support import context, train_version

MODEL = "fraud"


def test_an_edited_classes_tag_fails_the_canary_step_before_traffic_moves(
    workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", state_url)
    monkeypatch.delenv(settings.OPTIONS["prediction_log"].env, raising=False)
    config = workspace.write_config("fraud", {"serving": {"prediction_log": str(tmp_path / "plog")}})
    v1 = train_version(config, "manual__v1")
    client = workspace.client()
    target = LocalGatewayTarget.from_options(client=client, state_url=state_url)
    target.promote(MODEL, v1, actor="test", reason="first champion")
    v2 = train_version(config, "manual__v2")
    assert version_classes(client, MODEL, v2) == ClassSet((0, 1), 1)

    client.set_model_version_tag(MODEL, v2, Tag.CLASSES, '{"classes": [0], "positive": 0}')
    canary = CanaryStepOperator(task_id="canary", config_path=str(config), version=v2, champion=v1, percent=25)

    with pytest.raises(DataError, match=rf"{MODEL} v{v2}: mlops\.classes"):
        canary.execute(context())

    state = target.state(MODEL)
    assert (state.champion, state.canary) == (v1, None)
