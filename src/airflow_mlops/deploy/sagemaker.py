"""Amazon SageMaker as a deployment target: the registry's aliases, reconciled onto one real-time endpoint.

The MLflow registry stays the source of truth. Every operation moves the aliases first (guarded and audited by
:class:`~airflow_mlops.deploy.promotion.Deployments`, exactly as for the bundled gateway), then brings the
endpoint to the layout the aliases describe:

- the champion and the canary are production variants ``v<version>`` with weights ``100 - p`` and ``p``;
- the shadow is a shadow production variant (SageMaker mirrors the production variant's traffic to it and
  discards its answers). SageMaker allows a shadow only next to a single production variant, so a shadow and
  a canary share cannot coexist; the deploy DAG runs the shadow window before the canary steps.

A change of weights alone is ``UpdateEndpointWeightsAndCapacities`` (seconds, no new instances); any other
change is a new endpoint config and ``UpdateEndpoint`` (SageMaker keeps the old config serving until the new
one is in service, and goes back to it if the update fails). Each version is packaged once: its verified
MLflow artifacts as a reproducible ``model.tar.gz`` in S3, whose sha256 is recorded on the version and checked
again before a SageMaker model is created from it. Names are derived from content, so a retried task finds
and reuses what an earlier try created.

After a successful update the applied layout is written as a registered-model tag. An endpoint that matches
neither the registry nor that tag was changed by hand: the rollout refuses to proceed (a rollback or
rejection still goes through, re-applying the registry's state, and says so in the audit trail).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.deploy import promotion
from airflow_mlops.deploy.locking import model_lock
from airflow_mlops.deploy.targets import RegistryTarget
from airflow_mlops.exceptions import TargetDriftError, TargetError
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow import MlflowClient

    from airflow_mlops.config.schema import SageMakerOptions
    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.deploy.promotion import DeploymentState, PromotionResult

log = logging.getLogger(__name__)

#: SageMaker names: at most 63 characters, letters, digits and hyphens.
MAX_NAME = 63
#: Seconds between two reads of an endpoint that is updating.
POLL_SECONDS = 15.0


def variant_name(version: str) -> str:
    """The production (or shadow) variant that serves ``version``."""
    return f"v{version}"


def version_of_variant(name: str) -> str | None:
    return name[1:] if name.startswith("v") and name[1:].isdigit() else None


def _variant_key(name: str) -> str:
    """A served variant's key in a layout: its version for ``v<n>``; any other name (added by hand, e.g. the
    SageMaker SDK's ``AllTraffic``) as ``?<name>``, which no registry layout holds, so it reads as drift."""
    return version_of_variant(name) or f"?{name}"


def _order(key: str) -> tuple[bool, str]:
    return (not key.isdigit(), key.zfill(12))


