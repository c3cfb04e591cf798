"""``training.entrypoint``: a user's own training function instead of ``estimator.class`` (issue 13)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

import byo_training
from airflow_mlops.config.schema import ModelConfig
from airflow_mlops.exceptions import ConfigError, DataError
from airflow_mlops.training.trainer import fit_and_evaluate

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def allow_byo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST", "byo_training")


def iris_frame() -> pd.DataFrame:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=FEATURES)
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[data.target]
    frame["size"] = np.where(frame["sepal_length"] > 5.8, "big", "small")
    return frame


def config(entrypoint: str = "byo_training:fit_boosted", **overrides: Any) -> ModelConfig:
    raw: dict[str, Any] = {
        "name": "iris",
        "task": "classification",
        "data": {"uri": "iris.csv"},
        "target": "species",
        "features": {"numeric": FEATURES, "categorical": ["size"]},
        "training": {"entrypoint": entrypoint},
        "estimator": {"params": {"max_iter": 50}, "seed": 7},
        "evaluation": {"metrics": ["f1_macro", "accuracy"]},
    }
    return ModelConfig.model_validate({**raw, **overrides})


def test_the_function_trains_on_the_training_rows_only(allow_byo: None) -> None:
    byo_training.CALLS.clear()
    outcome = fit_and_evaluate(iris_frame(), config())

    assert byo_training.CALLS == [(len(outcome.split.x_train), [*FEATURES, "size", "species"], "iris")]
    final = outcome.model.steps[-1][1]
    assert type(final).__name__ == "HistGradientBoostingClassifier"
    assert (final.max_iter, final.random_state) == (50, 7)  # estimator.params and seed are the function's to use
    assert outcome.classes is not None and outcome.classes.classes == ("setosa", "versicolor", "virginica")
    assert outcome.metrics["accuracy"] > 0.85
    assert config().trainer == "entrypoint:byo_training:fit_boosted"


@pytest.mark.parametrize(
    ("entrypoint", "error", "message"),
    [
        pytest.param(
            "byo_training:fit_without_proba",
            DataError,
            "training.entrypoint 'byo_training:fit_without_proba': returned LinearSVC, which lacks ['predict_proba']; "
            "expected a fitted scikit-learn-compatible classifier",
            id="no-predict-proba",
        ),
        pytest.param(
            "byo_training:not_a_model",
            DataError,
            "training.entrypoint 'byo_training:not_a_model': returned str, which lacks ['predict', 'predict_proba', "
            "'classes_']; expected a fitted scikit-learn-compatible classifier",
            id="not-a-model",
        ),
        pytest.param(
            "byo_training:missing",
            ConfigError,
            "training.entrypoint: got 'byo_training:missing'; no such function "
            "(module 'byo_training' has no attribute 'missing')",
            id="no-such-function",
        ),
    ],
)
def test_what_the_function_returns_is_checked(
    allow_byo: None, entrypoint: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as e:
        fit_and_evaluate(iris_frame(), config(entrypoint))
    assert str(e.value) == message


@pytest.mark.parametrize(
    "entrypoint",
    ["byo_training:fit_boosted", "os:system", "byo_training_evil:fit", "byo_training.fit_boosted", "x:y:z"],
)
def test_an_entrypoint_must_be_allow_listed(entrypoint: str) -> None:
    with pytest.raises(
        ValueError, match=r"training.entrypoint\n.*expected package.module:function under the allow-list"
    ):
        config(entrypoint)


def test_an_allow_listed_prefix_does_not_allow_a_longer_module_name(allow_byo: None) -> None:
    with pytest.raises(ValueError, match=r"expected package.module:function under the allow-list"):
        config("byo_training_evil:fit")


def test_exactly_one_way_to_train(allow_byo: None) -> None:
    with pytest.raises(
        ValueError, match=r"training.entrypoint: got 'byo_training:fit_boosted' next to estimator.class"
    ):
        config(estimator={"class": "sklearn.linear_model.LogisticRegression"})
    with pytest.raises(ValueError, match=r"estimator.class: missing; expected an allow-listed estimator class"):
        config(training=None, estimator={"seed": 1})
