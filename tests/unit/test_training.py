"""Training: the pipeline a config builds, the deterministic split, reproducible fits and the metrics.

Reproducibility requirement: the same data, config and seed give identical metrics and identical
held-out scores. Small generated frames keep every fit well under a second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from airflow_mlops.config.loader import load_config
from airflow_mlops.config.schema import ModelConfig
from airflow_mlops.examples.fraud import generate_transactions
from airflow_mlops.exceptions import ConfigError, DataError
from airflow_mlops.training.estimator import build_pipeline, resolve_estimator_class
from airflow_mlops.training.metrics import compute_metric, compute_metrics, higher_is_better
from airflow_mlops.training.trainer import check_columns, fit_and_evaluate, predict_scores, split_data

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "configs"
ALLOWLIST_ENV = "AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST"


@pytest.fixture(autouse=True)
def _default_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOWLIST_ENV, raising=False)


@pytest.fixture(scope="module")
def fraud_config() -> ModelConfig:
    return load_config(EXAMPLES / "fraud.yaml").config


@pytest.fixture(scope="module")
def fraud_frame() -> pd.DataFrame:
    return generate_transactions(2000, seed=3)


def with_estimator(config: ModelConfig, **changes: Any) -> ModelConfig:
    """A copy of ``config`` with estimator fields replaced, re-validated like a loaded file."""
    raw = config.model_dump(by_alias=True)
    raw["estimator"].update(changes)
    return ModelConfig.model_validate(raw)


def with_evaluation(config: ModelConfig, **changes: Any) -> ModelConfig:
    raw = config.model_dump(by_alias=True)
    raw["evaluation"].update(changes)
    return ModelConfig.model_validate(raw)


# --- build_pipeline ----------------------------------------------------------------------------------------


def test_pipeline_shape_follows_the_config(fraud_config: ModelConfig) -> None:
    pipe = build_pipeline(fraud_config)
    assert list(pipe.named_steps) == ["preprocess", "estimator"]
    transformers = [(name, cols) for name, _, cols in pipe.named_steps["preprocess"].transformers]
    assert transformers == [
        ("numeric", ["amount", "hour", "distance_from_home_km", "txn_count_24h", "account_age_days", "card_present"]),
        ("categorical", ["merchant_category"]),
    ]
    params = pipe.named_steps["estimator"].get_params()
    assert type(pipe.named_steps["estimator"]).__name__ == "LogisticRegression"
    assert (params["C"], params["class_weight"], params["max_iter"]) == (1.0, "balanced", 1000)


@pytest.mark.parametrize(
    ("cls", "params", "expected_random_state"),
    [
        pytest.param("sklearn.linear_model.LogisticRegression", {}, 11, id="seed-becomes-random-state"),
        pytest.param("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 3}, 11, id="forest"),
        pytest.param("sklearn.linear_model.LogisticRegression", {"random_state": 5}, 5, id="explicit-param-wins"),
    ],
)
def test_build_pipeline_seeds_the_estimator(
    fraud_config: ModelConfig, cls: str, params: dict[str, Any], expected_random_state: int
) -> None:
    config = with_estimator(fraud_config, **{"class": cls, "params": params, "seed": 11})
    assert build_pipeline(config).named_steps["estimator"].get_params()["random_state"] == expected_random_state


def test_build_pipeline_without_random_state_param(fraud_config: ModelConfig) -> None:
    config = with_estimator(fraud_config, **{"class": "sklearn.neighbors.KNeighborsClassifier", "params": {}})
    estimator = build_pipeline(config).named_steps["estimator"]
    assert "random_state" not in estimator.get_params()


def test_build_pipeline_regression_example_is_seeded() -> None:
    config = load_config(EXAMPLES / "diabetes.yaml").config
    estimator = build_pipeline(config).named_steps["estimator"]
    assert (type(estimator).__name__, estimator.alpha, estimator.random_state) == ("Ridge", 1.0, 7)


def test_build_pipeline_rejects_unknown_params(fraud_config: ModelConfig) -> None:
    config = with_estimator(fraud_config, params={"C": 1.0, "bogus": 3})
    with pytest.raises(ConfigError) as e:
        build_pipeline(config)
    assert str(e.value) == (
        "estimator.params: got {'C': 1.0, 'bogus': 3}; LogisticRegression rejected them: "
        "LogisticRegression.__init__() got an unexpected keyword argument 'bogus'"
    )


def test_build_pipeline_rejects_invalid_param_values(fraud_config: ModelConfig) -> None:
    with pytest.raises(ConfigError, match=r"^estimator\.params: got \{'C': -1\.0\}; "):
        build_pipeline(with_estimator(fraud_config, params={"C": -1.0}))


def test_build_pipeline_rechecks_allow_list(fraud_config: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The allow-list is enforced again at build time, not only when the config was validated."""
    monkeypatch.setenv(ALLOWLIST_ENV, "collections.")
    config = with_estimator(fraud_config, **{"class": "collections.OrderedDict", "params": {}})
    monkeypatch.delenv(ALLOWLIST_ENV)
    with pytest.raises(ConfigError) as e:
        build_pipeline(config)
    assert str(e.value) == "estimator.class: got 'collections.OrderedDict'; expected a class under ['sklearn.']"


