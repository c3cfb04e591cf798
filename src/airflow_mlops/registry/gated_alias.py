"""Whether a registry alias points at a version that may serve: its gate passed and nobody took it back.

A version "may serve" when its tag ``Tag.GATE`` is ``"passed"`` and it carries neither
``Tag.REJECTED_REASON`` (rejected by a person or by the rollout) nor ``Tag.ROLLBACK_REASON`` (rolled
back after it served) — the same rule the promotion protocol enforces before it moves an alias.
Plain Python over an ``MlflowClient``; no Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["AliasCheck", "check_gated_alias", "servable_refusal"]


@dataclass(frozen=True)
class AliasCheck:
    """What an alias points at, and whether that satisfies the wait.

    :param satisfied: The alias points at a servable version (the expected one, when one was given).
    :param version: The version the alias points at (``None`` when the alias is not set).
    :param reason: Why it is not satisfied (empty when satisfied), for logs.
    """

    model: str
    alias: str
    satisfied: bool
    version: str | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The small JSON-safe result a sensor returns (model, alias, version)."""
        return {"model": self.model, "alias": self.alias, "version": self.version}


def servable_refusal(tags: dict[str, str]) -> str | None:
    """Why a version with these tags may not serve, or ``None`` when it may."""
    if tags.get(Tag.GATE) != "passed":
        return f"{Tag.GATE} is {tags.get(Tag.GATE)!r}, not 'passed'"
    if Tag.REJECTED_REASON in tags:
        return f"it was rejected ({Tag.REJECTED_REASON}={tags[Tag.REJECTED_REASON]!r})"
    if Tag.ROLLBACK_REASON in tags:
        return f"it was rolled back ({Tag.ROLLBACK_REASON}={tags[Tag.ROLLBACK_REASON]!r})"
    return None


def _alias_target(client: MlflowClient, model: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model, alias)
    except MlflowException as exc:  # alias or model not there (yet): not an error while waiting
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def check_gated_alias(client: MlflowClient, model: str, alias: str, version: str | None = None) -> AliasCheck:
    """Does ``model@alias`` point at a version that passed its gate and was not rejected or rolled back?

    :param version: When given, only this version satisfies the check (e.g. "wait until v7 is champion").
    :raises MlflowException: on errors other than "no such model / alias" (the store is unreachable, ...).
    """
    target = _alias_target(client, model, alias)
    if target is None:
        return AliasCheck(model, alias, False, None, f"{model}@{alias} is not set")
    current = str(target.version)
    if version is not None and current != str(version):
        return AliasCheck(model, alias, False, current, f"{model}@{alias} is v{current}, waiting for v{version}")
    refusal = servable_refusal(dict(target.tags or {}))
    if refusal is not None:
        return AliasCheck(model, alias, False, current, f"{model}@{alias} is v{current}, but {refusal}")
    return AliasCheck(model, alias, True, current)
