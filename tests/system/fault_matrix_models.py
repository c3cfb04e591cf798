"""A model that trains, passes its gate and then fails every prediction the gateway asks of it.

``CrashingClassifier`` is scikit-learn's ``LogisticRegression`` whose ``predict`` and ``predict_proba``
raise unless the process opted in (``PREDICT_ALLOWED``). The test process that trains it opts in, so
training, evaluation and the gate (which loads the registered model and scores it) see a normal
classifier; a gateway process imports this module fresh, never opts in, and so gets a version whose
every call crashes: the behaviour of a canary broken by its serving environment. It is trained through
the real operators (``estimator.class`` allow-listed with ``AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST``) and
loaded by the gateway through MLflow and skops like any other version; the gateway imports it because
this folder is on its ``PYTHONPATH``.
"""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression

#: Set by the training (test) process only; a gateway process leaves it False.
PREDICT_ALLOWED = False

CRASH_MESSAGE = "CrashingClassifier: this version crashes on every call"


class CrashingClassifier(LogisticRegression):
    def predict_proba(self, X: Any) -> Any:
        if not PREDICT_ALLOWED:
            raise RuntimeError(CRASH_MESSAGE)
        return super().predict_proba(X)

    def predict(self, X: Any) -> Any:
        if not PREDICT_ALLOWED:
            raise RuntimeError(CRASH_MESSAGE)
        return super().predict(X)