@pytest.mark.parametrize(
    ("dotted", "message"),
    [
        pytest.param(
            "sklearn.linear_model.NoSuchModel",
            "estimator.class: got 'sklearn.linear_model.NoSuchModel'; "
            "no such class (module 'sklearn.linear_model' has no attribute 'NoSuchModel')",
            id="no-such-attribute",
        ),
        pytest.param(
            "sklearn.nosuch.Model",
            "estimator.class: got 'sklearn.nosuch.Model'; no such class (No module named 'sklearn.nosuch')",
            id="no-such-module",
        ),
        pytest.param(
            "sklearn.utils.Bunch",
            "estimator.class: got 'sklearn.utils.Bunch'; expected an estimator class with fit()",
            id="class-without-fit",
        ),
        pytest.param(
            "sklearn.__version__",
            "estimator.class: got 'sklearn.__version__'; expected an estimator class with fit()",
            id="not-a-class",
        ),
        pytest.param(
            "os.system",
            "estimator.class: got 'os.system'; expected a class under ['sklearn.']",
            id="outside-allow-list",
        ),
    ],
)
def test_resolve_estimator_class_errors(dotted: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        resolve_estimator_class(dotted)
    assert str(e.value) == message


def test_resolve_estimator_class_ok() -> None:
    from sklearn.linear_model import Ridge

    assert resolve_estimator_class("sklearn.linear_model.Ridge") is Ridge


# --- check_columns / split_data ----------------------------------------------------------------------------


def test_check_columns_names_missing_columns(fraud_config: ModelConfig) -> None:
    frame = pd.DataFrame({"amount": [1.0], "hour": [2], "extra": ["x"]})
    with pytest.raises(DataError) as e:
        check_columns(frame, fraud_config)
    assert str(e.value) == (
        "data is missing columns ['distance_from_home_km', 'txn_count_24h', 'account_age_days', 'card_present', "
        "'merchant_category', 'is_fraud'] named in the config; it has 3 columns: ['amount', 'hour', 'extra']"
    )


def test_an_unexpected_files_header_is_not_echoed_whole(fraud_config: ModelConfig) -> None:
    """A file that is not the model's data (one header line of secrets, or thousands of columns) stays bounded."""
    frame = pd.DataFrame(columns=["root:x:0:0:root:/root:/bin/bash" * 3, *(f"c{i}" for i in range(30))])
    with pytest.raises(DataError) as e:
        check_columns(frame, fraud_config)
    assert "/bin/bashroot:x:0:0:root:/root:/bin/bashroot" not in str(e.value)
    assert str(e.value).endswith("'c18', '... 11 more']") and "it has 31 columns" in str(e.value)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param(
            [0.0, math.nan, 1.0, 1.0],
            "target 'is_fraud': 1 rows have no label; a classifier learns from labelled rows only",
            id="missing-label",
        ),
        pytest.param(
            [0, "yes", 1, "no"],
            "target 'is_fraud': expected labels of one kind (strings, numbers or booleans); got ['number', 'string']",
            id="mixed-kinds",
        ),
    ],
)
def test_classification_target_is_labelled_with_one_kind(
    fraud_config: ModelConfig, fraud_frame: pd.DataFrame, target: list[Any], message: str
) -> None:
    frame = fraud_frame.head(4).assign(is_fraud=target)
    with pytest.raises(DataError) as e:
        check_columns(frame, fraud_config)
    assert str(e.value) == message


