"""Optional extras: one lazy import that says which ``pip install 'airflow-mlops[<extra>]'`` to run.

The core install trains, gates and serves on local files. Cloud storage and the evidently report come
with extras, and every import of their packages goes through :func:`require`::

    aws      apache-airflow-providers-amazon   s3:// data, prediction log and artifacts (S3Hook, botocore)
    azure    apache-airflow-providers-microsoft-azure (+ adlfs)   wasb(s):// and abfs(s):// (WasbHook, adlfs)
    reports  evidently                         the HTML drift report next to our own statistics
    all      the three above

Cheap to import: nothing here imports an optional package until it is asked for.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final, Literal

from airflow_mlops.exceptions import MissingExtraError

__all__ = ["EXTRAS", "Extra", "MissingExtraError", "install_hint", "require"]

Extra = Literal["aws", "azure", "reports"]

EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "aws": ("apache-airflow-providers-amazon",),
    "azure": ("apache-airflow-providers-microsoft-azure", "adlfs"),
    "reports": ("evidently",),
}
"""What each extra installs (``pyproject.toml`` ``[project.optional-dependencies]`` says the same)."""


def install_hint(extra: Extra) -> str:
    """``pip install 'airflow-mlops[<extra>]'``."""
    return f"pip install 'airflow-mlops[{extra}]'"


def require(module: str, extra: Extra, *, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that provides it.

    :param module: dotted module name, e.g. ``"airflow.providers.amazon.aws.hooks.s3"``.
    :param extra: the ``airflow-mlops`` extra that installs it.
    :param purpose: what needs it, for the message (e.g. ``"reading s3://bucket/key.csv"``).
    :raises MissingExtraError: the module (or one of its parents) is not installed. An ``ImportError``
        raised *inside* an installed module is a broken installation, not a missing extra: it propagates.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise  # the module exists but imports something that does not: not ours to explain
        packages = " + ".join(EXTRAS[extra])
        raise MissingExtraError(
            f"{purpose} needs the optional package {packages} (module {module!r} is not installed); "
            f"install it with: {install_hint(extra)}",
            extra=extra,
            module=module,
        ) from exc
