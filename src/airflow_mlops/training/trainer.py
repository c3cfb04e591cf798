"""Fit the configured pipeline on a deterministic split and log everything to one MLflow run.

The split depends only on the data, ``evaluation`` (``split``, ``test_size``, ``time_column``,
``group_column``) and ``estimator.seed``, so gates can rebuild exactly the held-out rows training used,
and two trainings with the same data, config and seed give identical metrics and predictions.
"""

from __future__ import annotations

import json
import logging
import platform
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import ModelConfig
from airflow_mlops.exceptions import DataError
from airflow_mlops.training.classes import ClassSet, plain_label
from airflow_mlops.training.estimator import build_pipeline, fit_with_entrypoint
from airflow_mlops.training.metrics import compute_metrics
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
PREDICTIONS_ARTIFACT = "evaluation/holdout_predictions.csv"


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    #: How the rows were split, for lineage (MLflow params ``split.*``).
    lineage: dict[str, str] = field(default_factory=dict)
    #: The held-out rows' ``data.audit_columns`` (not features: the model never sees them), for slice gates.
    audit_test: pd.DataFrame | None = None


@dataclass(frozen=True)
class TrainOutcome:
    #: The fitted model: our pipeline, or what ``training.entrypoint`` returned.
    model: Any
    split: Split
    metrics: dict[str, float]
    #: Held-out scores: see :func:`predict_scores`.
    scores: np.ndarray
    #: The classes the classifier learned (``None`` for a regressor).
    classes: ClassSet | None = None
    labels: np.ndarray | None = None


def check_columns(df: pd.DataFrame, config: ModelConfig) -> None:
    """Fail with the missing column names before sklearn fails with a less helpful message."""
    split_columns = [c for c in (config.evaluation.time_column, config.evaluation.group_column) if c]
    named = [*config.features.all, config.target, *split_columns, *config.data.audit_columns]
    missing = [c for c in named if c not in df.columns]
    if missing:
        raise DataError(
            f"data is missing columns {missing} named in the config; it has {len(df.columns)} columns: "
            f"{_shown_columns(df.columns)}"
        )
    if config.task == "classification":
        check_labels(df[config.target], config.target)


def check_labels(target: pd.Series, name: str) -> None:
    """A classification target: no missing labels, and all of one kind (strings, numbers or booleans)."""
    missing = int(target.isna().sum())
    if missing:
        raise DataError(f"target {name!r}: {missing} rows have no label; a classifier learns from labelled rows only")
    kinds = {_label_kind(v) for v in map(plain_label, target.unique())}
    if len(kinds) > 1 or kinds - {"boolean", "string", "number"}:
        raise DataError(
            f"target {name!r}: expected labels of one kind (strings, numbers or booleans); got {sorted(kinds)}"
        )


def _label_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _shown_columns(columns: Any, limit: int = 20, width: int = 40) -> list[str]:
    """Column names for an error message, bounded: an unexpected file's header is not echoed whole."""
    shown = [name if len(name) <= width else name[: width - 1] + "…" for name in map(str, list(columns)[:limit])]
    return shown + ([f"... {len(columns) - limit} more"] if len(columns) > limit else [])


def split_data(df: pd.DataFrame, config: ModelConfig) -> Split:
    """The train and held-out rows ``evaluation.split`` chooses (``EvaluationConfig`` says how)."""
    check_columns(df, config)
    x = df[config.features.all].copy()
    # numerics as float64: the logged signature then accepts missing values (NaN) at serving time
    x[config.features.numeric] = x[config.features.numeric].astype("float64")
    y = df[config.target]
    train, test, lineage = _held_out(df, config)
    audit = df[config.data.audit_columns].iloc[test] if config.data.audit_columns else None
    return Split(x.iloc[train], x.iloc[test], y.iloc[train], y.iloc[test], lineage, audit)