@pytest.mark.parametrize(
    "target",
    [[0, 1, 2, 1], ["no", "yes", "no", "yes"], [True, False, True, True], [0.0, 0.5, 1.0, 1.0]],
    ids=["three-classes", "strings", "booleans", "fractions"],
)
def test_classification_target_of_any_classes_is_accepted(
    fraud_config: ModelConfig, fraud_frame: pd.DataFrame, target: list[Any]
) -> None:
    check_columns(fraud_frame.head(4).assign(is_fraud=target), fraud_config)


def test_split_data_checks_columns_first(fraud_config: ModelConfig, fraud_frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"^data is missing columns \['amount'\] named in the config"):
        split_data(fraud_frame.drop(columns=["amount"]), fraud_config)


def test_split_data_is_deterministic_per_seed(fraud_config: ModelConfig, fraud_frame: pd.DataFrame) -> None:
    first = split_data(fraud_frame, fraud_config)
    again = split_data(fraud_frame.copy(), fraud_config)
    other = split_data(fraud_frame, with_estimator(fraud_config, seed=43))

    pd.testing.assert_frame_equal(first.x_test, again.x_test)
    pd.testing.assert_series_equal(first.y_train, again.y_train)
    assert not first.x_test.index.equals(other.x_test.index)
    assert sorted(first.x_test.index) != sorted(other.x_test.index)


def test_split_data_sizes_stratification_and_dtypes(fraud_config: ModelConfig, fraud_frame: pd.DataFrame) -> None:
    split = split_data(fraud_frame, fraud_config)

    assert (len(split.x_train), len(split.x_test)) == (1500, 500)
    assert set(split.x_train.index).isdisjoint(split.x_test.index)
    assert list(split.x_test.columns) == fraud_config.features.all
    assert "is_fraud" not in split.x_train.columns
    # numerics become float64 (the logged signature then accepts NaN); categoricals are untouched
    assert {str(split.x_train[c].dtype) for c in fraud_config.features.numeric} == {"float64"}
    assert split.x_train["merchant_category"].dtype == object
    # stratified: positives split in the same proportion as the whole frame (to one row)
    positives = int(fraud_frame["is_fraud"].sum())
    assert abs(int(split.y_test.sum()) - positives * 0.25) <= 1


def test_split_data_regression_is_not_stratified() -> None:
    from airflow_mlops.examples.datasets import diabetes_frame

    config = load_config(EXAMPLES / "diabetes.yaml").config
    split = split_data(diabetes_frame(), config)  # stratify on a continuous target would raise
    assert (len(split.x_train), len(split.x_test)) == (331, 111)


# --- fit_and_evaluate: the reproducibility requirement ---------------------------------------------------