#: Shares (percent) closer than this are the same: SageMaker stores weights as floats and we normalise them.
WEIGHT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class EndpointLayout:
    """What an endpoint serves: each production variant's version and share (percent), and the shadow."""

    weights: dict[str, float] = field(default_factory=dict)
    shadow: str | None = None

    def to_json(self) -> str:
        return json.dumps({"weights": self.weights, "shadow": self.shadow}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> EndpointLayout | None:
        """The layout a tag holds; ``None`` for a missing or unreadable tag (it then proves nothing)."""
        try:
            raw = json.loads(text or "")
            weights = {str(k): float(v) for k, v in raw["weights"].items()}
            shadow = raw.get("shadow")
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        return cls(weights, str(shadow) if shadow is not None else None)

    def describe(self) -> str:
        parts = [
            f"{_shown(key)} {weight:g}%" for key, weight in sorted(self.weights.items(), key=lambda i: _order(i[0]))
        ]
        text = ", ".join(parts) or "nothing"
        return f"{text}; shadow {_shown(self.shadow)}" if self.shadow else text

    @property
    def versions(self) -> list[str]:
        return sorted({*self.weights, *([self.shadow] if self.shadow else [])}, key=_order)

    def matches(self, other: EndpointLayout | None) -> bool:
        """The same variants and shadow, and shares equal within :data:`WEIGHT_TOLERANCE`."""
        if other is None or self.shadow != other.shadow or self.weights.keys() != other.weights.keys():
            return False
        return all(abs(w - other.weights[k]) <= WEIGHT_TOLERANCE for k, w in self.weights.items())


def _shown(key: str) -> str:
    return f"v{key}" if key.isdigit() else f"variant {key[1:]!r}"


def desired_layout(state: DeploymentState) -> EndpointLayout:
    """The layout the registry's aliases describe (empty without a champion: nothing to serve).

    :raises TargetError: a shadow and a canary share at once, which a SageMaker endpoint cannot serve.
    """
    if state.champion is None:
        return EndpointLayout()
    percent = round(state.canary_percent, 4) if state.canary and state.canary != state.champion else 0.0
    weights = {state.champion: round(100.0 - percent, 4)}
    if percent > 0 and state.canary is not None:
        weights[state.canary] = percent
    shadow = state.shadow if state.shadow and state.shadow not in weights else None
    if shadow and len(weights) > 1:
        raise TargetError(
            f"a SageMaker endpoint cannot mirror to a shadow (v{shadow}) while a canary (v{state.canary}) has "
            f"{percent:g}% of the traffic: it allows a shadow variant only next to one production variant"
        )
    return EndpointLayout(weights, shadow)


def _shares(variants: list[dict[str, Any]]) -> dict[str, float]:
    """Production variants' weights as percent of their total, by version (variants not named ``v<n>`` as is)."""
    raw = {_variant_key(v["VariantName"]): float(v.get("CurrentWeight", v.get("DesiredWeight", 0))) for v in variants}
    total = sum(raw.values())
    return {k: round(100.0 * w / total, 4) if total > 0 else 0.0 for k, w in raw.items()}


@dataclass(frozen=True)
class EndpointView:
    """An endpoint as SageMaker describes it, next to what the registry says it should serve."""

    endpoint: str
    status: str | None
    config_name: str | None
    served: EndpointLayout | None
    expected: EndpointLayout
    applied: EndpointLayout | None
    failure_reason: str | None = None

    @property
    def in_sync(self) -> bool:
        return self.expected.matches(self.served) or (self.served is None and not self.expected.weights)

    @property
    def changed_by_hand(self) -> bool:
        """Neither the registry's layout nor the last one we applied: someone else changed the endpoint."""
        return self.served is not None and not self.in_sync and not self.served.matches(self.applied)

    def describe(self) -> str:
        served = self.served.describe() if self.served is not None else "no endpoint"
        lines = [
            f"endpoint {self.endpoint}: {self.status or 'absent'}"
            + (f" (config {self.config_name})" if self.config_name else ""),
            f"  serves:   {served}",
            f"  registry: {self.expected.describe()}",
        ]
        if self.failure_reason:
            lines.append(f"  failure:  {self.failure_reason}")
        if self.changed_by_hand:
            lines.append(
                "  DRIFT: the endpoint was changed outside airflow-mlops (it matches neither the registry "
                "nor the last layout applied)"
            )
        elif not self.in_sync:
            lines.append("  pending: an update of ours did not finish; the next operation re-applies the registry")
        return "\n".join(lines)


def _described(layout: EndpointLayout | None) -> str:
    return layout.describe() if layout is not None else "?"


def _deterministic_tar_gz(root: str) -> bytes:
    """``root``'s files as a gzipped tar at the archive's top level, byte-identical for identical files."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, root))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o644
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
    return buffer.getvalue()


#: An archive that unpacks to more than this is refused (a hostile gzip must not fill the worker's disk).
MAX_UNPACKED_BYTES = 20 * 1024**3


def _check_archive(client: MlflowClient, model: str, version: str, uri: str, body: bytes) -> None:
    """``body`` (the ``model.tar.gz`` at ``uri``) must unpack to exactly the files registered for the version.

    :raises ModelIntegrityError: not a readable archive, members that would leave the folder (links, devices,
        absolute paths: refused by tarfile's ``data`` filter), too large, or files that hash differently from
        the (signed) registration checksum.
    """
    from airflow_mlops.registry.checksum import ModelIntegrityError, registered_checksum, tree_sha256

    expected = registered_checksum(client, model, version)
    changed = "the archive was changed or written by someone else; refusing to deploy it"
    with tempfile.TemporaryDirectory(prefix="mlops-sagemaker-check-") as tmp:
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
                if sum(member.size for member in tar.getmembers()) > MAX_UNPACKED_BYTES:
                    raise ModelIntegrityError(f"{model} v{version}: {uri} unpacks to more than 20 GiB; {changed}")
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise ModelIntegrityError(
                f"{model} v{version}: {uri} is not a readable model archive ({type(exc).__name__}: {exc}); {changed}"
            ) from exc
        actual = tree_sha256(tmp)
    if actual != expected:
        raise ModelIntegrityError(
            f"{model} v{version}: the files in {uri} hash {actual}, not {expected} recorded at registration; {changed}"
        )


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class PackagedModel:
    version: str
    model_data: str
    sha256: str
    model_name: str


class SageMakerEndpoint:
    """One SageMaker real-time endpoint, driven through boto3 clients (from the Airflow connection's hook).

    :param options: The config's ``rollout.target_options``.
    :param sagemaker: A boto3 ``sagemaker`` client.
    :param s3: A boto3 ``s3`` client (model packaging).
    :param poll_seconds: Seconds between reads of an updating endpoint.
    """

    def __init__(self, options: SageMakerOptions, sagemaker: Any, s3: Any, *, poll_seconds: float = POLL_SECONDS):
        from airflow_mlops.config.schema import parse_duration

        self.options = options
        self.sagemaker = sagemaker
        self.s3 = s3
        self.poll_seconds = poll_seconds
        self.update_timeout = parse_duration(options.update_timeout).total_seconds()

    @property
    def name(self) -> str:
        return self.options.endpoint_name

    # -- packaging --------------------------------------------------------------------------------

    def model_name(self, version: str, sha256: str) -> str:
        """``<endpoint>-v<version>-<hash>``: the hash covers the archive, the image and the role, so changing the
        serving image or the role makes a new model (and so an endpoint update) instead of reusing the old one."""
        identity = f"{sha256}\0{self.options.image_uri}\0{self.options.execution_role_arn}"
        suffix = f"-v{version}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"
        return self.name[: MAX_NAME - len(suffix)].rstrip("-") + suffix

    def package(self, client: MlflowClient, model: str, version: str) -> PackagedModel:
        """``model`` v``version`` as a SageMaker model, created once (reused by name on a retry).

        The artifacts are downloaded only after their registration checksum (and signature) matched. Before
        ``CreateModel``, the ``model.tar.gz`` in S3 is read back, unpacked and hashed again against that same
        (signed) registration checksum: an archive replaced in S3, with its ``mlops.sagemaker.sha256`` tag
        edited to match or not, is refused. The sha256 tags record what was deployed; a try that uploaded and
        died before tagging is completed by the next.
        """
        from airflow_mlops.registry.checksum import download_verified

        tags = dict(client.get_model_version(model, version).tags or {})
        bucket, prefix = _split_s3(self.options.model_data_s3_uri)
        key = "/".join(p for p in (prefix, model, f"v{version}", "model.tar.gz") if p)
        uri = f"s3://{bucket}/{key}"
        body = self._read_object(bucket, key)
        if body is None:
            with tempfile.TemporaryDirectory(prefix="mlops-sagemaker-") as tmp:
                body = _deterministic_tar_gz(download_verified(client, model, version, tmp))
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/gzip")
            body = self._read_object(bucket, key) or b""  # what SageMaker will read, not what we meant to write
        _check_archive(client, model, version, uri, body)
        digest = hashlib.sha256(body).hexdigest()
        if tags.get(Tag.SAGEMAKER_SHA256) != digest or tags.get(Tag.SAGEMAKER_MODEL_DATA) != uri:
            client.set_model_version_tag(model, version, Tag.SAGEMAKER_MODEL_DATA, uri)
            client.set_model_version_tag(model, version, Tag.SAGEMAKER_SHA256, digest)
        name = self.model_name(version, digest)
        self._ensure_model(name, uri, model, version, digest)
        return PackagedModel(version, uri, digest, name)

    def _read_object(self, bucket: str, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code in ("AccessDenied", "403"):
                raise TargetError(
                    f"s3://{bucket}/{key}: access denied. The Airflow connection needs s3:GetObject and s3:PutObject "
                    f"on the packages, and s3:ListBucket on the bucket (without it S3 answers a missing package "
                    f"with 403, not 404)"
                ) from exc
            raise

    def _ensure_model(self, name: str, uri: str, model: str, version: str, digest: str) -> None:
        try:
            found = self.sagemaker.describe_model(ModelName=name)
        except Exception as exc:
            if _error_code(exc) != "ValidationException":
                raise
        else:
            container = found.get("PrimaryContainer") or {}
            have = (container.get("ModelDataUrl"), container.get("Image"), found.get("ExecutionRoleArn"))
            want = (uri, self.options.image_uri, self.options.execution_role_arn)
            if have != want:
                raise TargetError(
                    f"SageMaker model {name} exists with (model data, image, role) {have}, not {want}; refusing to "
                    "reuse it"
                )
            return
        self.sagemaker.create_model(
            ModelName=name,
            PrimaryContainer={"Image": self.options.image_uri, "ModelDataUrl": uri, "Mode": "SingleModel"},
            ExecutionRoleArn=self.options.execution_role_arn,
            Tags=[
                {"Key": "mlops-model", "Value": model},
                {"Key": "mlops-version", "Value": version},
                {"Key": "mlops-sha256", "Value": digest},
            ],
        )

    # -- reading ----------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any] | None:
        """``DescribeEndpoint``; ``None`` when the endpoint does not exist."""
        try:
            return dict(self.sagemaker.describe_endpoint(EndpointName=self.name))
        except Exception as exc:
            if _error_code(exc) == "ValidationException" and "Could not find" in str(exc):
                return None
            raise

    def served(self, described: dict[str, Any] | None) -> tuple[EndpointLayout | None, dict[str, str]]:
        """The layout an endpoint serves and each variant's SageMaker model (from its endpoint config)."""
        if described is None:
            return None, {}
        weights = _shares(list(described.get("ProductionVariants") or []))
        shadows = [_variant_key(v["VariantName"]) for v in described.get("ShadowProductionVariants") or []]
        models: dict[str, str] = {}
        config_name = described.get("EndpointConfigName")
        if config_name:
            config = self.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
            for variant in [*(config.get("ProductionVariants") or []), *(config.get("ShadowProductionVariants") or [])]:
                models[_variant_key(variant["VariantName"])] = variant["ModelName"]
        return EndpointLayout(weights, shadows[0] if shadows else None), models

    # -- writing ----------------------------------------------------------------------------------

    def _variant(self, packaged: PackagedModel, weight: float) -> dict[str, Any]:
        return {
            "VariantName": variant_name(packaged.version),
            "ModelName": packaged.model_name,
            "InitialInstanceCount": self.options.instance_count,
            "InstanceType": self.options.instance_type,
            "InitialVariantWeight": weight,
        }

    def config_request(self, layout: EndpointLayout, packages: dict[str, PackagedModel]) -> dict[str, Any]:
        """The ``CreateEndpointConfig`` request for ``layout``, named by its content (a retry reuses it)."""
        request: dict[str, Any] = {
            "ProductionVariants": [self._variant(packages[v], w) for v, w in sorted(layout.weights.items())],
        }
        if layout.shadow:
            request["ShadowProductionVariants"] = [self._variant(packages[layout.shadow], 100.0)]
        if self.options.data_capture_s3_uri:
            request["DataCaptureConfig"] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": self.options.data_capture_s3_uri,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
            }
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
        request["EndpointConfigName"] = f"{self.name[: MAX_NAME - 13].rstrip('-')}-{digest}"
        return request

    def apply(self, layout: EndpointLayout, packages: dict[str, PackagedModel]) -> str:
        """Make the endpoint serve ``layout``; return how (``created``, ``weights``, ``updated``, ``unchanged``).

        :raises TargetError: the endpoint failed or stayed busy past ``update_timeout`` (SageMaker keeps the
            previous config serving meanwhile).
        """
        described = self._wait_idle(self.describe())
        if described is None:
            request = self.config_request(layout, packages)
            self._ensure_config(request)
            self.sagemaker.create_endpoint(EndpointName=self.name, EndpointConfigName=request["EndpointConfigName"])
            self._wait_idle(self.describe(), required=True)
            return "created"
        served, models = self.served(described)
        wanted_models = {v: packages[v].model_name for v in layout.versions}
        same_models = all(models.get(v) == m for v, m in wanted_models.items())
        if layout.matches(served) and same_models:
            return "unchanged"
        same_variants = (
            served is not None
            and set(served.weights) == set(layout.weights)
            and served.shadow == layout.shadow
            and same_models
        )
        if same_variants:
            self.sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=self.name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": variant_name(v), "DesiredWeight": w} for v, w in sorted(layout.weights.items())
                ],
            )
            self._check_applied(self._wait_idle(self.describe(), required=True), layout)
            return "weights"
        self._drain(served, layout)
        request = self.config_request(layout, packages)
        self._ensure_config(request)
        self.sagemaker.update_endpoint(EndpointName=self.name, EndpointConfigName=request["EndpointConfigName"])
        self._check_applied(self._wait_idle(self.describe(), required=True), layout, request["EndpointConfigName"])
        return "updated"

    def _drain(self, served: EndpointLayout | None, layout: EndpointLayout) -> None:
        """Before an update that removes variants, move their traffic off with a weights update (seconds): an
        ``UpdateEndpoint`` starts new instances first (minutes), and a version being rolled back must not keep
        its share meanwhile."""
        if served is None or not set(layout.weights) <= set(served.weights):
            return
        leaving = set(served.weights) - set(layout.weights)
        if not any(served.weights[v] > 0 for v in leaving) or any(not v.isdigit() for v in served.weights):
            return
        self.sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=self.name,
            DesiredWeightsAndCapacities=[
                {"VariantName": variant_name(v), "DesiredWeight": layout.weights.get(v, 0.0)}
                for v in sorted(served.weights, key=_order)
            ],
        )
        self._wait_idle(self.describe(), required=True)

    def _check_applied(
        self, described: dict[str, Any] | None, layout: EndpointLayout, config: str | None = None
    ) -> None:
        """An update that failed ends ``InService`` on the previous config, with ``FailureReason`` set: refuse it
        rather than record a layout the endpoint does not serve."""
        described = described or {}
        weights = _shares(list(described.get("ProductionVariants") or []))
        taken = (
            described.get("EndpointConfigName") == config
            if config
            else EndpointLayout(layout.weights).matches(EndpointLayout(weights))
        )
        if not taken:
            raise TargetError(
                f"SageMaker endpoint {self.name} is {described.get('EndpointStatus')} but did not take the update "
                f"(config {described.get('EndpointConfigName')}, weights {weights}): "
                f"{described.get('FailureReason') or 'no reason given'}; SageMaker went back to the previous config"
            )

    def _ensure_config(self, request: dict[str, Any]) -> None:
        try:
            self.sagemaker.describe_endpoint_config(EndpointConfigName=request["EndpointConfigName"])
        except Exception as exc:
            if _error_code(exc) != "ValidationException":
                raise
            self.sagemaker.create_endpoint_config(**request)

    def _wait_idle(self, described: dict[str, Any] | None, *, required: bool = False) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.update_timeout
        while True:
            if described is None:
                if required:
                    raise TargetError(f"SageMaker endpoint {self.name} disappeared while it was being updated")
                return None
            status = described.get("EndpointStatus")
            if status == "InService":
                return described
            if status in ("Failed", "OutOfService", "UpdateRollbackFailed"):
                raise TargetError(
                    f"SageMaker endpoint {self.name} is {status}: {described.get('FailureReason') or 'no reason given'}"
                )
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"SageMaker endpoint {self.name} stayed {status} for more than {self.options.update_timeout} "
                    "(update_timeout); SageMaker keeps the previous config serving. Retry the task once it is "
                    "InService"
                )
            time.sleep(self.poll_seconds)
            described = self.describe()