def _held_out(df: pd.DataFrame, config: ModelConfig) -> tuple[Any, Any, dict[str, str]]:
    """Positions of the training and held-out rows, and the split's lineage.

    Without groups, random and stratified splits are ``train_test_split``'s (in its shuffled order), as they
    always were, so versions trained before ``evaluation.split`` existed split the same rows the same way.
    """
    import numpy as np

    evaluation, seed, kind = config.evaluation, config.estimator.seed, config.split
    lineage = {"split": kind, "split.test_size": str(evaluation.test_size)}
    positions = np.arange(len(df))
    groups = None
    if evaluation.group_column:
        lineage["split.group_column"] = evaluation.group_column
        groups = df[evaluation.group_column]
        if groups.isna().any():
            raise DataError(f"evaluation.group_column {evaluation.group_column!r}: has missing values")
    if kind == "time":
        mask, cutoff = _time_mask(df, evaluation.time_column or "", evaluation.test_size, groups)
        lineage.update({"split.time_column": evaluation.time_column or "", "split.test_from": cutoff})
        return positions[~mask], positions[mask], lineage
    y = df[config.target]
    try:
        if groups is None:
            from sklearn.model_selection import train_test_split

            stratify = y if kind == "stratified" else None
            train, test = train_test_split(
                positions, test_size=evaluation.test_size, random_state=seed, stratify=stratify
            )
        elif kind == "stratified":
            from sklearn.model_selection import StratifiedGroupKFold

            folds = max(2, round(1 / evaluation.test_size))
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            train, test = next(splitter.split(positions, y, groups))
            lineage["split.folds"] = str(folds)
        else:
            from sklearn.model_selection import GroupShuffleSplit

            splitter_ = GroupShuffleSplit(n_splits=1, test_size=evaluation.test_size, random_state=seed)
            train, test = next(splitter_.split(positions, y, groups))
    except ValueError as exc:  # too few rows, classes or groups for this split
        raise DataError(f"evaluation.split {kind!r}: cannot split {len(df)} rows: {exc}") from exc
    return train, test, lineage