@pytest.fixture(scope="module")
def forest_config(fraud_config: ModelConfig) -> ModelConfig:
    """A randomised estimator, so that identical results prove the seed reaches it."""
    return with_estimator(
        fraud_config, **{"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 15}}
    )


@pytest.mark.parametrize("which", ["logistic", "forest"])
def test_fit_and_evaluate_is_reproducible(
    which: str, fraud_config: ModelConfig, forest_config: ModelConfig, fraud_frame: pd.DataFrame
) -> None:
    config = fraud_config if which == "logistic" else forest_config
    first = fit_and_evaluate(fraud_frame, config)
    second = fit_and_evaluate(fraud_frame.copy(), config)

    assert first.metrics == second.metrics
    assert list(first.metrics) == ["roc_auc", "recall", "precision", "f1", "accuracy"]
    assert np.array_equal(first.scores, second.scores)
    assert first.split.x_test.index.equals(second.split.x_test.index)
    assert len(first.scores) == len(first.split.y_test) == 500
    # the stored scores are the returned model's held-out probabilities, and the metrics come from them
    assert np.array_equal(first.model.predict_proba(first.split.x_test)[:, 1], first.scores)
    assert first.metrics["roc_auc"] == skm.roc_auc_score(first.split.y_test, first.scores)


def test_fit_and_evaluate_depends_on_the_seed(forest_config: ModelConfig, fraud_frame: pd.DataFrame) -> None:
    a = fit_and_evaluate(fraud_frame, forest_config)
    b = fit_and_evaluate(fraud_frame, with_estimator(forest_config, seed=43))
    assert not np.array_equal(a.scores, b.scores)


def test_fit_and_evaluate_regression_reproducible() -> None:
    from airflow_mlops.examples.datasets import diabetes_frame

    config = load_config(EXAMPLES / "diabetes.yaml").config
    frame = diabetes_frame()
    first, second = fit_and_evaluate(frame, config), fit_and_evaluate(frame, config)
    assert list(first.metrics) == ["rmse", "mae", "r2"]
    assert first.metrics == second.metrics
    assert np.array_equal(first.scores, second.scores)
    assert first.scores.dtype == np.float64


def test_predict_scores_shapes() -> None:
    class Model:
        classes_ = np.array([0, 1])

        def predict_proba(self, x: Any) -> list[list[float]]:
            return [[0.9, 0.1], [0.2, 0.8]]

        def predict(self, x: Any) -> list[int]:
            return [0, 1]

    scores, labels = predict_scores(Model(), pd.DataFrame({"a": [1, 2]}), "classification")
    assert scores.tolist() == [0.1, 0.8]
    assert labels is not None and labels.tolist() == [0, 1]
    scores, labels = predict_scores(Model(), pd.DataFrame({"a": [1, 2]}), "regression")
    assert (scores.tolist(), labels, scores.dtype) == ([0.0, 1.0], None, np.float64)


# --- compute_metric ----------------------------------------------------------------------------------------

Y_CLS = np.array([0, 0, 1, 1])
S_CLS = np.array([0.1, 0.4, 0.35, 0.8])  # labels from >= 0.5: [0, 0, 0, 1]
Y_REG = np.array([3.0, -0.5, 2.0, 7.0])
P_REG = np.array([2.5, 0.0, 2.0, 8.0])


@pytest.mark.parametrize(
    ("metric", "y", "scores", "expected", "reference"),
    [
        pytest.param("roc_auc", Y_CLS, S_CLS, 0.75, skm.roc_auc_score(Y_CLS, S_CLS), id="roc_auc"),
        pytest.param("accuracy", Y_CLS, S_CLS, 0.75, skm.accuracy_score(Y_CLS, [0, 0, 0, 1]), id="accuracy"),
        pytest.param("precision", Y_CLS, S_CLS, 1.0, skm.precision_score(Y_CLS, [0, 0, 0, 1]), id="precision"),
        pytest.param("recall", Y_CLS, S_CLS, 0.5, skm.recall_score(Y_CLS, [0, 0, 0, 1]), id="recall"),
        pytest.param("f1", Y_CLS, S_CLS, 2 / 3, skm.f1_score(Y_CLS, [0, 0, 0, 1]), id="f1"),
        pytest.param(
            "log_loss",
            Y_CLS,
            S_CLS,
            -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4,
            skm.log_loss(Y_CLS, S_CLS),
            id="log_loss",
        ),
        pytest.param(
            "rmse", Y_REG, P_REG, math.sqrt(0.375), math.sqrt(skm.mean_squared_error(Y_REG, P_REG)), id="rmse"
        ),
        pytest.param("mae", Y_REG, P_REG, 0.5, skm.mean_absolute_error(Y_REG, P_REG), id="mae"),
        pytest.param("r2", Y_REG, P_REG, 1 - 1.5 / 29.1875, skm.r2_score(Y_REG, P_REG), id="r2"),
    ],
)
def test_compute_metric_known_values(
    metric: str, y: np.ndarray, scores: np.ndarray, expected: float, reference: float
) -> None:
    value = compute_metric(metric, y, scores)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-12)
    assert value == pytest.approx(reference, rel=1e-12)


