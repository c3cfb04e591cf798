"""The project's words: MLflow tag keys, registry aliases, serving roles and Asset URIs.

Everything that other systems read back (tags in MLflow, aliases the gateway routes by, roles in
the prediction log, Asset URIs other DAGs schedule on) is spelled here once. Nothing else in the
package writes ``"mlops.`` or ``mlops://`` literally (``tests/unit/test_vocabulary.py`` checks it).
Cheap to import: DAG files reach it at parse time.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from urllib.parse import SplitResult

__all__ = [
    "ALIASES",
    "ASSET_KINDS",
    "ASSET_SCHEME",
    "MODEL_NAME_PATTERN",
    "ROLES",
    "SERVED_ROLES",
    "Alias",
    "AssetKind",
    "Role",
    "Tag",
    "asset_uri",
    "normalize_asset_uri",
]


class Tag:
    """MLflow tag keys on runs, model versions and registered models (all under ``mlops.``)."""

    PREFIX: Final = "mlops."

    # lineage: what a version was trained from (run and version tags)
    DATA_URI: Final = "mlops.data_uri"
    DATA_SHA256: Final = "mlops.data_sha256"
    DATA_FILES: Final = "mlops.data_files"
    DATA_CONN_ID: Final = "mlops.data_conn_id"
    CONFIG_SHA256: Final = "mlops.config_sha256"
    CONFIG_PATH: Final = "mlops.config_path"
    CODE_VERSION: Final = "mlops.code_version"
    SEED: Final = "mlops.seed"
    DAG_RUN_ID: Final = "mlops.dag_run_id"
    MLFLOW_RUN_ID: Final = "mlops.mlflow_run_id"
    RETRAINED_FOR_DRIFT: Final = "mlops.retrained_for_drift"
    """On a training run started by drift events: the monitoring run ids of those events (comma-separated), so a
    duplicated event does not retrain a second time."""
    ENV_PREFIX: Final = "mlops.env."
    """``mlops.env.<library>``: versions of python and the key libraries at training time."""

    # the trained model and its checks
    MODEL: Final = "mlops.model"
    MANAGED_BY: Final = "mlops.managed_by"
    MODEL_URI: Final = "mlops.model_uri"
    MODEL_ID: Final = "mlops.model_id"
    MODEL_SHA256: Final = "mlops.model_sha256"
    """On a version: its artifacts' checksum, written at registration once the registry's copy matched
    ``TRAINED_MODEL_SHA256``; verified before every load."""
    CLASSES: Final = "mlops.classes"
    """On a classifier's training run and version: ``{"classes": [...], "positive": ...}`` as JSON
    (:class:`airflow_mlops.training.classes.ClassSet`); absent on regressors and on 0/1 versions trained before."""
    TRAINED_MODEL_SHA256: Final = "mlops.trained_model_sha256"
    """On a training run: the checksum of the model folder, computed locally before it was uploaded."""
    MODEL_HMAC: Final = "mlops.model_hmac"
    """On a training run and its version, when ``[mlops] model_signing_conn_id`` is set: hex HMAC-SHA256
    over the model name and the checksum (:mod:`airflow_mlops.registry.signing`)."""
    VALIDATION: Final = "mlops.validation"
    GATE: Final = "mlops.gate"
    GATE_REPORT: Final = "mlops.gate_report"
    APPROVED_BY: Final = "mlops.approved_by"
    APPROVED_AT: Final = "mlops.approved_at"
    APPROVED_COMMENT: Final = "mlops.approved_comment"
    DECISION_PREFIX: Final = "mlops.decision."
    """``mlops.decision.<stage>`` on a version: a person's answer at the approval before ``<stage>`` (``challenger``
    in training, ``canary`` and ``champion`` in the rollout) as JSON: decision, by, at, comment, dag_run."""

    @staticmethod
    def decision(stage: str) -> str:
        """The version tag holding the answer at the approval before ``stage``."""
        return f"{Tag.DECISION_PREFIX}{stage}"

    # deployment state and its history
    CANARY_PERCENT: Final = "mlops.canary_percent"
    PROMOTED_BY: Final = "mlops.promoted_by"
    REJECTED_REASON: Final = "mlops.rejected_reason"
    REJECTED_BY: Final = "mlops.rejected_by"
    ROLLBACK_REASON: Final = "mlops.rollback_reason"
    AUDIT_HEAD: Final = "mlops.audit_head"
    """On a registered model: ``<seq>:<sha256>`` of the newest entry of its audit chain, written at every append
    (:mod:`airflow_mlops.deploy.audit_chain`), so a database rewritten as a whole no longer matches the registry."""
    TARGET_APPLIED: Final = "mlops.target.applied"
    """On a registered model served by a cloud target: the endpoint layout last applied (JSON), so a later check
    tells an update of ours that did not finish from a change made by hand."""
    SAGEMAKER_MODEL_DATA: Final = "mlops.sagemaker.model_data"
    """On a version: the S3 URI of its ``model.tar.gz`` for SageMaker."""
    SAGEMAKER_SHA256: Final = "mlops.sagemaker.sha256"
    """On a version: the sha256 of that ``model.tar.gz``, checked before a SageMaker model is created from it."""

    # monitoring runs
    CHAMPION: Final = "mlops.champion"
    WINDOW_START: Final = "mlops.window_start"
    WINDOW_END: Final = "mlops.window_end"
    DRIFT_ACT: Final = "mlops.drift.act"
    DRIFT_LAST_EVENT: Final = "mlops.drift.last_event"
    DRIFT_SUPPRESSED: Final = "mlops.drift.suppressed"
    DRIFT_REPORT_SKIPPED: Final = "mlops.drift.report_skipped"
    """Why a monitoring run has no evidently HTML report (e.g. the ``[reports]`` extra is not installed)."""
    DRIFT_EVIDENTLY: Final = "mlops.drift.evidently"
    """evidently's dataset verdict under our thresholds (``"drift"``/``"no_drift"``), next to ``DRIFT_ACT``."""
    FEEDBACK_WARNING: Final = "mlops.feedback.warning"
    """On a monitoring run: labels arrived for one decision only (see ``monitoring/coverage.py``)."""
    DRIFT_DISAGREEMENT: Final = "mlops.drift.disagreement"
    """Set when evidently and our statistics disagree: what differs (dataset verdict, features)."""

    LINEAGE: Final = (DATA_URI, DATA_SHA256, CONFIG_SHA256, CODE_VERSION, SEED, DAG_RUN_ID)
    """The lineage every training run and registered version carries."""

    @staticmethod
    def env(library: str) -> str:
        """``mlops.env.<library>``."""
        return Tag.ENV_PREFIX + library


