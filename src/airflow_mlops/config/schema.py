"""The per-model config schema (``dags/configs/<model>.yaml``), designed once for every DAG we build.

Pydantic models only: importing this module must stay cheap because DAG files parse it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from airflow_mlops import settings

#: Estimator classes must live under one of these dotted prefixes. Extend with the environment
#: deployment setting ``[mlops] estimator_allowlist`` (comma-separated prefixes), never from a config file.
DEFAULT_ESTIMATOR_PREFIXES: tuple[str, ...] = ("sklearn.",)

#: Classification metrics that score the positive class, so need exactly two classes.
BINARY_METRICS: tuple[str, ...] = ("roc_auc", "f1", "precision", "recall")
#: Every classification metric but the per-class ones (``PER_CLASS_METRIC``). Averaged names say how the
#: classes are combined (``_macro``: unweighted mean; ``_weighted``: by support; ``_micro``: over all rows;
#: ``roc_auc_ovr``/``_ovo``: one-vs-rest / one-vs-one AUC); ``accuracy``, ``balanced_accuracy``, ``log_loss``
#: and the averaged ones work for any number of classes.
CLASSIFICATION_METRICS: tuple[str, ...] = (
    *BINARY_METRICS,
    "accuracy",
    "balanced_accuracy",
    "log_loss",
    *(f"{name}_{avg}" for name in ("f1", "precision", "recall") for avg in ("macro", "weighted", "micro")),
    "roc_auc_ovr",
    "roc_auc_ovr_weighted",
    "roc_auc_ovo",
)
#: One class's precision, recall or F1: ``recall.<class>`` (the class as its label, or its JSON text: ``1``,
#: ``true``), in characters an MLflow metric name may hold.
PER_CLASS_METRIC = re.compile(r"^(precision|recall|f1)\.([\w\-. ]{1,100})$")
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
#: Metrics where smaller is better; every other metric is "higher is better".
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "rmse", "mae"})

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def per_class_metric(metric: str) -> tuple[str, str] | None:
    """``("recall", "setosa")`` for ``recall.setosa``; ``None`` for any other name."""
    match = PER_CLASS_METRIC.match(metric)
    return (match.group(1), match.group(2)) if match else None


def is_classification_metric(metric: str) -> bool:
    return metric in CLASSIFICATION_METRICS or per_class_metric(metric) is not None


def estimator_prefixes() -> tuple[str, ...]:
    """The allow-listed dotted prefixes for ``estimator.class``."""
    return DEFAULT_ESTIMATOR_PREFIXES + settings.estimator_allowlist()


def allow_listed(dotted: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``dotted`` is one of ``prefixes`` or lies under one at a dot boundary.

    A prefix names whole module components: ``xgboost`` and ``xgboost.`` both allow ``xgboost.XGBClassifier``
    but never ``xgboost_evil.X``; a full class path allows exactly that class.
    """
    for prefix in prefixes:
        base = prefix.strip().rstrip(".")
        if base and (dotted == base or dotted.startswith(base + ".")):
            return True
    return False


#: Where data and behaviour cases may be read from: local paths and the object stores we have readers for.
LOCATION_SCHEMES: frozenset[str] = frozenset({"file", "s3", "wasbs", "wasb", "abfs", "abfss"})


def _known_location(value: str) -> str:
    scheme = value.split("://", 1)[0].lower() if "://" in value else "file"
    if scheme not in LOCATION_SCHEMES:
        raise ValueError(
            f"expected a local path or a file://, s3://, wasbs://, wasb://, abfs:// or abfss:// URI "
            f"(scheme {scheme!r} is not supported)"
        )
    return value


#: Estimator parameters that make scikit-learn/joblib write to or read from a path the config chooses
#: (``memory``: a joblib cache folder, whose pickles are loaded back).
FORBIDDEN_ESTIMATOR_PARAMS: frozenset[str] = frozenset({"memory"})


