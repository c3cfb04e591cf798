"""Check a request body against a model's MLflow column signature before the model sees it.

Bad input must come back as a 422 that names the field, never as a 5xx from deep inside
scikit-learn, so every value is checked here in plain Python (a closed set of JSON types per
column kind), all problems are reported at once (up to ``MAX_PROBLEMS``), and the DataFrame is
built once from per-column lists. The dtypes are the ones MLflow maps each kind to
(``double`` float64, ``float`` float32, ``long`` int64, ``integer`` int32, ``boolean`` bool,
``string`` object), so the frame also passes ``mlflow.models.validate_schema``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature

ColumnKind = Literal["double", "float", "long", "integer", "boolean", "string"]
Loc = list[str | int]

MAX_PROBLEMS = 50
"""Stop collecting after this many problems: enough to fix a batch, bounded work for a hostile one."""

_KINDS: tuple[str, ...] = get_args(ColumnKind)
_FLOAT32_MAX = 3.4028234663852886e38
_INT_RANGES: dict[str, tuple[int, int]] = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
_DTYPES: dict[str, str] = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "object",
}
_ABSENT: Any = object()
_SHAPE = 'expected a JSON object {"records": [{...}, ...]} or {"records": {...}}'


class InputError(Exception):
    """The request body does not fit the signature; the gateway answers 422 with ``problems``.

    Each problem is JSON-safe: ``{"loc": ["records", 3, "amount"], "msg": "expected a number, got 'abc'"}``.
    ``truncated`` is true when more than ``MAX_PROBLEMS`` were found and only the first ones are listed.
    """

    def __init__(self, problems: list[dict[str, Any]], *, truncated: bool = False) -> None:
        self.problems = problems
        self.truncated = truncated
        first = problems[0] if problems else {"loc": [], "msg": "invalid input"}
        where = ".".join(str(part) for part in first["loc"])
        more = f" (+{len(problems) - 1} more{', truncated' if truncated else ''})" if len(problems) > 1 else ""
        super().__init__(f"{where}: {first['msg']}{more}")


class _Reject(Exception):
    """Raised by a value converter; carries the message of one problem."""


def _show(value: Any) -> str:
    """A short repr for messages; never fails (huge ints and odd objects included)."""
    try:
        text = repr(value)
    except Exception:  # e.g. int too large to render: the message must not become the 5xx
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_missing(value: Any) -> bool:
    return value is None or (type(value) is float and value != value)


def _to_double(value: Any) -> float:
    """int or float (not bool, not str); None/NaN become NaN; infinities rejected (imputers cannot fix them)."""
    if type(value) is not float:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Reject(f"expected a number, got {_show(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise _Reject(f"number out of range, got {_show(value)}") from None
    if value in (math.inf, -math.inf):
        raise _Reject(f"expected a finite number, got {_show(value)}")
    number: float = value
    return number


def _to_float(value: Any) -> float:
    """As double, and within float32 range so the cast does not silently turn it into infinity."""
    number = _to_double(value)
    if abs(number) > _FLOAT32_MAX:
        raise _Reject(f"number out of range for float column, got {_show(value)}")
    return number


def _int_converter(kind: str) -> Callable[[Any], Any]:
    low, high = _INT_RANGES[kind]

    def convert(value: Any) -> int:
        """ints only: no bools, no floats (not even 2.0), no missing values."""
        if type(value) is not int:
            if _is_missing(value):
                raise _Reject("missing values are not allowed for integer column")
            if isinstance(value, bool) or not isinstance(value, int):
                raise _Reject(f"expected an integer, got {_show(value)}")
            value = int(value)
        if not low <= value <= high:
            raise _Reject(f"integer out of range for {kind} column ({low}..{high}), got {_show(value)}")
        number: int = value
        return number

    return convert


def _to_boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    if _is_missing(value):
        raise _Reject("missing values are not allowed for boolean column")
    raise _Reject(f"expected a boolean, got {_show(value)}")


def _to_string(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if _is_missing(value):
        raise _Reject("missing values are not allowed for string column")
    raise _Reject(f"expected a string, got {_show(value)}")


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """MLflow's ``required: false``: null (or NaN) is a missing value, as if the key were absent."""

    def convert_optional(value: Any) -> Any:
        return None if _is_missing(value) else convert(value)

    return convert_optional


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "double": _to_double,
    "float": _to_float,
    "long": _int_converter("long"),
    "integer": _int_converter("integer"),
    "boolean": _to_boolean,
    "string": _to_string,
}


