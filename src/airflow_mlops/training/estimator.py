"""Build the scikit-learn pipeline a config describes: preprocessing + the allow-listed estimator."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from airflow_mlops.config.schema import DEFAULT_ESTIMATOR_PREFIXES, ModelConfig, allow_listed, estimator_prefixes
from airflow_mlops.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline


def resolve_estimator_class(dotted: str) -> type[Any]:
    """Import ``dotted`` only if it is under the allow-list (checked again here, not only in the schema)."""
    if not allow_listed(dotted, estimator_prefixes()):
        raise ConfigError(f"estimator.class: got {dotted!r}; expected a class under {list(estimator_prefixes())}")
    module_name, _, class_name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"estimator.class: got {dotted!r}; no such class ({exc})") from exc
    if not isinstance(cls, type) or not hasattr(cls, "fit"):
        raise ConfigError(f"estimator.class: got {dotted!r}; expected an estimator class with fit()")
    return cls


def resolve_entrypoint(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` only if it is under the allow-list (checked again here)."""
    module_name, _, function_name = spec.partition(":")
    if not allow_listed(f"{module_name}.{function_name}", estimator_prefixes()):
        raise ConfigError(f"training.entrypoint: got {spec!r}; expected a function under {list(estimator_prefixes())}")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"training.entrypoint: got {spec!r}; no such function ({exc})") from exc
    if not callable(function) or isinstance(function, type):
        raise ConfigError(f"training.entrypoint: got {spec!r}; expected a function")
    return cast("Callable[..., Any]", function)


def fit_with_entrypoint(config: ModelConfig, x_train: pd.DataFrame, y_train: pd.Series) -> Any:
    """Call the config's training function on a copy of the training rows; check what it returns can serve."""
    assert config.training is not None
    spec = config.training.entrypoint
    function = resolve_entrypoint(spec)
    frame = x_train.assign(**{config.target: y_train.to_numpy()})
    model = function(frame, config)
    needed = ["predict", "predict_proba", "classes_"] if config.task == "classification" else ["predict"]
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise DataError(
            f"training.entrypoint {spec!r}: returned {type(model).__name__}, which lacks {missing}; expected a "
            f"fitted scikit-learn-compatible {'classifier' if config.task == 'classification' else 'regressor'}"
        )
    return model


def build_pipeline(config: ModelConfig) -> Pipeline:
    """Impute + scale numerics, impute + one-hot categoricals, then the estimator seeded from config."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if config.estimator.class_ is None:
        raise ConfigError("estimator.class: not set (the config trains with training.entrypoint)")
    cls = resolve_estimator_class(config.estimator.class_)
    params = dict(config.estimator.params)
    try:
        estimator = cls(**params)
        # sklearn's own estimators declare constraints; others (LightGBM) inherit the method but not them
        if callable(getattr(estimator, "_validate_params", None)) and hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()  # sklearn's own range/type checks, normally deferred to fit()
    except (TypeError, ValueError) as exc:  # InvalidParameterError is both
        raise ConfigError(f"estimator.params: got {params!r}; {cls.__name__} rejected them: {exc}") from exc
    if "random_state" in estimator.get_params() and "random_state" not in params:
        estimator.set_params(random_state=config.estimator.seed)
    transformers: list[tuple[str, Any, list[str]]] = []
    if config.features.numeric:
        numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append(("numeric", numeric, list(config.features.numeric)))
    if config.features.categorical:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown=config.features.unknown_categories, sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, list(config.features.categorical)))
    if config.task == "classification" and not allow_listed(config.estimator.class_, DEFAULT_ESTIMATOR_PREFIXES):
        from airflow_mlops.training.encoded import EncodedLabels

        estimator = EncodedLabels(estimator)  # XGBoost takes only 0..k-1 as classes
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("estimator", estimator)])
