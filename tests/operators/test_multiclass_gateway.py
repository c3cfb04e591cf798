"""The gateway serving a multiclass version (issue 13): iris with string classes, trained, registered and gated by
the real operators, served in-process; answer shape, prediction log, feedback, and a hand-edited classes tag.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from airflow_mlops.vocabulary import Tag
from support import conftest_module, train_version

MODEL = "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.8, "petal_width": 2.2}


@dataclass
class IrisRegistry:
    tracking_uri: str
    client: Any
    version: str


@pytest.fixture(scope="module")
def iris(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IrisRegistry]:
    from sklearn.datasets import load_iris

    from airflow_mlops.deploy.targets import LocalGatewayTarget

    root = tmp_path_factory.mktemp("iris-registry")
    loaded = load_iris(as_frame=True)
    frame = loaded.frame.rename(columns=dict(zip(loaded.feature_names, FEATURES, strict=True)))
    frame["species"] = [str(loaded.target_names[i]) for i in frame.pop("target")]
    frame.to_csv(root / "iris.csv", index=False)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    state_url = f"sqlite:///{root / 'state.db'}"
    conn = {"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(root / "artifacts")}}
    saved = {key: os.environ.get(key) for key in ("AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_MLOPS_STATE_DB")}
    os.environ.update({"AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(conn), "AIRFLOW_MLOPS_STATE_DB": state_url})
    workspace = conftest_module(request.config).Workspace(root=root, tracking_uri=tracking_uri)
    try:
        path = workspace.write_config(
            "fraud",
            replace={
                "name": MODEL,
                "data": {"uri": str(root / "iris.csv"), "format": "csv"},
                "target": "species",
                "features": {"numeric": FEATURES, "categorical": []},
                "expectations": [],
                "evaluation": {"test_size": 0.3, "stratify": True, "metrics": ["f1_macro", "accuracy"]},
                "gates": {"thresholds": [{"metric": "f1_macro", "min": 0.6}]},
            },
        )
        try:
            version = train_version(path, "manual__iris_v1")
        finally:
            path.unlink()
        client = workspace.client()
        LocalGatewayTarget.from_options(client=client, state_url=state_url).rollback(
            MODEL, to_version=version, actor="test", reason="serve iris"
        )
        yield IrisRegistry(tracking_uri, client, version)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def gateway(iris: IrisRegistry, tmp_path: Path) -> Iterator[tuple[Any, TestClient]]:
    from airflow_mlops.serving.app import create_app
    from airflow_mlops.serving.server import ServeOptions, build_gateway

    with ExitStack() as stack:
        served = build_gateway(
            ServeOptions(
                models=[MODEL],
                tracking_uri=iris.tracking_uri,
                log_root=str(tmp_path / "plog"),
                poll_interval=0.2,
                flush_interval=0.2,
                shadow_mode="thread",
            )
        )
        served.start()
        stack.callback(served.stop)
        yield served, stack.enter_context(TestClient(create_app(served)))


def test_a_multiclass_version_answers_its_class_and_every_probability_and_logs_them(
    iris: IrisRegistry, gateway: tuple[Any, TestClient], tmp_path: Path
) -> None:
    from airflow_mlops.prediction_log import LocalStorage, read_feedback, read_predictions

    served, http = gateway
    tags = iris.client.get_model_version(MODEL, iris.version).tags
    assert json.loads(tags[Tag.CLASSES]) == {"classes": ["setosa", "versicolor", "virginica"], "positive": None}

    response = http.post(
        f"/v1/models/{MODEL}/predict", json={"records": [SETOSA, VIRGINICA]}, headers={"X-Request-ID": "r1"}
    )

    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    for answer in (first, second):
        assert set(answer) == {"prediction", "probabilities"}
        assert list(answer["probabilities"]) == ["setosa", "versicolor", "virginica"]
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0)
        assert answer["prediction"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert (first["prediction"], second["prediction"]) == ("setosa", "virginica")

    served.plog.flush()
    rows = read_predictions(LocalStorage(tmp_path / "plog"), MODEL).sort_values("request_id")
    assert list(rows["request_id"]) == ["r1#0", "r1#1"]
    assert [json.loads(text) for text in rows["output"]] == [first, second]

    url = f"/v1/models/{MODEL}/feedback"
    ok = http.post(url, json={"feedback": [{"request_id": "r1#0", "label": "setosa"}]})
    assert (ok.status_code, ok.json()) == (200, {"recorded": 1})
    for junk in ("nope", "Setosa", 0, 1, True, None, ["setosa"]):
        refused = http.post(url, json={"request_id": "r1#1", "label": junk})
        assert refused.status_code == 422, junk
        assert refused.json()["detail"] == [
            {
                "loc": ["feedback", 0, "label"],
                "msg": f"expected one of the model's classes ['setosa', 'versicolor', 'virginica'], got {junk!r}",
            }
        ]
    served.plog.flush()
    labels = read_feedback(LocalStorage(tmp_path / "plog"), MODEL)
    assert [json.loads(x) for x in labels["label"]] == ["setosa"]


@pytest.mark.parametrize(
    "tag",
    [
        '{"classes":["versicolor","setosa","virginica"],"positive":null}',  # reordered: probabilities mislabelled
        '{"classes":["setosa","versicolor"],"positive":"setosa"}',  # a class left out
        '{"classes":["setosa","versicolor","virginica"],"positive":"setosa"}',  # a positive class for three
        '{"classes":["setosa","setosa","virginica"]}',  # repeated
        "not json",
        '{"classes": "setosa"}',
    ],
)
def test_a_classes_tag_edited_by_hand_is_not_served(iris: IrisRegistry, tag: str) -> None:
    from airflow_mlops.serving.models import ModelCache, ModelLoadError, NotServableError

    original = iris.client.get_model_version(MODEL, iris.version).tags[Tag.CLASSES]
    iris.client.set_model_version_tag(MODEL, iris.version, Tag.CLASSES, tag)
    try:
        cache = ModelCache(iris.client)
        with pytest.raises(NotServableError, match=Tag.CLASSES):
            cache.load(MODEL, iris.version)
        iris.client.set_model_version_tag(MODEL, iris.version, Tag.CLASSES, original)
        loaded = cache.load(MODEL, iris.version)  # put right, it serves at the next poll
        assert loaded.classes == ("setosa", "versicolor", "virginica")
    finally:
        iris.client.set_model_version_tag(MODEL, iris.version, Tag.CLASSES, original)
    assert issubclass(NotServableError, ModelLoadError)