def _time_mask(df: pd.DataFrame, column: str, test_size: float, groups: Any) -> tuple[Any, str]:
    """Hold out the most recent rows: every row at or after the cutoff, where the newest ``test_size`` share
    begins, so no training row is later than a held-out one. With groups, a group goes where its newest row
    falls. Returns the mask and the cutoff (as text, for lineage)."""
    import math

    import numpy as np
    import pandas as pd

    raw = df[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        times = raw.astype("float64")
    else:
        try:
            times = pd.to_datetime(raw, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataError(f"evaluation.time_column {column!r}: expected numbers or timestamps; {exc}") from exc
    if times.isna().any():
        raise DataError(
            f"evaluation.time_column {column!r}: has {int(times.isna().sum())} missing or unparsable values"
        )
    if groups is not None:
        times = times.groupby(groups.to_numpy()).transform("max")
    ordered = np.sort(times.to_numpy())
    n_test = max(1, math.ceil(test_size * len(ordered)))
    cutoff = ordered[len(ordered) - n_test]
    mask = (times >= cutoff).to_numpy()
    if mask.all():
        raise DataError(
            f"evaluation.time_column {column!r}: the newest {test_size:.0%} of the rows start at its earliest value "
            f"({cutoff}); nothing is older to train on"
        )
    return mask, str(pd.Timestamp(cutoff).isoformat() if not isinstance(cutoff, float) else cutoff)


def model_classes(model: Any, config: ModelConfig) -> ClassSet:
    """The classes a fitted classifier answers, with the config's positive class."""
    return ClassSet.learned(model.classes_, config.positive_class)


def predict_scores(
    model: Any, x: pd.DataFrame, task: str, classes: ClassSet | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Classification: the positive class's probability (two classes) or the probability matrix in class order
    (more), and the hard labels; regression: the predictions and ``None``. ``classes`` defaults to the model's
    own with the second one positive."""
    import numpy as np

    if task == "classification":
        classes = classes or ClassSet.learned(model.classes_)
        proba = np.asarray(model.predict_proba(x))
        return (proba[:, classes.positive_index] if classes.binary else proba), np.asarray(model.predict(x))
    return np.asarray(model.predict(x), dtype=float), None


def metric_uses(config: ModelConfig) -> list[tuple[str, str]]:
    """Every metric the config names, with where it names it (for errors)."""
    gates = config.gates
    used = [("evaluation.metrics" if config.evaluation.metrics else "the default metrics", m) for m in config.metrics]
    used += [(f"gates.thresholds[{i}].metric", t.metric) for i, t in enumerate(gates.thresholds)]
    used += [(f"gates.slices[{i}].metric", s.metric) for i, s in enumerate(gates.slices)]
    if gates.champion:
        used.append(("gates.champion.metric", gates.champion.metric))
    if config.evaluation.primary_metric:
        used.append(("evaluation.primary_metric", config.evaluation.primary_metric))
    return used


def check_metrics(config: ModelConfig, classes: ClassSet) -> None:
    """Refuse a metric that cannot score these classes (``f1`` for three classes) before anything is logged."""
    from airflow_mlops.training.metrics import metric_problem

    for where, metric in metric_uses(config):
        problem = metric_problem(metric, classes)
        if problem:
            raise DataError(f"{where}: {problem}")


def fit_and_evaluate(df: pd.DataFrame, config: ModelConfig) -> TrainOutcome:
    split = split_data(df, config)
    model = build_pipeline(config) if config.training is None else None  # a bad estimator fails before the fit
    classes = None
    if config.task == "classification":
        # fail on the labels before paying for the fit
        classes = ClassSet.learned(sorted(map(plain_label, split.y_train.unique())), config.positive_class)
        check_metrics(config, classes)
        unseen = [c for c in map(plain_label, split.y_test.unique()) if classes.find(c) is None]
        if unseen:
            raise DataError(
                f"target {config.target!r}: the held-out rows hold classes {sorted(map(str, unseen))[:20]} that no "
                f"training row has (evaluation.split {config.split!r}); a model cannot be evaluated on classes it "
                "never learned"
            )
    if model is None:
        model = fit_with_entrypoint(config, split.x_train, split.y_train)
    else:
        model.fit(split.x_train, split.y_train)
    if classes is not None:
        classes = model_classes(model, config)
    scores, labels = predict_scores(model, split.x_test, config.task, classes)
    metrics = compute_metrics(config.metrics, split.y_test, scores, labels, classes)
    return TrainOutcome(model=model, split=split, metrics=metrics, scores=scores, classes=classes, labels=labels)


def environment_tags() -> dict[str, str]:
    """Python and key library versions, recorded on every run."""
    import mlflow
    import pandas
    import sklearn

    return {
        Tag.env("python"): platform.python_version(),
        Tag.env("sklearn"): sklearn.__version__,
        Tag.env("pandas"): pandas.__version__,
        Tag.env("mlflow"): mlflow.__version__,
    }


def _trusted_types(model: Pipeline) -> list[str]:
    """Types skops must trust to load our own freshly trained model (we built it, so we trust it)."""
    import warnings

    import skops.io

    with warnings.catch_warnings():  # skops probes modules by name; Airflow's shims warn on each probe
        warnings.simplefilter("ignore")
        return list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def pip_requirements() -> list[str]:
    """Pinned requirements for the logged model (inferring them costs seconds in a subprocess)."""
    import mlflow
    import numpy
    import pandas
    import sklearn
    import skops

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
        f"skops=={skops.__version__}",
    ]


def log_datasets(split: Split, config: ModelConfig, source: str | None) -> None:
    """Record the training and evaluation rows as MLflow dataset inputs of the active run.

    MLflow's own lineage (the run's "Datasets used", schema, digest, source), next to our tags which
    stay the reference (``Tag.DATA_SHA256`` hashes the exact bytes). A source MLflow cannot resolve
    is logged without a source rather than failing the training.
    """
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.exceptions import MlflowException

    for context, features, target in (
        ("training", split.x_train, split.y_train),
        ("evaluation", split.x_test, split.y_test),
    ):
        frame = features.assign(**{config.target: target.to_numpy()})
        name = f"{config.name}-{context}"
        with warnings.catch_warnings():  # schema-inference hints and "source can be read two ways" notes
            warnings.simplefilter("ignore", UserWarning)
            try:
                dataset = from_pandas(frame, source=source, name=name, targets=config.target) if source else None
            except MlflowException as exc:
                log.warning("MLflow cannot resolve dataset source %r (%s); logging %s without it", source, exc, name)
                dataset = None
            if dataset is None:
                dataset = from_pandas(frame, name=name, targets=config.target)
        mlflow.log_input(dataset, context=context)


@dataclass(frozen=True)
class LoggedModelFiles:
    """A model uploaded by :func:`log_model_files`: its URI and id, and the checksum of the folder uploaded."""

    uri: str
    model_id: str
    sha256: str


def log_model_files(
    model: Pipeline,
    run_id: str,
    *,
    tags: dict[str, str],
    metrics: dict[str, float],
    signature: Any,
    input_example: pd.DataFrame,
    metadata: dict[str, Any] | None = None,
) -> LoggedModelFiles:
    """Save ``model`` to a local folder, hash it, then upload exactly that folder as a LoggedModel of ``run_id``.

    ``mlflow.sklearn.log_model`` saves and uploads in one call, so there is no point at which to hash what it
    uploads. These are its steps (MLflow 3's ``Model.log``), with the hash added between saving and uploading:

    1. create a PENDING LoggedModel. Its id and location go into ``MLmodel``, so that file is final before hashing;
    2. ``mlflow.sklearn.save_model`` into a temporary folder, then ``tree_sha256`` of the folder;
    3. ``log_model_artifacts``: a byte copy of every file in the folder to the LoggedModel's artifact location,
       the place a version registered with this ``model_id`` downloads from;
    4. record the run's model output (with the metrics linked to the model), then mark it READY, or FAILED on
       any error.

    Two parts of ``Model.log`` are not copied. Its serving-input check loads the model once more and may add
    ``environment_variables.txt`` and rewrite ``MLmodel`` after saving; the gate loads and scores the model
    anyway. Its Databricks-only ``metadata/`` copy is not needed here.
    """
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    from airflow_mlops.registry.checksum import tree_sha256

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    logged = mlflow.initialize_logged_model(
        name=MODEL_ARTIFACT,
        source_run_id=run_id,
        tags=tags,
        params={key: str(value) for key, value in run.data.params.items()},
        experiment_id=run.info.experiment_id,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
            local = Path(tmp) / MODEL_ARTIFACT
            mlflow.sklearn.save_model(
                model,
                str(local),
                mlflow_model=Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                    metadata=metadata,
                ),
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements(),
                skops_trusted_types=_trusted_types(model),
            )
            sha256 = tree_sha256(local)
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        mlflow.log_metrics(metrics, run_id=run_id, model_id=logged.model_id)
    except Exception:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    log.info("Uploaded model %s (sha256 %s) to %s", logged.model_id, sha256, logged.artifact_location)
    return LoggedModelFiles(uri=f"models:/{logged.model_id}", model_id=logged.model_id, sha256=sha256)


def holdout_predictions(outcome: TrainOutcome) -> pd.DataFrame:
    """The held-out rows' answers, the monitor's reference for prediction drift.

    Columns ``row``, ``y_true`` and ``score`` (positive-class probability, or a regressor's prediction);
    with more than two classes, ``prediction`` and one ``proba:<class>`` column per class instead of ``score``.
    """
    import pandas as pd

    frame = pd.DataFrame({"row": outcome.split.x_test.index, "y_true": outcome.split.y_test.to_numpy()})
    classes = outcome.classes
    if classes is None or classes.binary:
        return frame.assign(score=outcome.scores)
    frame["prediction"] = outcome.labels
    for i, key in enumerate(classes.keys):
        frame[f"proba:{key}"] = outcome.scores[:, i]
    return frame


def log_training(outcome: TrainOutcome, config: ModelConfig, run_id: str, tags: dict[str, str]) -> LoggedModelFiles:
    """Log params, metrics, held-out predictions and the model into ``run_id``; return the uploaded model."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    x_example = outcome.split.x_test.head(5)
    answers = outcome.model.predict(x_example)
    # string labels: a named string column in the signature, not an object tensor
    if getattr(getattr(answers, "dtype", None), "kind", None) == "O":
        answers = pd.Series([str(a) for a in answers], name=config.target, dtype="string")
    signature = infer_signature(x_example, answers)
    if outcome.classes is not None:
        tags = {**tags, Tag.CLASSES: outcome.classes.to_json()}
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params(
            {
                "estimator": config.trainer,
                "seed": config.estimator.seed,
                "test_size": config.evaluation.test_size,
                "n_train": len(outcome.split.x_train),
                "n_test": len(outcome.split.x_test),
                **outcome.split.lineage,
                **({"n_classes": len(outcome.classes.classes)} if outcome.classes else {}),
                **{f"estimator.{k}": v for k, v in sorted(config.estimator.params.items())},
            }
        )
        mlflow.set_tags({**tags, **environment_tags()})
        mlflow.log_text(holdout_predictions(outcome).to_csv(index=False), PREDICTIONS_ARTIFACT)
        log_datasets(outcome.split, config, tags.get(Tag.DATA_URI))
        with warnings.catch_warnings():  # see _trusted_types
            warnings.simplefilter("ignore")
            return log_model_files(
                outcome.model,
                run_id,
                tags=tags,
                metrics=outcome.metrics,
                signature=signature,
                input_example=x_example,
                # the MLmodel file says what the signature's output cannot: which classes the label takes
                metadata={"mlops_classes": json.loads(outcome.classes.to_json())} if outcome.classes else None,
            )