class Alias:
    """Registry aliases: the deployment state of a model lives in these (and ``Tag.CANARY_PERCENT``)."""

    CHAMPION: Final = "champion"
    CHALLENGER: Final = "challenger"
    CANARY: Final = "canary"
    SHADOW: Final = "shadow"
    PREVIOUS: Final = "previous"


ALIASES: Final = (Alias.CHAMPION, Alias.CHALLENGER, Alias.CANARY, Alias.SHADOW, Alias.PREVIOUS)


class Role:
    """What a version did for a request at the gateway (recorded with every prediction)."""

    CHAMPION: Final = "champion"
    CANARY: Final = "canary"
    SHADOW: Final = "shadow"


RoleName = Literal["champion", "canary", "shadow"]
ROLES: Final = frozenset({Role.CHAMPION, Role.CANARY, Role.SHADOW})
SERVED_ROLES: Final = (Role.CHAMPION, Role.CANARY)
"""Roles whose answers reached a client (the shadow's never do)."""


class AssetKind:
    """The Assets each model has: ``mlops://<model>/<kind>``."""

    CANDIDATE: Final = "candidate"
    DRIFT: Final = "drift"
    DATA: Final = "data"
    PREDICTIONS: Final = "predictions"


ASSET_KINDS: Final = (AssetKind.CANDIDATE, AssetKind.DRIFT, AssetKind.DATA, AssetKind.PREDICTIONS)
ASSET_SCHEME: Final = "mlops"


def asset_uri(model: str, kind: str) -> str:
    """``mlops://<model>/<kind>`` — the Asset a model's DAGs produce or schedule on."""
    if kind not in ASSET_KINDS:
        raise ValueError(f"asset kind: got {kind!r}; expected one of {list(ASSET_KINDS)}")
    return f"{ASSET_SCHEME}://{model}/{kind}"


MODEL_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{1,62}$"
"""A model name, as ``ModelConfig.name`` (config/schema.py) requires it."""
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def normalize_asset_uri(parts: SplitResult) -> SplitResult:
    """Airflow's ``asset-uris`` handler for the ``mlops`` scheme: ``mlops://<model>/<kind>``, or ValueError.

    Airflow calls it (through :func:`airflow_mlops.get_provider_info`) on every ``Asset`` whose URI has our
    scheme, after lowercasing the scheme and dropping trailing slashes and the fragment. The model is a
    model config's ``name`` (lowercased: DNS-style names are case-insensitive and ours are lowercase), the
    kind one of :data:`ASSET_KINDS`; no user info, port, query or further path. A typo such as
    ``mlops://fraud/drfit`` therefore fails where the DAG declares it instead of scheduling on an Asset
    nothing ever produces.
    """
    model = parts.netloc.lower()
    kind = parts.path.strip("/")
    expected = f"expected {ASSET_SCHEME}://<model>/<kind> with <kind> one of {list(ASSET_KINDS)}"
    uri = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    if not _MODEL_NAME.match(model):
        raise ValueError(
            f"asset URI {uri!r}: model {parts.netloc!r} is not a model name ({_MODEL_NAME.pattern}); {expected}"
        )
    if kind not in ASSET_KINDS:
        raise ValueError(f"asset URI {uri!r}: kind {kind!r} is unknown; {expected}")
    if parts.query:
        raise ValueError(f"asset URI {uri!r}: a query string is not part of an asset URI; {expected}")
    return parts._replace(netloc=model, path=f"/{kind}", query="", fragment="")
