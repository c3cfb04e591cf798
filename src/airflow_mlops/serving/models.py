"""Load each model version once, after verifying its artifact checksum, and predict with it.

A version is downloaded from the registry, its artifact tree hashed and compared with the
``mlops.model_sha256`` tag written at registration; only then is it deserialized. With
``[mlops] model_signing_conn_id`` set, its ``mlops.model_hmac`` signature must verify under that
connection's key too (:mod:`airflow_mlops.registry.signing`). Loaded versions are cached by
(model, version) for the life of the gateway.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.monitoring.labels import BINARY_CLASSES
from airflow_mlops.registry.checksum import ModelIntegrityError, download_verified
from airflow_mlops.registry.signing import SigningKeyError
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from airflow_mlops.serving.signature import InputSchema

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """A version could not be served: missing or mismatched checksum or signature, or it failed to load."""


class NotServableError(ModelLoadError):
    """The version may not serve yet: its gate did not pass, it was rejected, or the signing key cannot be read.

    Tags and the key's connection can still change, so the load is retried at the next poll.
    """


@dataclass(frozen=True)
class LoadedModel:
    model: str
    version: str
    estimator: Any
    schema: InputSchema
    #: "classification" answers a label and the positive-class score; "regression" a value.
    task: str
    #: ``predict`` is ``classes_[argmax(predict_proba)]``, so one pass over the pipeline gives both.
    labels_from_proba: bool = True

    @property
    def classes(self) -> tuple[Any, ...]:
        """The labels a classifier answers (``classes_`` as plain JSON values); ``()`` for a regressor."""
        if self.task != "classification":
            return ()
        found = getattr(self.estimator, "classes_", None)
        return tuple(found.tolist()) if found is not None else BINARY_CLASSES

    def predict(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """One output per input row, JSON-ready."""
        if self.task == "classification":
            proba = self.estimator.predict_proba(frame)
            scores = proba[:, 1]
            if self.labels_from_proba:  # one pass over the pipeline, labels derived from it
                labels = self.estimator.classes_[proba.argmax(axis=1)]
            else:
                labels = self.estimator.predict(frame)
            return [
                {"prediction": _plain(label), "score": float(score)}
                for label, score in zip(labels, scores, strict=True)
            ]
        return [{"prediction": float(value)} for value in self.estimator.predict(frame)]


def labels_follow_proba(estimator: Any) -> bool:
    """True unless ``predict`` may disagree with ``argmax(predict_proba)``.

    It may for libsvm's Platt-scaled probabilities (``SVC``/``NuSVC(probability=True)``: labels come from
    the decision function) and for multi-output classifiers (``classes_`` is a list).
    """
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if getattr(getattr(final, "classes_", None), "ndim", None) != 1:
        return False
    params = final.get_params(deep=False) if callable(getattr(final, "get_params", None)) else {}
    return not params.get("probability", False)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def output_json(output: dict[str, Any]) -> str:
    return json.dumps(output, separators=(",", ":"))


class ModelCache:
    """Thread-safe cache of verified, loaded versions."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._failed: dict[tuple[str, str], str] = {}
        self._refused: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, model: str, version: str) -> LoadedModel | None:
        return self._loaded.get((model, version))

    def failure(self, model: str, version: str) -> str | None:
        return self._failed.get((model, version))

    def load(self, model: str, version: str) -> LoadedModel:
        """Verify and load ``model`` v``version`` (once); raises ``ModelLoadError`` with the reason."""
        key = (model, version)
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            if key in self._failed:  # a registered version's artifacts do not change: don't retry every poll
                raise ModelLoadError(self._failed[key])
            try:
                loaded = self._verify_and_load(model, version)
            except NotServableError as exc:  # its tags may change (a gate passes): checked again next poll
                if self._refused.get(key) != str(exc):  # said once, not every poll
                    self._refused[key] = str(exc)
                    log.error("Not serving %s v%s: %s", model, version, exc)
                raise
            except ModelLoadError as exc:  # checksum or signature: permanent for a registered version
                self._failed[key] = str(exc)
                log.error("Not serving %s v%s: %s", model, version, exc)
                raise
            except Exception as exc:  # transient (registry or store unreachable): retried at the next poll
                reason = f"{type(exc).__name__}: {exc}"
                log.error("Could not load %s v%s (will retry): %s", model, version, reason)
                raise ModelLoadError(reason) from exc
            self._loaded[key] = loaded
            self._failed.pop(key, None)
            log.info("Loaded %s v%s", model, version)
            return loaded

    def _verify_and_load(self, model: str, version: str) -> LoadedModel:
        import mlflow

        from airflow_mlops.serving.signature import InputSchema

        tags = self._client.get_model_version(model, version).tags or {}
        if tags.get(Tag.GATE) != "passed":
            raise NotServableError(
                f"{model} v{version}: {Tag.GATE} is {tags.get(Tag.GATE)!r}; only a version whose gate passed is served "
                "(an alias moved outside airflow-mlops does not bypass the gate)"
            )
        if Tag.REJECTED_REASON in tags:
            raise NotServableError(f"{model} v{version} was rejected ({tags[Tag.REJECTED_REASON]!r}); not served")
        with tempfile.TemporaryDirectory(prefix="mlops-serve-") as tmp:
            try:
                local = download_verified(self._client, model, version, tmp)
            except SigningKeyError as exc:  # the key, not the version, is at fault: refused, retried next poll
                raise NotServableError(str(exc)) from exc
            except ModelIntegrityError as exc:  # checksum or signature: permanent for a registered version
                raise ModelLoadError(str(exc)) from exc
            info = mlflow.models.Model.load(local)
            if info.signature is None:
                raise ModelLoadError(f"{model} v{version} has no signature; the gateway cannot check inputs")
            estimator = mlflow.sklearn.load_model(local)
        task = "classification" if hasattr(estimator, "predict_proba") else "regression"
        schema = InputSchema.from_mlflow(info.signature)
        return LoadedModel(model, version, estimator, schema, task, labels_from_proba=labels_follow_proba(estimator))
