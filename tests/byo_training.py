"""Training functions a user brings (``training.entrypoint``), for the tests of issue 13.

Importable as ``byo_training`` (``tests`` is on the path); allow-list it with
``AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST=byo_training``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: What each call received: (rows, columns, model name), so tests can see the held-out rows stayed unseen.
CALLS: list[tuple[int, list[str], str]] = []


def fit_boosted(frame: pd.DataFrame, config: Any) -> Any:
    """A pipeline of the user's choosing: one-hot categoricals, raw numerics, gradient boosting."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    CALLS.append((len(frame), list(frame.columns), config.name))
    features = config.features
    preprocess = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(features.categorical)),
            ("numeric", "passthrough", list(features.numeric)),
        ]
    )
    cls = HistGradientBoostingClassifier if config.task == "classification" else HistGradientBoostingRegressor
    model = Pipeline(
        [("preprocess", preprocess), ("model", cls(random_state=config.estimator.seed, **config.estimator.params))]
    )
    return model.fit(frame[features.all], frame[config.target])


def fit_without_proba(frame: pd.DataFrame, config: Any) -> Any:
    """A classifier that cannot say how sure it is (no ``predict_proba``)."""
    from sklearn.svm import LinearSVC

    return LinearSVC().fit(frame[list(config.features.numeric)], frame[config.target])


def not_a_model(frame: pd.DataFrame, config: Any) -> Any:
    return "a model, honestly"
