"""Build the scikit-learn pipeline a config describes: preprocessing + the allow-listed estimator."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import ModelConfig, allow_listed, estimator_prefixes
from airflow_mlops.exceptions import ConfigError

if TYPE_CHECKING:
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


def build_pipeline(config: ModelConfig) -> Pipeline:
    """Impute + scale numerics, impute + one-hot categoricals, then the estimator seeded from config."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cls = resolve_estimator_class(config.estimator.class_)
    params = dict(config.estimator.params)
    try:
        estimator = cls(**params)
        if callable(getattr(estimator, "_validate_params", None)):
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
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("estimator", estimator)])
