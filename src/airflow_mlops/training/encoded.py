"""A classifier from outside scikit-learn, taught class codes and answering in the labels.

XGBoost's classifiers accept only the codes ``0..k-1`` as targets; scikit-learn's own (and LightGBM's)
take any labels. :class:`EncodedLabels` fits the wrapped classifier on the codes of the labels and maps
its answers back, so a config with string or boolean classes works with any allow-listed classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone


class EncodedLabels(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):  # type: ignore[misc]
    """Fit ``estimator`` on ``np.unique`` codes of ``y``; ``classes_`` are the labels, in sorted order."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, x: Any, y: Any, **fit_params: Any) -> EncodedLabels:
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(x, codes, **fit_params)
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        proba = np.asarray(self.estimator_.predict_proba(x))
        if proba.shape[1] != len(self.classes_):
            raise ValueError(f"the wrapped classifier answers {proba.shape[1]} classes, not {len(self.classes_)}")
        return proba

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(x), axis=1)])