@dataclass(frozen=True)
class ColumnSpec:
    """One named input column: its MLflow kind, and whether the key must be present in every record."""

    name: str
    kind: ColumnKind
    required: bool = True

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(
                f"column {self.name!r}: kind {self.kind!r} is not supported; expected one of {list(_KINDS)}"
            )


@dataclass(frozen=True)
class _Plan:
    """Precomputed once per schema: known names, and per column (name, converter, required, value if absent)."""

    names: frozenset[str]
    steps: tuple[tuple[str, Callable[[Any], Any], bool, Any], ...]


def _make_plan(columns: tuple[ColumnSpec, ...]) -> _Plan:
    steps: list[tuple[str, Callable[[Any], Any], bool, Any]] = []
    for spec in columns:
        convert = _CONVERTERS[spec.kind]
        is_float = spec.kind in ("double", "float")
        if not spec.required and not is_float:  # double/float already take null as NaN
            convert = _optional(convert)
        absent = math.nan if is_float else None
        steps.append((spec.name, convert, spec.required, absent))
    return _Plan(frozenset(spec.name for spec in columns), tuple(steps))


@dataclass(frozen=True)
class InputSchema:
    """The columns a model accepts, in signature order; ``validate`` turns a request body into its DataFrame."""

    columns: tuple[ColumnSpec, ...]
    _plan: _Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("an input schema needs at least one column")
        names = [spec.name for spec in self.columns]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"column names must be unique; {duplicates} appear more than once")
        object.__setattr__(self, "_plan", _make_plan(self.columns))

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.columns]

    @classmethod
    def from_mlflow(cls, signature: ModelSignature) -> InputSchema:
        """From ``signature.inputs`` (named ColSpecs); tensor, unnamed or non-scalar inputs raise ValueError."""
        from mlflow.types.schema import DataType

        inputs = signature.inputs
        if inputs is None:
            raise ValueError("the model signature has no inputs; log the model with an input example or signature")
        if inputs.is_tensor_spec():
            raise ValueError(
                "the model signature is tensor-based; the gateway needs a column-based signature "
                "(infer_signature on a DataFrame)"
            )
        if not inputs.has_input_names():
            raise ValueError("the model signature has unnamed columns; the gateway needs named columns")
        specs = []
        for col in inputs.inputs:
            kind = col.type.name if isinstance(col.type, DataType) else str(col.type)
            if kind not in _KINDS:
                raise ValueError(
                    f"column {col.name!r}: MLflow type {kind!r} is not supported; expected one of {list(_KINDS)}"
                )
            specs.append(ColumnSpec(name=col.name, kind=cast(ColumnKind, kind), required=bool(col.required)))
        return cls(tuple(specs))

    def validate(self, payload: Any, *, max_batch: int = 1000) -> pd.DataFrame:
        """Return the records as a DataFrame in signature order, or raise InputError listing every problem."""
        if max_batch < 1:
            raise ValueError(f"max_batch: got {max_batch}; expected at least 1")
        records, loc_prefix = _records(payload, max_batch)
        columns: list[list[Any]] = [[] for _ in self.columns]
        problems: list[dict[str, Any]] = []
        truncated = False
        for index, record in enumerate(records):
            loc: Loc = [*loc_prefix, index] if loc_prefix is not None else ["records"]
            if not self._check_record(record, loc, columns, problems):
                truncated = True
                break
        if problems:
            raise InputError(problems[:MAX_PROBLEMS], truncated=truncated or len(problems) > MAX_PROBLEMS)
        return self._frame(columns, len(records))

    def _check_record(self, record: Any, loc: Loc, columns: list[list[Any]], problems: list[dict[str, Any]]) -> bool:
        """Append the record's converted values to ``columns``; False once the problem cap is passed."""
        if not isinstance(record, dict):
            problems.append({"loc": loc, "msg": f"expected an object of column values, got {_json_type(record)}"})
            return len(problems) <= MAX_PROBLEMS
        plan = self._plan
        unknown = record.keys() - plan.names
        if unknown:
            expected = self.names
            for key in sorted(unknown, key=str)[:MAX_PROBLEMS]:
                problems.append({"loc": [*loc, key], "msg": f"unknown field; expected one of {expected}"})
        for (name, convert, required, absent), values in zip(plan.steps, columns, strict=True):
            value = record.get(name, _ABSENT)
            if value is _ABSENT:
                if required:
                    problems.append({"loc": [*loc, name], "msg": "field required"})
                values.append(absent)
                continue
            try:
                values.append(convert(value))
            except _Reject as exc:
                problems.append({"loc": [*loc, name], "msg": str(exc)})
        return len(problems) <= MAX_PROBLEMS

    def _frame(self, columns: list[list[Any]], n_rows: int) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        arrays = []
        for spec, values in zip(self.columns, columns, strict=True):
            dtype = _DTYPES[spec.kind]
            if not spec.required and dtype in ("int64", "int32", "bool") and None in values:
                dtype = "object"  # an optional int/bool column with gaps: keep None rather than invent a value
            arrays.append(np.array(values, dtype=dtype))
        return _frame_from_arrays(arrays, self.names, pd.RangeIndex(n_rows), fast=True)