def test_compute_metric_uses_given_labels_over_scores() -> None:
    labels = np.array([1, 1, 1, 1])
    assert compute_metric("accuracy", Y_CLS, S_CLS, labels) == 0.5
    assert compute_metric("precision", Y_CLS, S_CLS, labels) == 0.5
    assert compute_metric("recall", Y_CLS, S_CLS, labels) == 1.0
    # roc_auc always ranks the scores, whatever the labels
    assert compute_metric("roc_auc", Y_CLS, S_CLS, labels) == 0.75


def test_compute_metric_no_positive_predictions_is_zero_not_a_warning() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    assert compute_metric("precision", Y_CLS, scores) == 0.0
    assert compute_metric("f1", Y_CLS, scores) == 0.0


def test_compute_metric_accepts_series_and_lists() -> None:
    assert compute_metric("accuracy", pd.Series([0, 1]), np.array([0.2, 0.7])) == 1.0
    assert compute_metric("mae", [1.0, 2.0], np.array([2.0, 2.0])) == 0.5


def test_log_loss_is_finite_for_confident_mistakes_and_single_class_rows() -> None:
    value = compute_metric("log_loss", np.array([0, 1]), np.array([1.0, 0.0]))
    assert math.isfinite(value)
    assert 30 < value < 40  # about -log(1e-15): clipped, not infinite
    assert compute_metric("log_loss", np.array([1, 1]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))


def test_roc_auc_single_class_is_undefined() -> None:
    with pytest.raises(ValueError) as e:
        compute_metric("roc_auc", np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]))
    assert str(e.value) == "roc_auc is undefined when the rows hold a single class"


def test_unknown_metric() -> None:
    with pytest.raises(ValueError) as e:
        compute_metric("auc", Y_CLS, S_CLS)
    assert str(e.value) == "unknown metric 'auc'"


def test_compute_metrics_keeps_order() -> None:
    assert compute_metrics(["mae", "rmse"], Y_REG, P_REG) == {"mae": 0.5, "rmse": math.sqrt(0.375)}
    assert list(compute_metrics(["recall", "accuracy"], Y_CLS, S_CLS)) == ["recall", "accuracy"]


@pytest.mark.parametrize(
    ("metric", "higher"),
    [
        ("roc_auc", True),
        ("accuracy", True),
        ("f1", True),
        ("precision", True),
        ("recall", True),
        ("r2", True),
        ("log_loss", False),
        ("rmse", False),
        ("mae", False),
    ],
)
def test_higher_is_better(metric: str, higher: bool) -> None:
    assert higher_is_better(metric) is higher


def test_with_evaluation_helper_revalidates(fraud_config: ModelConfig) -> None:
    """Guard for the helpers above: copies go through the schema, so a bad change cannot slip in."""
    with pytest.raises(ValueError, match=r"evaluation\.metrics"):
        with_evaluation(fraud_config, metrics=["rmse"])
