"""Exception hierarchy: every error we raise on purpose is an ``MlopsError``."""

from __future__ import annotations


class MlopsError(Exception):
    """Base class for errors raised by airflow-mlops."""


class ConfigError(MlopsError, ValueError):
    """A model config file is missing, unreadable or invalid; the message names file and field."""


class DataError(MlopsError):
    """Training data could not be read, or changed while a DAG run was using it."""


class DataValidationError(MlopsError):
    """The data failed one or more of the config's expectations."""


class GateFailedError(MlopsError):
    """The candidate failed its quality gate (or the gate itself errored: fail closed)."""


class RegistryError(MlopsError):
    """A model-registry operation was refused (e.g. promoting a version whose gate did not pass)."""


class TargetError(MlopsError):
    """A deployment target (an endpoint in a cloud) could not be brought to the registry's state."""


class TargetDriftError(TargetError):
    """The endpoint serves something the registry does not say (changed by hand): the rollout refuses to go on."""


class MissingExtraError(MlopsError, ImportError):
    """An optional package is not installed; the message names the ``airflow-mlops[<extra>]`` to install."""

    def __init__(self, message: str, *, extra: str, module: str) -> None:
        super().__init__(message, name=module)
        self.extra = extra
        self.module = module
