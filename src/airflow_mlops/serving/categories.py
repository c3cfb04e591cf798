"""The categories a model version refuses new values of, read from its fitted pipeline and checked per request.

A model trained with ``features.unknown_categories: error`` ends in a ``OneHotEncoder(handle_unknown="error")``
that raises on a category it never saw in training. Checked here, before the model runs, a category the
champion refuses becomes a 422 naming the field, the value and the categories the version knows (the
client's input, not a 5xx); a canary or shadow that refuses one the champion answers is charged with an
error, with this clearer message (see :mod:`airflow_mlops.serving.app`).

What is read: every fitted transformer with ``categories_`` and ``handle_unknown == "error"``
(``OneHotEncoder``, ``OrdinalEncoder``), reached through ``Pipeline`` steps and ``ColumnTransformer`` column
lists (names, or positions with ``feature_names_in_``). Only imputers may stand between the input columns and
such an encoder (they fill missing values and change nothing else), so encoder column *i* is input column
*i*; any other step there (a scaler, a function) could change the values, and that encoder is skipped
(logged), leaving the model's own error an error, as before. Missing values (null) are not checked when an
imputer fills them first or when training saw them; otherwise they are refused like an unseen category.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops.serving.signature import MAX_PROBLEMS, InputError, Loc
from airflow_mlops.serving.signature import _show as show_value

log = logging.getLogger(__name__)

#: At most this many known categories are listed in a 422 (the rest are counted).
SHOWN_CATEGORIES = 20


class UnknownCategoryError(InputError):
    """A record holds a category the version refuses (never seen in training, ``unknown_categories: error``)."""


@dataclass(frozen=True)
class ColumnCategories:
    """The values one input column may take for a version that refuses unseen ones."""

    known: frozenset[Any]
    #: Null may be sent: an imputer fills it before the encoder, or training saw missing values.
    accepts_missing: bool
    #: The message tail listing what is accepted (sorted, at most ``SHOWN_CATEGORIES``).
    expected: str = field(compare=False)


@dataclass(frozen=True)
class KnownCategories:
    """Per input column, the categories a version accepts; empty when it takes any category."""

    columns: Mapping[str, ColumnCategories] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.columns)

    def check(self, payload: Any) -> None:
        """Raise ``UnknownCategoryError`` listing every refused value of ``payload`` (a validated body)."""
        problems = self.problems(payload)
        if problems:
            raise UnknownCategoryError(problems[:MAX_PROBLEMS], truncated=len(problems) > MAX_PROBLEMS)

    def problems(self, payload: Any, limit: int = MAX_PROBLEMS + 1) -> list[dict[str, Any]]:
        """``{"loc", "msg"}`` per refused value, in record order, at most ``limit``.

        ``payload`` has passed the signature check: ``{"records": {...}}`` (locations ``["records", column]``)
        or ``{"records": [{...}, ...]}`` (``["records", i, column]``), values already of the column's type.
        """
        if not self.columns:
            return []
        records = payload["records"]
        single = isinstance(records, dict)
        problems: list[dict[str, Any]] = []
        for index, record in enumerate([records] if single else records):
            for name, spec in self.columns.items():
                value = record.get(name)
                if _accepted(value, spec):
                    continue
                loc: Loc = ["records", name] if single else ["records", index, name]
                problems.append({"loc": loc, "msg": _message(value, spec)})
                if len(problems) >= limit:
                    return problems
        return problems


def _accepted(value: Any, spec: ColumnCategories) -> bool:
    if _is_missing(value):
        return spec.accepts_missing
    try:
        return value in spec.known
    except TypeError:  # unhashable: the signature check lets none through, but never fail here
        return False


def _message(value: Any, spec: ColumnCategories) -> str:
    what = "missing value" if _is_missing(value) else f"unknown category {show_value(value)}"
    return f"{what}: this model refuses categories it did not see in training; expected one of {spec.expected}"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def known_categories(estimator: Any) -> KnownCategories:
    """The categories ``estimator`` (a fitted scikit-learn pipeline or transformer) refuses new values of.

    Never raises: a structure it cannot follow yields fewer columns (logged), so the gateway checks less and
    the model's own error for that input stays an error.
    """
    found: dict[str, tuple[set[Any], bool]] = {}
    try:
        _walk(estimator, None, True, False, found)
    except Exception:  # an unusual estimator must not stop the version from serving
        log.warning("Could not read the known categories of %s; unseen ones stay model errors", type(estimator))
        return KnownCategories()
    return KnownCategories({name: _column(known, missing) for name, (known, missing) in found.items()})


def _column(known: set[Any], accepts_missing: bool) -> ColumnCategories:
    values = sorted((v for v in known if not _is_missing(v)), key=lambda v: (type(v).__name__, str(v)))
    shown = ", ".join(show_value(v) for v in values[:SHOWN_CATEGORIES])
    more = f" (+{len(values) - SHOWN_CATEGORIES} more)" if len(values) > SHOWN_CATEGORIES else ""
    missing = accepts_missing or any(_is_missing(v) for v in known)
    return ColumnCategories(frozenset(values), missing, f"[{shown}]{more}")


def _walk(
    node: Any, columns: list[str] | None, raw: bool, imputed: bool, found: dict[str, tuple[set[Any], bool]]
) -> None:
    """Collect the refusing encoders under ``node``.

    ``columns``: the names of ``node``'s input columns, when known; ``raw``: its input is the request's
    frame itself (nothing ran before it), so its own ``feature_names_in_`` are request columns.
    """
    if hasattr(node, "transformers_"):  # ColumnTransformer: each branch gets the columns it selects
        if raw:
            for _, transformer, selection in node.transformers_:
                if not isinstance(transformer, str):  # "drop" / "passthrough"
                    _walk(transformer, _selected(node, selection), False, imputed, found)
    elif isinstance(getattr(node, "steps", None), list):
        _walk_steps(node.steps, columns, raw, imputed, found)
    elif _refuses_unknown(node):
        names = columns
        if names is None and raw:
            names = _names_in(node)
        _add(node, names, imputed, found)


def _walk_steps(
    steps: list[Any], columns: list[str] | None, raw: bool, imputed: bool, found: dict[str, tuple[set[Any], bool]]
) -> None:
    """A Pipeline's steps in order: column names survive imputers only (they fill missing values, nothing else)."""
    for _, step in steps:
        if step is None or isinstance(step, str):  # "passthrough"
            continue
        _walk(step, columns, raw, imputed, found)
        if _is_imputer(step):
            imputed = True
            columns = columns if columns is not None or not raw else _names_in(step)
        else:
            columns = None
        raw = False