#: The longest duration a config may write (a number beyond it would overflow ``timedelta`` or mean "never").
MAX_DURATION = timedelta(days=36500)


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"7d"`` or a number of seconds -> ``timedelta`` (at most 100 years)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '15m', '2h', '7d' or a number of seconds")
    if isinstance(value, int | float):
        if value != value:  # NaN
            raise ValueError("expected a duration like '30s', '15m', '2h', '7d' or a number of seconds")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        if value > MAX_DURATION.total_seconds():
            raise ValueError(f"a duration can be at most {MAX_DURATION.days} days")
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("expected a duration like '30s', '15m', '2h', '7d' or a number of seconds")
    amount, unit = int(match.group(1)), _DURATION_UNITS[match.group(2)]
    if amount > MAX_DURATION / timedelta(**{unit: 1}):
        raise ValueError(f"a duration can be at most {MAX_DURATION.days} days")
    return timedelta(**{unit: amount})


def _check_duration(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a duration like '30s', '15m', '2h', '7d' or a number of seconds")
    parse_duration(value)
    return value


#: A duration as written in YAML; validated when the config loads, turned into ``timedelta`` on use.
Duration = Annotated[str | int | float, BeforeValidator(_check_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the training data lives and how to reach it."""

    #: Local path (relative paths resolve against the config file's folder), ``s3://bucket/key``,
    #: ``wasbs://container@account.blob.core.windows.net/blob`` or ``abfs[s]://container@account.dfs.../path``.
    uri: str = Field(min_length=1)
    #: Airflow connection id; defaults per scheme (``aws_default`` for s3, ``wasb_default`` for Azure).
    conn_id: str | None = None
    #: File format; inferred from the URI's suffix when omitted.
    format: Literal["csv", "parquet"] | None = None
    #: Columns in the data that are deliberately not features (e.g. a protected attribute): never given to the
    #: model, kept with the held-out rows so ``gates.slices`` can measure per-group metrics and gaps on them.
    audit_columns: list[str] = Field(default_factory=list)

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return _known_location(value)


class FeaturesConfig(_Strict):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    #: A category never seen in training: encode as all-zeros (``ignore``) or fail the prediction (``error``).
    unknown_categories: Literal["ignore", "error"] = "ignore"

    @model_validator(mode="after")
    def _not_empty_no_overlap(self) -> FeaturesConfig:
        if not self.numeric and not self.categorical:
            raise ValueError("expected at least one feature under 'numeric' or 'categorical'")
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"expected each column in one list only; {both} are both numeric and categorical")
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class ExpectationConfig(_Strict):
    """One great-expectations expectation, by its snake_case type name and keyword arguments."""

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: Free text shown next to a failure, to say why the expectation exists.
    notes: str | None = None


class EstimatorConfig(_Strict):
    """The estimator: a dotted class path from the allow-list, its params and the seed.

    With ``training.entrypoint`` there is no ``class``; ``params`` and ``seed`` are the entrypoint's to use.
    """

    class_: str | None = Field(default=None, alias="class", min_length=3)
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("class_")
    @classmethod
    def _allowed(cls, value: str | None) -> str | None:
        if value is None:
            return None
        prefixes = estimator_prefixes()
        if not allow_listed(value, prefixes) or not re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", value):
            raise ValueError(
                f"expected a dotted class path under the allow-list {list(prefixes)} "
                f"(extend it with [mlops] estimator_allowlist or ${settings.OPTIONS['estimator_allowlist'].env})"
            )
        return value

    @field_validator("params")
    @classmethod
    def _no_file_system_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        named = sorted(key for key in value if str(key).rsplit("__", 1)[-1] in FORBIDDEN_ESTIMATOR_PARAMS)
        if any(value[key] not in (None, False) for key in named):
            raise ValueError(
                f"{named} may not be set: joblib caching reads and writes pickles at a path of the config's "
                "choosing (leave it unset)"
            )
        return value


#: ``package.module:function``: a module path, a colon, a function name.
_ENTRYPOINT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


class TrainingConfig(_Strict):
    """Bring your own training code instead of ``estimator.class``."""

    #: ``package.module:function``, under the same allow-list as ``estimator.class`` (extend it with
    #: ``[mlops] estimator_allowlist``). It is called as ``function(frame, config)`` with the training rows
    #: (feature columns and the target; the held-out rows stay unseen) and the ``ModelConfig``, and returns
    #: a fitted scikit-learn-compatible estimator or pipeline that predicts from the feature columns
    #: (classifiers: ``predict_proba`` and ``classes_`` too).
    entrypoint: str

    @field_validator("entrypoint")
    @classmethod
    def _allowed(cls, value: str) -> str:
        prefixes = estimator_prefixes()
        if not _ENTRYPOINT.fullmatch(value) or not allow_listed(value.replace(":", "."), prefixes):
            raise ValueError(
                f"expected package.module:function under the allow-list {list(prefixes)} "
                f"(extend it with [mlops] estimator_allowlist or ${settings.OPTIONS['estimator_allowlist'].env})"
            )
        return value


class EvaluationConfig(_Strict):
    #: Share of the rows held out for evaluation (of the groups, with ``group_column`` and a random split).
    test_size: float = Field(default=0.25, gt=0.0, lt=1.0)
    #: How the held-out rows are chosen: ``random``; ``stratified`` on the target (classification);
    #: ``time``: train on the past, evaluate on the most recent rows by ``time_column``. Unset: stratified
    #: for classification (unless ``stratify: false``), random for regression.
    split: Literal["random", "stratified", "time"] | None = None
    #: The older spelling of ``split: stratified`` / ``split: random`` (classification only).
    stratify: bool = True
    #: Column (in the data, need not be a feature) ordering the rows in time: numbers or timestamps.
    time_column: str | None = Field(default=None, min_length=1)
    #: Column (in the data, need not be a feature) whose rows stay on one side of the split.
    group_column: str | None = Field(default=None, min_length=1)
    metrics: list[str] = Field(default_factory=list)
    #: The metric that ranks versions (champion comparison, UI); must be one of ``metrics``.
    primary_metric: str | None = None


class ThresholdConfig(_Strict):
    """An absolute bound on a held-out metric: ``min`` and/or ``max``."""

    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdConfig:
        if self.min is None and self.max is None:
            raise ValueError("expected 'min' and/or 'max'")
        return self


class ChampionComparisonConfig(_Strict):
    """The candidate must not be worse than the champion by more than ``max_regression`` on ``metric``.

    Both are evaluated on the same held-out rows. With no champion yet the check is skipped.
    """

    metric: str
    max_regression: float = Field(default=0.0, ge=0.0)


class BehaviourConfig(_Strict):
    """A CSV of fixed inputs with ``expected`` (exact output) or ``expected_min``/``expected_max`` bounds.

    For classifiers the bounds apply to the predicted probability of the positive class.
    Relative paths resolve against the config file's folder.
    """

    cases: str = Field(min_length=1)

    @field_validator("cases")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return _known_location(value)


class SliceConfig(_Strict):
    """The spread (max - min) of ``metric`` across the groups of ``column`` must stay within ``max_gap``."""

    column: str
    metric: str
    max_gap: float = Field(gt=0.0)
    #: Groups with fewer held-out rows than this are left out (their metric would be noise).
    min_rows: int = Field(default=30, ge=1)


class AttributionsConfig(_Strict):
    """Which features drive the candidate's answers, in the gate report and on the card (evidence, not a check).

    ``auto`` uses SHAP when the ``shap`` package is installed (``pip install airflow-mlops[explain]``) and
    scikit-learn's permutation importance otherwise; ``shap`` asks for SHAP and falls back the same way, saying
    so in the report. Cost is bounded by sampling: ``rows`` held-out rows overall, ``slice_rows`` per slice group.
    """

    method: Literal["auto", "shap", "permutation", "off"] = "auto"
    #: Held-out rows explained (sampled) for the global importance.
    rows: int = Field(default=200, ge=10, le=100_000)
    #: Rows per group of each ``gates.slices`` column (sampled; groups below the slice's ``min_rows`` are left out).
    slice_rows: int = Field(default=50, ge=10, le=100_000)
    #: At most this many groups per slice column (the largest).
    max_groups: int = Field(default=20, ge=1, le=200)
    #: SHAP: background rows the masker draws replacement values from.
    background: int = Field(default=20, ge=1, le=10_000)
    #: Permutation importance: shuffles per feature (SHAP: one antithetic permutation per explained row).
    repeats: int = Field(default=3, ge=1, le=50)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class GatesConfig(_Strict):
    thresholds: list[ThresholdConfig] = Field(default_factory=list)
    champion: ChampionComparisonConfig | None = None
    behaviour: BehaviourConfig | None = None
    slices: list[SliceConfig] = Field(default_factory=list)
    attributions: AttributionsConfig = Field(default_factory=AttributionsConfig)


class CardConfig(_Strict):
    """What a person says about the model on every version's model card (the rest of the card is measured)."""

    #: What the model is for and who relies on its answers.
    intended_use: str = ""
    #: Known limits: populations, inputs or uses it was not built or checked for.
    limitations: list[str] = Field(default_factory=list)


class ApprovalConfig(_Strict):
    required: bool = False
    #: Airflow user ids allowed to answer; empty means any user with access to the DAG.
    approvers: list[str] = Field(default_factory=list)
    #: How long to wait for a human; on timeout the candidate is rejected.
    timeout: Duration = "7d"


class ShadowConfig(_Strict):
    enabled: bool = True
    duration: Duration = "1h"
    min_requests: int = Field(default=500, ge=0)
    min_agreement: float = Field(default=0.95, ge=0.0, le=1.0)
    max_error_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    max_latency_p95_ms: float = Field(default=250.0, gt=0.0)


class CanaryConfig(_Strict):
    steps: list[Annotated[float, Field(gt=0.0, le=100.0)]] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    step_duration: Duration = "30m"
    check_interval: Duration = "1m"
    max_error_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    max_latency_p95_ms: float = Field(default=250.0, gt=0.0)
    #: A step ends early (rollback) only once the canary answered this many requests in it; the
    #: end-of-step check judges whatever traffic there was.
    min_requests: int = Field(default=20, ge=1)
    #: With labels: the canary's primary metric may trail the champion's by at most this much ...
    max_metric_regression: float = Field(default=0.02, ge=0.0)
    #: ... judged only once both have at least this many labelled answers in the step (fewer is noise).
    min_labels: int = Field(default=200, ge=1)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if steps != sorted(set(steps)):
            raise ValueError("expected strictly increasing percentages")
        if steps and steps[-1] != 100.0:
            raise ValueError("expected the last step to be 100")
        return steps


#: The key the rollout section adds to ``target_options`` so its union knows which target's model applies.
_TARGET_KIND_KEY = "__target__"
TargetKind = Literal["local", "sagemaker", "azureml"]
TARGET_KINDS: tuple[TargetKind, ...] = ("local", "sagemaker", "azureml")


class _TargetOptions(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _drop_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and _TARGET_KIND_KEY in data:
            data = {k: v for k, v in data.items() if k != _TARGET_KIND_KEY}
        return data


class LocalTargetOptions(_TargetOptions):
    """The bundled gateway follows the registry: it takes no options (its URL is ``serving.gateway_url``)."""


#: SageMaker's own name rule for endpoints, models and variants.
_SAGEMAKER_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"


class SageMakerOptions(_TargetOptions):
    """An Amazon SageMaker real-time endpoint; champion, canary and shadow are its variants.

    Credentials come from the Airflow connection ``aws_conn_id``; a config never holds secrets.
    """

    aws_conn_id: str = Field(default="aws_default", min_length=1)
    #: Default: the connection's region.
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    endpoint_name: str = Field(pattern=_SAGEMAKER_NAME)
    execution_role_arn: str = Field(max_length=2048, pattern=r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]+$")
    #: A serving image that loads an MLflow pyfunc model from ``/opt/ml/model`` (e.g. the one
    #: ``mlflow sagemaker build-and-push-container`` builds), in ECR.
    image_uri: str = Field(pattern=r"^[\w.\-]+(:\d+)?/[\w.\-/]+(:[\w.\-]+|@sha256:[0-9a-f]{64})?$")
    instance_type: str = Field(default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(default=1, ge=1, le=100)
    #: Where each version's ``model.tar.gz`` is packaged: ``s3://bucket/prefix``.
    model_data_s3_uri: str = Field(pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$")
    #: With data capture on, requests and answers land here (JSON Lines), for health and monitoring.
    data_capture_s3_uri: str | None = Field(default=None, pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$")
    #: How long an endpoint update may take before the task fails (closed: the old config keeps serving).
    update_timeout: Duration = "30m"
    #: The CloudWatch statistic of ``ModelLatency`` (per minute) judged against the rollout's latency limits.
    latency_statistic: Literal["p90", "p95", "p99", "Maximum", "Average"] = "p95"
    #: How late CloudWatch's 1-minute metrics and data capture files arrive: each canary step's and the shadow
    #: window's last check waits this long after the window, so its last minutes are judged too.
    metrics_delay: Duration = "3m"


class AzureMLOptions(_TargetOptions):
    """An Azure ML managed online endpoint; each version is a deployment ``v<version>`` of it.

    The workspace comes from the Airflow connection ``azure_conn_id`` or from its three coordinates.
    """

    azure_conn_id: str | None = Field(default=None, min_length=1)
    subscription_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
    resource_group: str | None = Field(default=None, pattern=r"^[\w\-.()]{1,90}$")
    workspace: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][\w\-]{2,32}$")
    #: Azure's rule: 3-32 characters, a letter first, letters, digits and hyphens.
    endpoint_name: str = Field(pattern=r"^[a-zA-Z][a-zA-Z0-9\-]{1,30}[a-zA-Z0-9]$")
    instance_type: str = Field(default="Standard_DS3_v2", pattern=r"^Standard_[A-Za-z0-9_]+$")
    instance_count: int = Field(default=1, ge=1, le=100)
    #: An Azure ML environment (``azureml:<name>:<version>`` or ``azureml:<name>@latest``); default: the
    #: curated MLflow environment Azure ML picks for an MLflow model (no-code deployment).
    environment: str | None = Field(default=None, pattern=r"^azureml:[\w\-.]+(:[\w\-.]+|@latest)$")

    @model_validator(mode="after")
    def _workspace(self) -> AzureMLOptions:
        coordinates = (self.subscription_id, self.resource_group, self.workspace)
        if self.azure_conn_id is None and not all(coordinates):
            missing = [
                n for n, v in zip(("subscription_id", "resource_group", "workspace"), coordinates, strict=True) if not v
            ]
            raise ValueError(
                f"expected azure_conn_id, or all of subscription_id, resource_group and workspace (missing: {missing})"
            )
        return self


TargetOptions = Annotated[
    Annotated[LocalTargetOptions, Tag("local")]
    | Annotated[SageMakerOptions, Tag("sagemaker")]
    | Annotated[AzureMLOptions, Tag("azureml")],
    Discriminator(
        lambda value: value.get(_TARGET_KIND_KEY) if isinstance(value, dict) else _OPTION_KINDS.get(type(value))
    ),
]
_OPTION_KINDS: dict[type, str] = {LocalTargetOptions: "local", SageMakerOptions: "sagemaker", AzureMLOptions: "azureml"}
#: The options model of each target kind.
TARGET_OPTIONS: dict[str, type[_TargetOptions]] = {kind: model for model, kind in _OPTION_KINDS.items()}


class RolloutConfig(_Strict):
    """How a gated candidate reaches traffic (used by ``<model>__deploy``)."""

    target: TargetKind = "local"
    #: The target's settings: one set of fields per target (see the sections below); ``local`` takes none.
    target_options: TargetOptions = Field(default_factory=LocalTargetOptions)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    approval_before_canary: bool = False
    approval_before_promotion: bool = False

    @model_validator(mode="after")
    def _target_can_judge(self) -> RolloutConfig:
        options = self.target_options
        if isinstance(options, SageMakerOptions) and self.shadow.enabled and not options.data_capture_s3_uri:
            raise ValueError(
                "rollout.shadow.enabled: got true without rollout.target_options.data_capture_s3_uri; expected data "
                "capture on with target 'sagemaker': the shadow gate compares the shadow's answers with the "
                "champion's, and a SageMaker endpoint's answers are only in its data capture. Set "
                "data_capture_s3_uri, or rollout.shadow.enabled: false"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _options_kind(cls, data: Any) -> Any:
        """Tell ``target_options`` which target's model to check it against (an unknown target is its own error)."""
        if not isinstance(data, dict):
            return data
        target = data.get("target", "local")
        options = data.get("target_options", {})
        if target not in TARGET_KINDS:
            return {k: v for k, v in data.items() if k != "target_options"}
        if isinstance(options, dict):
            return {**data, "target_options": {**options, _TARGET_KIND_KEY: target}}
        if not isinstance(options, _TargetOptions):
            raise ValueError(
                f"rollout.target_options: got {type(options).__name__}; expected a mapping of the {target!r} "
                f"target's options {sorted(TARGET_OPTIONS[target].model_fields)}"
            )
        return data


class ServingConfig(_Strict):
    """Where the gateway logs predictions (read by rollout health checks and monitoring)."""

    #: Prediction-log root: local path (relative to the config's folder), ``s3://`` or ``wasbs://``;
    #: when unset, the deployment-wide setting ``[mlops] prediction_log``.
    prediction_log: str | None = None
    prediction_log_conn_id: str | None = None
    #: The gateway's base URL, used to confirm that a rollback is being served (optional).
    gateway_url: str | None = None


class ResourcesConfig(_Strict):
    """Where ``<model>__train``'s training step runs, for executors with more than one pool of workers."""

    #: Executor queue of the ``train_model`` task (e.g. a GPU pool). CeleryExecutor: only workers started with
    #: ``airflow celery worker --queues <name>`` take it. Unset: Airflow's ``[operators] default_queue``. The local
    #: executor runs every task itself and ignores queues.
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


class DriftThresholds(_Strict):
    psi_warn: float = Field(default=0.1, gt=0.0)
    psi_act: float = Field(default=0.25, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.psi_act < self.psi_warn:
            raise ValueError("expected psi_act >= psi_warn")
        return self


#: How long after a monitoring window ends its answers' delayed labels still count
#: (``<model>__monitor`` reads feedback up to this long after the window's end).
LABEL_DELAY = timedelta(days=7)


def _show_duration(value: timedelta) -> str:
    """As a config spells it, in the largest unit that is exact: ``8d``, ``174h``, ``90s``."""
    seconds = int(value.total_seconds())
    unit, size = next((u, n) for u, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)) if seconds % n == 0)
    return f"{seconds // size}{unit}"


class LabelCoverageConfig(_Strict):
    """When the monitor warns that labels arrive for one decision only (a hidden feedback loop)."""

    #: Decisions (predicted classes; a regressor's prediction quartiles) with fewer sampled answers are not judged.
    min_answers: int = Field(default=30, ge=1)
    #: Warn when the best-labelled decision's coverage is more than this many times another's (or that one has none).
    max_ratio: float = Field(default=10.0, gt=1.0)
    #: Groups reported per slice column (the largest), and decisions recorded as MLflow metrics (the most answered).
    max_groups: int = Field(default=20, ge=1, le=200)


class MonitoringConfig(_Strict):
    """Drift and performance monitoring (used by ``<model>__monitor``)."""

    enabled: bool = True
    schedule: str | None = "@hourly"
    window: Duration = "1d"
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    #: Per-feature overrides of ``thresholds``.
    feature_thresholds: dict[str, DriftThresholds] = Field(default_factory=dict)
    #: Dataset drift when at least this share of features is at act level.
    drifted_share: float = Field(default=0.3, gt=0.0, le=1.0)
    prediction_drift: bool = True
    #: Performance on delayed labels may trail the champion's evaluation by at most this much.
    max_performance_drop: float = Field(default=0.05, ge=0.0)
    cooldown: Duration = "6h"
    label_coverage: LabelCoverageConfig = Field(default_factory=LabelCoverageConfig)
    #: Delete prediction-log hour partitions (predictions and feedback) older than this, after each
    #: monitoring run (e.g. ``90d``); unset keeps them forever. Must be longer than ``window`` plus the
    #: 7-day label delay: a window is only fully labelled that long after it ended, and re-running the
    #: monitor for it then reads its predictions again.
    retention: Duration | None = None

    @field_validator("retention")
    @classmethod
    def _longer_than_what_the_monitor_reads(cls, value: Duration | None, info: ValidationInfo) -> Duration | None:
        window = info.data.get("window")
        if value is None or window is None:  # a bad window has its own error
            return value
        needed = parse_duration(window) + LABEL_DELAY
        if parse_duration(value) <= needed:
            raise ValueError(
                f"expected a duration longer than monitoring.window ({window}) plus the "
                f"{_show_duration(LABEL_DELAY)} label delay (more than {_show_duration(needed)}): a window's "
                "predictions are read again until its delayed labels are in"
            )
        return value


class RetrainingConfig(_Strict):
    """What starts ``<model>__train`` besides its schedule."""

    on_drift: bool = True
    on_new_data: bool = True
    #: Train on the newest window of data when retraining from events (``None`` = all of ``data.uri``).
    window: Duration | None = None


class ModelConfig(_Strict):
    """One model: everything its DAGs need. ``name`` becomes the registered model and DAG id prefix."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    description: str = ""
    owner: str = "airflow-mlops"
    tags: list[str] = Field(default_factory=list)
    #: Cron expression or preset for ``<model>__train``; ``null`` = only on demand and on events.
    schedule: str | None = None
    task: Literal["classification", "regression"]
    data: DataConfig
    target: str = Field(min_length=1)
    #: Classification with two classes: the class whose probability is the answer's ``score`` and which
    #: ``roc_auc``/``f1``/``precision``/``recall`` score (default: the second class in sorted order — ``1``,
    #: ``True`` or the later label). Must be one of the training data's classes.
    positive_class: str | bool | int | float | None = None
    features: FeaturesConfig
    expectations: list[ExpectationConfig] = Field(default_factory=list)
    estimator: EstimatorConfig = Field(default_factory=EstimatorConfig)
    #: Your own training function instead of ``estimator.class``.
    training: TrainingConfig | None = None
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    mlflow_conn_id: str = "mlflow_default"

    @model_validator(mode="after")
    def _cross_field(self) -> ModelConfig:
        if self.target in self.features.all:
            raise ValueError(f"target: got {self.target!r}; expected a column that is not also a feature")
        used: list[tuple[str, str]] = [(f"evaluation.metrics[{i}]", m) for i, m in enumerate(self.evaluation.metrics)]
        if self.evaluation.primary_metric:
            used.append(("evaluation.primary_metric", self.evaluation.primary_metric))
        used += [(f"gates.thresholds[{i}].metric", t.metric) for i, t in enumerate(self.gates.thresholds)]
        used += [(f"gates.slices[{i}].metric", s.metric) for i, s in enumerate(self.gates.slices)]
        if self.gates.champion:
            used.append(("gates.champion.metric", self.gates.champion.metric))
        for where, metric in used:
            known = is_classification_metric(metric) if self.task == "classification" else metric in REGRESSION_METRICS
            if not known:
                allowed = [*CLASSIFICATION_METRICS, "precision|recall|f1.<class>"]
                raise ValueError(
                    f"{where}: got {metric!r}; expected one of "
                    f"{allowed if self.task == 'classification' else list(REGRESSION_METRICS)} for task {self.task!r}"
                )
        if self.positive_class is not None and self.task != "classification":
            raise ValueError(f"positive_class: got {self.positive_class!r}; expected it only with task classification")
        return self

    @model_validator(mode="after")
    def _audit_and_slice_columns(self) -> ModelConfig:
        for i, column in enumerate(self.data.audit_columns):
            if column in self.features.all or column == self.target:
                raise ValueError(
                    f"data.audit_columns[{i}]: got {column!r}; expected a column that is neither a feature nor the "
                    "target (an audit column is never given to the model)"
                )
        if len(set(self.data.audit_columns)) != len(self.data.audit_columns):
            raise ValueError(f"data.audit_columns: got {self.data.audit_columns}; expected each column once")
        for i, s in enumerate(self.gates.slices):
            if s.column not in self.features.all and s.column not in self.data.audit_columns:
                raise ValueError(
                    f"gates.slices[{i}].column: got {s.column!r}; expected one of the features or of data.audit_columns"
                )
        return self

    @model_validator(mode="after")
    def _one_way_to_train(self) -> ModelConfig:
        if self.estimator.class_ is None and self.training is None:
            raise ValueError(
                "estimator.class: missing; expected an allow-listed estimator class (or training.entrypoint: your "
                "own training function)"
            )
        if self.estimator.class_ is not None and self.training is not None:
            raise ValueError(
                f"training.entrypoint: got {self.training.entrypoint!r} next to estimator.class "
                f"{self.estimator.class_!r}; expected only one of them"
            )
        return self

    @model_validator(mode="after")
    def _split_fields(self) -> ModelConfig:
        evaluation = self.evaluation
        if evaluation.split is not None and "stratify" in evaluation.model_fields_set:
            raise ValueError(
                f"evaluation.stratify: got {evaluation.stratify!r} next to evaluation.split {evaluation.split!r}; "
                "expected only evaluation.split (stratify is its older spelling)"
            )
        if evaluation.split == "time" and evaluation.time_column is None:
            raise ValueError("evaluation.time_column: missing; expected the column ordering rows in time (split: time)")
        if evaluation.split != "time" and evaluation.time_column is not None:
            raise ValueError(
                f"evaluation.time_column: got {evaluation.time_column!r} with split {evaluation.split or 'unset'!r}; "
                "expected it only with split: time"
            )
        if evaluation.group_column is not None and evaluation.group_column == evaluation.time_column:
            raise ValueError(
                f"evaluation.group_column: got {evaluation.group_column!r}; expected a column other than time_column"
            )
        return self

    @model_validator(mode="after")
    def _split_for_task(self) -> ModelConfig:
        if self.evaluation.split == "stratified" and self.task != "classification":
            raise ValueError(f"evaluation.split: got 'stratified' for task {self.task!r}; expected random or time")
        for field in ("time_column", "group_column"):
            column = getattr(self.evaluation, field)
            if column is not None and column == self.target:
                raise ValueError(f"evaluation.{field}: got {column!r}; expected a column other than the target")
        return self

    @property
    def trainer(self) -> str:
        """What fits the model: the estimator class, or ``entrypoint:<package.module:function>``."""
        return self.estimator.class_ or f"entrypoint:{self.training.entrypoint if self.training else ''}"

    @property
    def split(self) -> str:
        """The held-out split actually used: ``evaluation.split``, else the older ``stratify`` rule."""
        if self.evaluation.split is not None:
            return self.evaluation.split
        return "stratified" if self.task == "classification" and self.evaluation.stratify else "random"

    @property
    def metrics(self) -> list[str]:
        """Metrics computed on the held-out split (config's list, or the task's defaults)."""
        if self.evaluation.metrics:
            return list(self.evaluation.metrics)
        return ["roc_auc", "accuracy", "f1"] if self.task == "classification" else ["rmse", "mae", "r2"]

    @property
    def primary_metric(self) -> str:
        return self.evaluation.primary_metric or self.metrics[0]

    @property
    def dag_ids(self) -> dict[str, str]:
        return {kind: f"{self.name}__{kind}" for kind in ("train", "deploy", "monitor", "rollback")}
