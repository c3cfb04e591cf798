"""moto server with three SageMaker fixes: a test-only extension of the moto emulator.

AWS behaviour per the SageMaker API reference. moto 5.2.5 lacks it, and the deployment-target tests need it:

* ``CreateEndpointConfig`` keeps ``ShadowProductionVariants``; ``DescribeEndpointConfig`` returns them.
  Their models must exist, and their InstanceType/ServerlessConfig is checked, as for production variants.
  The AWS rule is also checked: with shadow variants, exactly one ProductionVariant and at most one shadow
  variant, else ``ValidationException``. moto drops the shadow variants without a word.
* ``DescribeEndpoint`` returns ``ShadowProductionVariants`` (VariantName, Current/DesiredWeight,
  Current/DesiredInstanceCount, as for ``ProductionVariants``) when the endpoint's config has them.
* A variant with ``InitialVariantWeight`` 0 gets ``CurrentWeight``/``DesiredWeight`` 0.0. moto's truthiness
  check in ``FakeEndpoint._process_production_variants`` drops the weight.
* ``UpdateEndpoint`` (moto: HTTP 500 NotImplemented). The endpoint and the new config must exist, else
  ``ValidationException`` with AWS's messages. The endpoint takes the config's production and shadow variants,
  its ``EndpointConfigName`` and ``DataCaptureConfig``, and a new ``LastModifiedTime``. AWS goes
  ``Updating`` -> ``InService``; here the endpoint is ``InService`` again at once. ``RetainAllVariantProperties``,
  ``ExcludeRetainedVariantProperties``, ``DeploymentConfig`` and ``RetainDeploymentConfig`` are ignored.

How: at import, the script replaces or wraps these methods: ``SageMakerModelBackend.create_endpoint_config``
(replaced, plus a ``shadow_production_variants`` argument), ``create_endpoint`` (wrapped),
``update_endpoint`` (new), ``FakeEndpoint._process_production_variants`` (wrapped), and the response
handlers ``SageMakerResponse.create_endpoint_config`` (replaced) and ``update_endpoint`` (new).
moto finds a handler by the action's snake_case name, so a new method on ``SageMakerResponse`` is a new
action. Responses use moto's ``ActionResult``, which serialises to the botocore output shape.
Then the script runs moto's own server (``moto.server.main``), which serves every moto service on one port,
like ``moto_server``.

Usage: ``python tests/moto_sagemaker.py -H 127.0.0.1 -p 5000`` (same options as ``moto_server``).
"""

from __future__ import annotations

import sys
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models, responses
from moto.sagemaker.exceptions import ValidationError

Variants = list[dict[str, Any]]

_original_process_production_variants = models.FakeEndpoint._process_production_variants
_original_create_endpoint = models.SageMakerModelBackend.create_endpoint


def _process_production_variants(self: models.FakeEndpoint, production_variants: Variants) -> Variants:
    """moto's conversion, but a weight of 0 is kept (moto tests it for truth and drops it)."""
    processed = _original_process_production_variants(self, production_variants)
    for given, variant in zip(production_variants, processed, strict=True):
        if given.get("InitialVariantWeight") == 0:  # 0 or 0.0; None (not given) stays as moto has it
            variant["CurrentWeight"] = variant["DesiredWeight"] = 0.0
    return processed


def _check_shadow_rule(production_variants: Variants, shadow_variants: Variants) -> None:
    """AWS: with ShadowProductionVariants, only one ProductionVariant and one shadow variant."""
    if len(production_variants) != 1 or len(shadow_variants) > 1:
        raise ValidationError(
            message="When ShadowProductionVariants are specified, exactly one ProductionVariant and at most one "
            f"ShadowProductionVariant are allowed: got {len(production_variants)} ProductionVariants and "
            f"{len(shadow_variants)} ShadowProductionVariants."
        )