def _names_in(node: Any) -> list[str] | None:
    names = getattr(node, "feature_names_in_", None)
    return None if names is None else [str(name) for name in names]


def _selected(transformer: Any, selection: Any) -> list[str] | None:
    """The column names a ``ColumnTransformer`` branch was given, if they can be told."""
    if isinstance(selection, str):
        return [selection]
    if not isinstance(selection, list | tuple) and type(selection).__name__ != "ndarray":
        return None  # a slice, a callable or a mask: not followed
    items = list(selection)
    if all(isinstance(item, str) for item in items):
        return items
    names = getattr(transformer, "feature_names_in_", None)
    if names is not None and all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        return [str(names[item]) for item in items]
    return None


def _is_imputer(step: Any) -> bool:
    return type(step).__name__.endswith("Imputer") and not getattr(step, "add_indicator", False)


def _refuses_unknown(node: Any) -> bool:
    return getattr(node, "handle_unknown", None) == "error" and hasattr(node, "categories_")


def _add(encoder: Any, names: list[str] | None, imputed: bool, found: dict[str, tuple[set[Any], bool]]) -> None:
    categories = encoder.categories_
    if names is None or len(names) != len(categories):
        log.info("%s refuses unseen categories but its input columns cannot be told; not checked", encoder)
        return
    for name, values in zip(names, categories, strict=True):
        known = set(values.tolist())
        if name in found:  # two encoders read the column: a value must pass both
            before, missing = found[name]
            found[name] = (before & known, missing and imputed)
        else:
            found[name] = (known, imputed)