def aws_clients(options: SageMakerOptions, *services: str) -> list[Any]:
    """boto3 clients from the Airflow connection ``options.aws_conn_id`` (region: ``options.region`` or the
    connection's), in botocore's standard retry mode: throttling and 5xx answers are retried with backoff."""
    from airflow_mlops._optional import require

    purpose = f"The SageMaker target (endpoint {options.endpoint_name})"
    AwsBaseHook = require("airflow.providers.amazon.aws.hooks.base_aws", "aws", purpose=purpose).AwsBaseHook
    config = require("botocore.config", "aws", purpose=purpose).Config(retries={"mode": "standard", "max_attempts": 8})
    return [
        AwsBaseHook(
            aws_conn_id=options.aws_conn_id, region_name=options.region, client_type=service, config=config
        ).conn
        for service in services
    ]


class SageMakerTarget(RegistryTarget):
    """The rollout on a SageMaker endpoint: registry first (guarded, audited), then the endpoint follows.

    :param client: MLflow client of the registry (the source of truth).
    :param audit: Audit trail for alias moves and endpoint changes.
    :param endpoint: The endpoint (options and boto3 clients).
    """

    kind = "sagemaker"

    def __init__(
        self,
        client: MlflowClient,
        audit: AuditTrail,
        endpoint: SageMakerEndpoint,
        *,
        lock_timeout: float = promotion.DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        super().__init__(client, audit, lock_timeout=lock_timeout)
        self.endpoint = endpoint

    @classmethod
    def from_options(
        cls,
        options: SageMakerOptions,
        *,
        client: MlflowClient,
        audit: AuditTrail,
        lock_timeout: float = promotion.DEFAULT_LOCK_TIMEOUT,
        poll_seconds: float = POLL_SECONDS,
    ) -> SageMakerTarget:
        """The target on ``options.endpoint_name``, with clients from :func:`aws_clients`."""
        endpoint = SageMakerEndpoint(options, *aws_clients(options, "sagemaker", "s3"), poll_seconds=poll_seconds)
        return cls(client, audit, endpoint, lock_timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"SageMakerTarget(endpoint={self.endpoint.name!r}, tracking_uri={self.client.tracking_uri!r})"

    # -- reading ----------------------------------------------------------------------------------

    def view(self, model: str) -> EndpointView:
        """The endpoint next to the registry, for ``airflow-mlops status`` and the drift check."""
        described = self.endpoint.describe()
        served, _ = self.endpoint.served(described)
        tags = dict(self.client.get_registered_model(model).tags or {})
        return EndpointView(
            endpoint=self.endpoint.name,
            status=(described or {}).get("EndpointStatus"),
            config_name=(described or {}).get("EndpointConfigName"),
            served=served,
            expected=desired_layout(self.state(model)),
            applied=EndpointLayout.from_json(tags.get(Tag.TARGET_APPLIED)),
            failure_reason=(described or {}).get("FailureReason"),
        )

    def check_in_sync(self, model: str) -> EndpointView:
        """The view, after refusing an endpoint changed by hand.

        :raises TargetDriftError: the endpoint serves neither the registry's layout nor the last one applied.
        """
        view = self.view(model)
        if view.changed_by_hand:
            raise TargetDriftError(
                f"{model}: SageMaker endpoint {view.endpoint} serves {_described(view.served)}, "
                f"but the registry says {view.expected.describe()} and the last layout airflow-mlops applied was "
                f"{view.applied.describe() if view.applied else 'none'}: the endpoint was changed outside "
                f"airflow-mlops. Run the {model}__rollback DAG to put the registry's state back on it, or move the "
                "registry's aliases to match the endpoint, then retry"
            )
        return view

    # -- moving -----------------------------------------------------------------------------------

    def _operate(
        self, model: str, operation: Callable[[], PromotionResult], *, actor: str, reason: str, force: bool = False
    ) -> PromotionResult:
        view = self.view(model) if force else self.check_in_sync(model)
        if force and view.changed_by_hand:
            self.audit.record(
                model,
                "endpoint",
                None,
                None,
                reason=f"{reason}: overriding a change made by hand (endpoint served {_described(view.served)})",
                actor=actor,
            )
        result = operation()
        self.reconcile(model, actor=actor, reason=reason)
        return result

    def reconcile(self, model: str, *, actor: str, reason: str) -> str:
        """Bring the endpoint to the registry's layout (idempotent); audit each variant whose share moved.

        :raises TargetError: the endpoint could not be updated; the registry has moved, so the task fails
            (closed) and a retry re-applies.
        """
        # the lock outlasts an endpoint update, so a rollback waits for a deploy's update instead of failing
        timeout = max(self.lock_timeout, 2 * self.endpoint.update_timeout + 60)
        how = "unchanged"
        with model_lock(self.audit, f"{model}#sagemaker", timeout=timeout):
            for _ in range(3):  # the registry may move while an update runs (a rollback): follow it
                layout = desired_layout(self.state(model))
                if not layout.weights:
                    return how
                before, _ = self.endpoint.served(self.endpoint.describe())
                packages = {v: self.endpoint.package(self.client, model, v) for v in layout.versions}
                try:
                    how = self.endpoint.apply(layout, packages)
                except Exception as exc:
                    raise TargetError(
                        f"{model}: the registry now says {layout.describe()}, but SageMaker endpoint "
                        f"{self.endpoint.name} could not be updated ({type(exc).__name__}: {exc}); it still serves "
                        f"{_described(before)}. Retry the task (it re-applies the registry's state)"
                    ) from exc
                if how != "unchanged":
                    self._audit_moves(model, before, layout, how, actor=actor, reason=reason)
                tags = dict(self.client.get_registered_model(model).tags or {})
                if not layout.matches(EndpointLayout.from_json(tags.get(Tag.TARGET_APPLIED))):
                    self.client.set_registered_model_tag(model, Tag.TARGET_APPLIED, layout.to_json())
                log.info("SageMaker endpoint %s of %s: %s (%s)", self.endpoint.name, model, layout.describe(), how)
                if desired_layout(self.state(model)).matches(layout):
                    return how
        return how

    def _audit_moves(
        self, model: str, before: EndpointLayout | None, after: EndpointLayout, how: str, *, actor: str, reason: str
    ) -> None:
        old = before.weights if before else {}
        for version in sorted({*old, *after.weights}, key=_order):
            a, b = old.get(version), after.weights.get(version)
            if a is None or b is None or abs(a - b) > WEIGHT_TOLERANCE:
                self.audit.record(
                    model,
                    f"endpoint:{variant_name(version) if version.isdigit() else version}",
                    f"{a:g}%" if a is not None else None,
                    f"{b:g}%" if b is not None else None,
                    reason=f"{reason} ({how} SageMaker endpoint {self.endpoint.name})",
                    actor=actor,
                )
        old_shadow = before.shadow if before else None
        if old_shadow != after.shadow:
            self.audit.record(
                model,
                "endpoint:shadow",
                old_shadow,
                after.shadow,
                reason=f"{reason} ({how} SageMaker endpoint {self.endpoint.name})",
                actor=actor,
            )

    def set_traffic(
        self, model: str, canary_version: str | None, percent: float, *, actor: str, reason: str
    ) -> PromotionResult:
        percent = percent if canary_version is not None else 0
        shadow = self.state(model).shadow
        if percent > 0 and shadow is not None and shadow != canary_version:
            raise TargetError(
                f"{model}: cannot give v{canary_version} {percent:g}% while v{shadow} is the shadow: a SageMaker "
                "endpoint mirrors only next to one production variant; stop the shadow first"
            )
        return self._operate(
            model,
            lambda: self.deployments.set_canary(model, canary_version, percent, actor=actor, reason=reason),
            actor=actor,
            reason=reason,
        )

    def start_shadow(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        state = self.state(model)
        if state.canary is not None and state.canary_percent > 0 and state.canary != state.champion:
            raise TargetError(
                f"{model}: cannot shadow v{version} while v{state.canary} has {state.canary_percent:g}% of the "
                "traffic: a SageMaker endpoint mirrors only next to one production variant"
            )
        return self._operate(
            model,
            lambda: self.deployments.set_shadow(model, version, actor=actor, reason=reason),
            actor=actor,
            reason=reason,
        )

    def stop_shadow(self, model: str, *, actor: str, reason: str) -> PromotionResult:
        return self._operate(
            model,
            lambda: self.deployments.set_shadow(model, None, actor=actor, reason=reason),
            actor=actor,
            reason=reason,
            force=True,
        )

    def promote(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        return self._operate(
            model,
            lambda: self.deployments.promote(model, version, actor=actor, reason=reason),
            actor=actor,
            reason=reason,
        )

    def rollback(self, model: str, to_version: str | None = None, *, actor: str, reason: str) -> PromotionResult:
        return self._operate(
            model,
            lambda: self.deployments.rollback(model, to_version=to_version, actor=actor, reason=reason),
            actor=actor,
            reason=reason,
            force=True,
        )

    def reject(self, model: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        return self._operate(
            model,
            lambda: self.deployments.reject(model, version, actor=actor, reason=reason),
            actor=actor,
            reason=reason,
            force=True,
        )