def _frame_from_arrays(arrays: list[Any], names: list[str], index: Any, *, fast: bool) -> pd.DataFrame:
    """One DataFrame from ready 1-D arrays of the right length and dtype.

    The public dict constructor re-sanitises every column and costs ~37 us for 7 columns, most of
    a one-record request; pandas' ``DataFrame._from_arrays(verify_integrity=False)`` skips that
    (~23 us). It is private, so it is only a fast path: if it is gone or its signature changes,
    the public constructor answers (tests check both give equal frames).
    """
    import pandas as pd

    from_arrays = getattr(pd.DataFrame, "_from_arrays", None) if fast else None
    if from_arrays is not None:
        try:
            frame: pd.DataFrame = from_arrays(arrays, columns=names, index=index, verify_integrity=False)
            return frame
        except TypeError:
            pass
    return pd.DataFrame(dict(zip(names, arrays, strict=True)), index=index, copy=False)


def _json_type(value: Any) -> str:
    """Name the JSON type a client sent, not the Python one."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _records(payload: Any, max_batch: int) -> tuple[list[Any], Loc | None]:
    """The list of records and the loc prefix for their problems (None for a single record object)."""
    if not isinstance(payload, dict) or "records" not in payload:
        raise InputError([{"loc": ["body"], "msg": f"{_SHAPE}; got {_json_type(payload)}" + _keys_hint(payload)}])
    extra = sorted(set(payload) - {"records"}, key=str)[:10]
    if extra:
        raise InputError([{"loc": ["body"], "msg": f"{_SHAPE}; got unknown top-level keys {extra}"}])
    records = payload["records"]
    if isinstance(records, dict):
        return [records], None
    if not isinstance(records, list):
        got = _json_type(records)
        raise InputError([{"loc": ["records"], "msg": f"expected an array of records or one record object, got {got}"}])
    if not records:
        raise InputError([{"loc": ["records"], "msg": "expected at least one record, got an empty array"}])
    if len(records) > max_batch:
        msg = f"batch of {len(records)} records exceeds the limit of {max_batch}"
        raise InputError([{"loc": ["records"], "msg": msg}])
    return records, ["records"]


def _keys_hint(payload: Any) -> str:
    if isinstance(payload, dict):
        return f" with keys {sorted(payload, key=str)[:10]}"
    return ""
