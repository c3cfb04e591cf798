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

from airflow_mlops.exceptions import DataError
from airflow_mlops.registry.checksum import ModelIntegrityError, download_verified
from airflow_mlops.registry.signing import SigningKeyError
from airflow_mlops.training.classes import LEGACY, ClassSet
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
    #: "classification" answers a class and its probabilities (:meth:`ClassSet.answers`); "regression" a value.
    task: str
    #: ``predict`` is ``classes_[argmax(predict_proba)]``, so one pass over the pipeline gives both.
    labels_from_proba: bool = True
    #: A classifier's classes as its version records them (``mlops.classes``), checked against ``classes_`` at
    #: load; ``None``: learned from ``classes_`` (positive = the second class, as before classes were recorded).
    class_set: ClassSet | None = None

    def __post_init__(self) -> None:
        if self.task == "classification" and self.class_set is None:
            object.__setattr__(self, "class_set", estimator_classes(self.estimator))

    @property
    def classes(self) -> tuple[Any, ...]:
        """The labels a classifier answers (``classes_`` as plain JSON values); ``()`` for a regressor."""
        return self.class_set.classes if self.class_set is not None else ()

    def predict(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """One output per input row, JSON-ready: binary ``prediction`` + ``score`` (the positive class's
        probability), more classes ``prediction`` + ``probabilities``, regression ``prediction``."""
        if self.class_set is not None:
            proba = self.estimator.predict_proba(frame)
            if self.labels_from_proba:  # one pass over the pipeline, labels derived from it
                labels = self.estimator.classes_[proba.argmax(axis=1)]
            else:
                labels = self.estimator.predict(frame)
            return self.class_set.answers(labels, proba)
        return [{"prediction": float(value)} for value in self.estimator.predict(frame)]


def estimator_classes(estimator: Any) -> ClassSet:
    """The classes of a classifier whose version records none: its ``classes_``, positive the second class
    (what the gateway answered before classes were recorded); 0/1 when it has no ``classes_``."""
    found = getattr(estimator, "classes_", None)
    return ClassSet.learned(found) if found is not None else LEGACY


def version_classes(tags: dict[str, str], estimator: Any, where: str) -> ClassSet:
    """The classes a classifier version answers: its ``mlops.classes`` tag, which must name exactly the
    estimator's ``classes_`` in their order; without the tag, :func:`estimator_classes`.

    A tag edited by hand would silently change which probability is the ``score`` (or which column is which
    class): it is refused instead (:class:`NotServableError`; served again once the tag is put right).
    """
    try:
        learned = estimator_classes(estimator)
    except DataError as exc:
        raise ModelLoadError(f"{where}: its classes cannot be served: {exc}") from exc
    text = tags.get(Tag.CLASSES)
    if text is None:
        return learned
    try:
        recorded = ClassSet.from_json(text)
    except ValueError as exc:
        raise NotServableError(f"{where}: {Tag.CLASSES}: {exc}") from exc
    if recorded.keys != learned.keys:
        raise NotServableError(
            f"{where}: {Tag.CLASSES} names classes {list(recorded.classes)[:20]}, but the model's classes_ are "
            f"{list(learned.classes)[:20]} (same classes in the same order expected); the tag was changed"
        )
    if any(type(a) is not type(b) for a, b in zip(recorded.classes, learned.classes, strict=True)):
        raise NotServableError(
            f"{where}: {Tag.CLASSES} types the classes as {[type(c).__name__ for c in recorded.classes][:20]}, "
            f"the model's classes_ are {[type(c).__name__ for c in learned.classes][:20]}; the tag was changed"
        )
    if not recorded.binary and recorded.positive is not None:
        raise NotServableError(
            f"{where}: {Tag.CLASSES} names positive class {recorded.positive!r} for {len(recorded.classes)} "
            "classes; only a binary model has one"
        )
    return ClassSet(learned.classes, recorded.positive) if recorded.binary else learned


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
        where = f"{model} v{version}"
        if task == "classification":
            classes: ClassSet | None = version_classes(tags, estimator, where)
        elif Tag.CLASSES in tags:
            raise NotServableError(f"{where} has {Tag.CLASSES} but no predict_proba: it cannot answer classes")
        else:
            classes = None
        schema = InputSchema.from_mlflow(info.signature)
        return LoadedModel(
            model,
            version,
            estimator,
            schema,
            task,
            labels_from_proba=labels_follow_proba(estimator),
            class_set=classes,
        )