def create_endpoint_config(
    self: models.SageMakerModelBackend,
    endpoint_config_name: str,
    production_variants: Variants,
    data_capture_config: dict[str, Any],
    async_inference_config: dict[str, Any],
    tags: list[dict[str, str]],
    kms_key_id: str,
    shadow_production_variants: Variants | None = None,
) -> models.FakeEndpointConfig:
    """moto's backend method (same order of checks), plus the shadow variants."""
    shadows = shadow_production_variants or None  # AWS omits the field when there are none
    if shadows:
        _check_shadow_rule(production_variants, shadows)
    endpoint_config = models.FakeEndpointConfig(  # type: ignore[abstract]
        account_id=self.account_id,
        region_name=self.region_name,
        endpoint_config_name=endpoint_config_name,
        production_variants=production_variants,
        async_inference_config=async_inference_config,
        data_capture_config=data_capture_config,
        tags=tags,
        kms_key_id=kms_key_id,
    )  # checks the production variants' InstanceType / ServerlessConfig
    endpoint_config.validate_production_variants(shadows or [])  # the same for the shadow variants
    self.validate_production_variants(production_variants + (shadows or []))  # every model exists
    # gen_response_object turns the attribute into "ShadowProductionVariants"; None is left out.
    endpoint_config.shadow_production_variants = shadows  # type: ignore[attr-defined]
    self.endpoint_configs[endpoint_config_name] = endpoint_config
    return endpoint_config


def _endpoint_shadow_variants(endpoint: models.FakeEndpoint, config: models.FakeEndpointConfig) -> Variants | None:
    shadows = getattr(config, "shadow_production_variants", None)
    return endpoint._process_production_variants(shadows) if shadows else None


def create_endpoint(
    self: models.SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str, tags: list[dict[str, str]]
) -> models.FakeEndpoint:
    """moto's backend method, then the config's shadow variants on the endpoint."""
    endpoint = _original_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
    config = self.endpoint_configs[endpoint_config_name]
    endpoint.shadow_production_variants = _endpoint_shadow_variants(endpoint, config)  # type: ignore[attr-defined]
    return endpoint


def update_endpoint(self: models.SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str) -> str:
    """Switch the endpoint to another config (AWS: Updating, then InService; here InService at once)."""
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = models.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
        raise ValidationError(message=f'Could not find endpoint "{arn}".')
    config = self.endpoint_configs.get(endpoint_config_name)
    if config is None:
        arn = models.FakeEndpointConfig.arn_formatter(endpoint_config_name, self.account_id, self.region_name)
        raise ValidationError(message=f'Could not find endpoint configuration "{arn}".')
    endpoint.endpoint_config_name = endpoint_config_name
    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
    endpoint.shadow_production_variants = _endpoint_shadow_variants(endpoint, config)  # type: ignore[attr-defined]
    endpoint.data_capture_config = config.data_capture_config
    endpoint.last_modified_time = utcnow()
    endpoint.endpoint_status = "InService"
    return endpoint.arn


def _respond_create_endpoint_config(self: responses.SageMakerResponse) -> ActionResult:
    """moto's handler, plus ``ShadowProductionVariants``."""
    endpoint_config = self.sagemaker_backend.create_endpoint_config(  # type: ignore[call-arg]
        endpoint_config_name=self._get_param("EndpointConfigName"),
        async_inference_config=self._get_param("AsyncInferenceConfig"),
        production_variants=self._get_param("ProductionVariants"),
        data_capture_config=self._get_param("DataCaptureConfig"),
        tags=self._get_param("Tags"),
        kms_key_id=self._get_param("KmsKeyId"),
        shadow_production_variants=self._get_param("ShadowProductionVariants"),
    )
    return ActionResult({"EndpointConfigArn": endpoint_config.endpoint_config_arn})


def _respond_update_endpoint(self: responses.SageMakerResponse) -> ActionResult:
    """``UpdateEndpoint``; the Retain*/DeploymentConfig parameters are ignored."""
    endpoint_arn = self.sagemaker_backend.update_endpoint(  # type: ignore[attr-defined]
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
    )
    return ActionResult({"EndpointArn": endpoint_arn})


def install() -> None:
    """Patch moto's SageMaker classes in this process (idempotent for the wrapped methods)."""
    models.FakeEndpoint._process_production_variants = _process_production_variants  # type: ignore[method-assign]
    models.SageMakerModelBackend.create_endpoint_config = create_endpoint_config  # type: ignore[method-assign]
    models.SageMakerModelBackend.create_endpoint = create_endpoint  # type: ignore[method-assign]
    models.SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    responses.SageMakerResponse.create_endpoint_config = _respond_create_endpoint_config  # type: ignore[method-assign]
    responses.SageMakerResponse.update_endpoint = _respond_update_endpoint  # type: ignore[attr-defined]


install()

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
