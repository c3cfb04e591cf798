"""Drift statistics between a stored reference and new data, from per-partition summaries that merge by addition.

The flow the monitor DAG uses::

    reference = build_reference(columns, categorical=["merchant_category"])   # once, stored as JSON
    parts = [summarize(reference, chunk) for chunk in partitions]              # one task per partition
    scores = drift_scores(reference, merge(parts))                             # per feature
    verdict = decide(scores, thresholds={"amount": {"psi_warn": 0.2, "psi_act": 0.4}}, drifted_share=0.5)

Everything on the hot path is numpy (``np.sort``, ``np.searchsorted``, ``np.unique``) plus
``collections.Counter`` for string categories; pandas is never imported and scipy only inside
:func:`drift_scores`, for two p-value functions.

**Missing values.** ``NaN`` (numeric) and ``None`` / ``NaN`` / ``pd.NA`` / ``NaT`` (categorical) are
counted apart from the distribution: they are excluded from every statistic and reported as
``nan_share``. A column with no non-missing values (in the reference or in the current data) gets
status ``"no_data"`` and a message, never an exception. ``±inf`` are ordinary values (end bins).

**PSI, numeric.** The bins are equal-frequency bins of the reference: the cut points are its deciles
(``inverted_cdf`` quantiles, i.e. actual reference values: decile ``d`` is the ``ceil(n*d/10)``-th
smallest value). Bin ``i`` is ``(edge[i-1], edge[i]]``; values below the first edge fall in the first
bin and values above the last edge in the last, so there are ``len(edges) + 1`` bins, 10 for
continuous data. *Ties*: when two or more deciles are the same value ``v`` the reference has a point
mass of at least ~10 % there; duplicate cut points are dropped and ``v`` gets a bin of its own,
``(prev_float(v), v] = {v}``. A 95 %-zero column thus gets the bins ``< 0``, ``== 0``, ``> 0`` and a
constant column ``c`` gets ``< c``, ``== c``, ``> c`` (so any move away from ``c`` shows up), instead
of one bin that hides every change.

**PSI formula.** With reference proportions ``e`` and current proportions ``a`` per bin, both floored
at :data:`EPSILON` (``1e-4``; no renormalisation) so empty bins stay finite::

    PSI = sum((a - e) * ln(a / e))

The floor caps one empty bin's contribution at about ``p * ln(p / 1e-4)`` (0.46 for ``p = 0.1``).

**PSI, categorical.** The bins are the reference's categories (compared as ``str(value)``) plus one
*unseen* bucket whose reference proportion is 0, floored to :data:`EPSILON`; a brand-new category in
the current data therefore raises PSI and is reported as ``unseen_share``.

**KS.** The exact two-sample statistic needs both samples. The mergeable summary instead counts the
current values per cell of a fixed grid of reference quantiles at levels ``k/K`` (``K`` =
:data:`KS_GRID_SIZE` = 1000), each grid point ``g`` isolated in a cell ``(prev_float(g), g]`` of its
own. Both empirical CDFs are then known exactly at every cell end, and ``D_grid`` (the largest gap
there) satisfies::

    D_grid <= D_exact <= D_grid + B,    B = largest reference mass inside one cell <= 1/K

(the reference CDF rises by less than ``1/K`` strictly between consecutive grid quantiles and by at
most ``1/K`` above the last one, whatever the ties). ``B`` is reported per feature as
``ks_error_bound``. The p-value is the asymptotic Kolmogorov distribution,
``scipy.special.kolmogorov(sqrt(n*m/(n+m)) * D_grid)``.

**Categorical tests.** Pearson's chi-square test of homogeneity on the 2 x (categories + unseen)
table of reference and current counts, without Yates' correction (columns empty in both rows are
dropped; p-value from ``scipy.special.chdtrc``), and the Jensen-Shannon distance (base 2, in
``[0, 1]``) between the two proportion vectors.

**Merging.** A :class:`ColumnSummary` holds only integer counts, and :func:`merge` adds them, so the
merged counts equal the single-pass counts and PSI, chi-square, JS and the grid KS computed from them
are bit-for-bit the single-pass values.

**Decisions.** A feature's status comes from its PSI alone (``>= psi_act`` -> ``"act"``, ``>= psi_warn``
-> ``"warn"``, default 0.1 / 0.25): with the row counts monitoring sees, KS and chi-square p-values are
near zero for practically irrelevant shifts, so they are reported, not used to decide. A feature counts
as *drifted* for the dataset verdict from ``"warn"`` up (PSI >= 0.1, the classic "some shift" line;
``drifted_at="act"`` counts only the significant ones); the dataset has drifted when the drifted share
of the features that had data reaches ``drifted_share`` (default 0.5, as in evidently).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from airflow_mlops.exceptions import DataError

__all__ = [
    "EPSILON",
    "KS_GRID_SIZE",
    "CategoricalReference",
    "ColumnSummary",
    "DatasetDrift",
    "DriftReference",
    "DriftThresholds",
    "FeatureDrift",
    "NumericReference",
    "build_reference",
    "decide",
    "drift_scores",
    "merge",
    "psi",
    "summarize",
]

EPSILON = 1e-4
"""Floor applied to every bin proportion (reference and current) before PSI, so empty bins stay finite."""
KS_GRID_SIZE = 1000
"""Default number ``K`` of reference-quantile levels in the KS grid; the KS error bound is at most ``1/K``."""
N_DECILES = 10
FORMAT = "airflow-mlops/drift-reference"
FORMAT_VERSION = 1
MAX_UNSEEN_EXAMPLES = 10

Kind: TypeAlias = Literal["numeric", "categorical"]
Status: TypeAlias = Literal["ok", "warn", "act", "no_data"]
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]


# --- small helpers -------------------------------------------------------------------------------------------


def _frozen(array: npt.ArrayLike, dtype: type[np.float64] | type[np.int64]) -> Any:
    out = np.array(array, dtype=dtype)  # always a copy: callers cannot mutate what we keep
    out.flags.writeable = False
    return out


def _floats_out(values: FloatArray) -> list[float | str]:
    """JSON-safe floats: ``inf``/``-inf`` become strings (strict JSON has no Infinity)."""
    return [v if math.isfinite(v) else str(v) for v in values.tolist()]


def _floats_in(values: Iterable[float | str]) -> FloatArray:
    return np.array([float(v) for v in values], dtype=np.float64)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _isolate_below(values: FloatArray) -> FloatArray:
    """``values`` plus the float just below each one, sorted and unique: cell ``(prev(v), v]`` holds only ``v``."""
    return np.unique(np.concatenate([values, np.nextafter(values, -np.inf)]))


def _order_stat_indices(n: int, levels: int) -> npt.NDArray[np.int64]:
    """0-based indices of the ``inverted_cdf`` quantiles at ``k/levels``, ``k = 1..levels-1``, in integers."""
    k = np.arange(1, levels, dtype=np.int64)
    return (n * k + levels - 1) // levels - 1


def _cumulative_counts(sorted_values: FloatArray, cell_ends: FloatArray) -> IntArray:
    """Number of values ``<= end`` for each cell end (one binary search per end, not per value)."""
    return np.searchsorted(sorted_values, cell_ends, side="right").astype(np.int64)


def _diff_counts(cumulative: IntArray, total: int) -> IntArray:
    return np.diff(cumulative, prepend=0, append=total).astype(np.int64)


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, epsilon: float = EPSILON) -> float:
    """Population Stability Index ``sum((a - e) * ln(a / e))`` of two proportion vectors floored at ``epsilon``.

    :param expected: reference proportions per bin.
    :param actual: current proportions per bin, same length.
    :param epsilon: floor for every proportion (no renormalisation after flooring).
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"psi: expected and actual differ in shape ({e.shape} vs {a.shape})")
    return float(np.sum((a - e) * np.log(a / e)))


# --- references ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NumericReference:
    """What the reference looked like for one numeric column: decile bins and a fine KS grid, as counts.

    :param name: column name.
    :param edges: inner cut points of the PSI bins, ascending; bin ``i`` is ``(edges[i-1], edges[i]]``.
    :param counts: reference values per PSI bin (``len(edges) + 1`` integers).
    :param grid: distinct reference quantiles at levels ``k/K`` (``inverted_cdf``) used for KS.
    :param grid_counts: reference values per KS cell (``len(cell_ends) + 1`` integers).
    :param n: non-missing reference values.
    :param nan_count: missing (NaN) reference values.
    """

    name: str
    edges: FloatArray
    counts: IntArray
    grid: FloatArray
    grid_counts: IntArray
    n: int
    nan_count: int
    cell_ends: FloatArray = field(init=False, repr=False)
    """KS cell right ends: ``grid`` plus ``prev_float(g)`` for each grid point (derived, not stored)."""
    edge_positions: npt.NDArray[np.intp] = field(init=False, repr=False)
    """Index in ``cell_ends`` of each PSI edge (every edge is a cell end, so PSI counts are sums of cells)."""

    kind: Kind = field(default="numeric", init=False)

    def __post_init__(self) -> None:
        for name, dtype in (("edges", np.float64), ("counts", np.int64), ("grid", np.float64)):
            object.__setattr__(self, name, _frozen(getattr(self, name), dtype))
        object.__setattr__(self, "grid_counts", _frozen(self.grid_counts, np.int64))
        cell_ends = _isolate_below(self.grid)
        cell_ends.flags.writeable = False
        positions = np.searchsorted(cell_ends, self.edges)
        problems = []
        if self.counts.shape != (len(self.edges) + 1,) or self.grid_counts.shape != (len(cell_ends) + 1,):
            problems.append("counts do not match edges/grid")
        elif int(self.counts.sum()) != self.n or int(self.grid_counts.sum()) != self.n:
            problems.append(f"counts do not add up to n={self.n}")
        if len(self.edges) and (positions.max() >= len(cell_ends) or np.any(cell_ends[positions] != self.edges)):
            problems.append("edges are not points of the KS grid")
        if problems:
            raise ValueError(f"NumericReference {self.name!r}: {'; '.join(problems)}")
        object.__setattr__(self, "cell_ends", cell_ends)
        object.__setattr__(self, "edge_positions", positions)

    @property
    def expected(self) -> FloatArray:
        """Reference proportion per PSI bin (before the :data:`EPSILON` floor)."""
        return self.counts / self.n if self.n else np.zeros(len(self.counts))

    @property
    def nan_share(self) -> float:
        """Share of reference rows that were missing."""
        return _share(self.nan_count, self.n + self.nan_count)

    @property
    def ks_error_bound(self) -> float:
        """Largest reference mass strictly inside one KS cell: ``D_grid <= D_exact <= D_grid + this`` (<= 1/K)."""
        if not self.n:
            return 0.0
        lower = np.concatenate([[-np.inf], self.cell_ends])
        upper = np.concatenate([self.cell_ends, [np.inf]])
        has_interior = np.nextafter(lower, np.inf) < upper
        return float(self.grid_counts[has_interior].max(initial=0)) / self.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "nan_count": self.nan_count,
            "edges": _floats_out(self.edges),
            "counts": self.counts.tolist(),
            "grid": _floats_out(self.grid),
            "grid_counts": self.grid_counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericReference:
        return cls(
            name=str(data["name"]),
            edges=_floats_in(data["edges"]),
            counts=np.array(data["counts"], dtype=np.int64),
            grid=_floats_in(data["grid"]),
            grid_counts=np.array(data["grid_counts"], dtype=np.int64),
            n=int(data["n"]),
            nan_count=int(data["nan_count"]),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumericReference) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class CategoricalReference:
    """What the reference looked like for one categorical column: counts per category (``str(value)``).

    :param name: column name.
    :param categories: reference categories, sorted.
    :param counts: reference values per category.
    :param n: non-missing reference values.
    :param nan_count: missing reference values.
    """

    name: str
    categories: tuple[str, ...]
    counts: IntArray
    n: int
    nan_count: int
    index: Mapping[str, int] = field(init=False, repr=False)
    kind: Kind = field(default="categorical", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "counts", _frozen(self.counts, np.int64))
        object.__setattr__(self, "index", {category: i for i, category in enumerate(self.categories)})
        if len(self.index) != len(self.categories) or self.counts.shape != (len(self.categories),):
            raise ValueError(f"CategoricalReference {self.name!r}: categories must be unique, one count each")
        if int(self.counts.sum()) != self.n:
            raise ValueError(f"CategoricalReference {self.name!r}: counts do not add up to n={self.n}")

    @property
    def expected(self) -> FloatArray:
        """Reference proportion per category (before the :data:`EPSILON` floor)."""
        return self.counts / self.n if self.n else np.zeros(len(self.counts))

    @property
    def nan_share(self) -> float:
        return _share(self.nan_count, self.n + self.nan_count)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "nan_count": self.nan_count,
            "categories": list(self.categories),
            "counts": self.counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalReference:
        return cls(
            name=str(data["name"]),
            categories=tuple(str(c) for c in data["categories"]),
            counts=np.array(data["counts"], dtype=np.int64),
            n=int(data["n"]),
            nan_count=int(data["nan_count"]),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoricalReference) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


ColumnReference: TypeAlias = NumericReference | CategoricalReference


@dataclass(frozen=True, eq=False)
class DriftReference:
    """The reference side of drift detection for a set of columns; JSON-serialisable with :meth:`to_dict`.

    :param columns: per-column references, in column order.
    :param epsilon: PSI proportion floor used when scoring against this reference.
    :param ks_grid_size: ``K``, the number of quantile levels of the KS grids.
    """

    columns: Mapping[str, ColumnReference]
    epsilon: float = EPSILON
    ks_grid_size: int = KS_GRID_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", dict(self.columns))
        for key, column in self.columns.items():
            if key != column.name:
                raise ValueError(f"DriftReference: column stored under {key!r} is named {column.name!r}")

    def __getitem__(self, name: str) -> ColumnReference:
        return self.columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(name for name, column in self.columns.items() if column.kind == "numeric")

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(name for name, column in self.columns.items() if column.kind == "categorical")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (only str, int, float, list, dict); :meth:`from_dict` restores it exactly."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "epsilon": self.epsilon,
            "ks_grid_size": self.ks_grid_size,
            "columns": [column.to_dict() for column in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"DriftReference.from_dict: got format={data.get('format')!r} version={data.get('version')!r}; "
                f"expected format={FORMAT!r} version={FORMAT_VERSION} (a dict made by DriftReference.to_dict)"
            )
        columns: dict[str, ColumnReference] = {}
        for item in data["columns"]:
            column: ColumnReference
            if item["kind"] == "numeric":
                column = NumericReference.from_dict(item)
            elif item["kind"] == "categorical":
                column = CategoricalReference.from_dict(item)
            else:
                raise ValueError(
                    f"DriftReference.from_dict: column kind={item['kind']!r}; expected numeric/categorical"
                )
            columns[column.name] = column
        return cls(columns=columns, epsilon=float(data["epsilon"]), ks_grid_size=int(data["ks_grid_size"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DriftReference) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _one_dimensional(name: str, values: npt.ArrayLike) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"column {name!r}: expected a 1-D array, got shape {array.shape}")
    return array


def _as_floats(name: str, array: npt.NDArray[Any]) -> FloatArray:
    """float64 values; object arrays may hold ``None`` / ``pd.NA`` (pandas nullable dtypes), which become NaN."""
    try:
        if array.dtype.kind in "USV":
            raise TypeError("strings are not numbers")
        if array.dtype.kind == "O":
            return np.array([math.nan if _is_missing(v) else v for v in array.tolist()], dtype=np.float64)
        return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"column {name!r}: values of dtype {array.dtype} are not numbers ({exc}); "
            "list the column in `categorical` if it holds categories"
        ) from exc


def _numeric_values(name: str, values: npt.ArrayLike) -> tuple[FloatArray, int]:
    """Sorted non-missing values as float64, and the number of NaNs."""
    floats = _as_floats(name, _one_dimensional(name, values))
    missing = np.isnan(floats)
    nan_count = int(missing.sum())
    present = floats[~missing] if nan_count else floats
    return np.sort(present), nan_count


def _is_missing(value: object) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return type(value).__name__ in ("NAType", "NaTType")  # pandas' missing markers, without importing pandas


def _category_counts(name: str, values: npt.ArrayLike) -> tuple[dict[str, int], int]:
    """Counts per category label (``str(value)``) and the number of missing values."""
    array = _one_dimensional(name, values)
    nan_count = 0
    raw: Iterable[tuple[Any, int]]
    if array.dtype.kind in "biuf":  # numbers used as codes: np.unique sorts, no Python loop per value
        if array.dtype.kind == "f":
            missing = np.isnan(array)
            nan_count = int(missing.sum())
            array = array[~missing]
        uniques, counts = np.unique(array, return_counts=True)
        raw = zip(uniques.tolist(), counts.tolist(), strict=True)
    else:  # str / object: hashing in C (Counter) beats sorting Python objects
        try:
            raw = Counter(array if array.dtype.kind == "O" else array.tolist()).items()
        except TypeError as exc:
            raise DataError(f"column {name!r}: categories must be hashable values ({exc})") from exc
    labelled: dict[str, int] = {}
    for value, count in raw:
        if _is_missing(value):
            nan_count += count
        else:
            label = value if isinstance(value, str) else str(value)
            labelled[label] = labelled.get(label, 0) + count
    return labelled, nan_count


def _numeric_reference(name: str, values: npt.ArrayLike, ks_grid_size: int) -> NumericReference:
    ordered, nan_count = _numeric_values(name, values)
    n = len(ordered)
    if n == 0:
        empty = np.empty(0)
        no_counts = np.zeros(1, dtype=np.int64)
        return NumericReference(name, empty, no_counts, empty, no_counts, n=0, nan_count=nan_count)
    deciles, repeats = np.unique(ordered[_order_stat_indices(n, N_DECILES)], return_counts=True)
    edges = np.unique(np.concatenate([deciles, np.nextafter(deciles[repeats > 1], -np.inf)]))
    grid = np.unique(ordered[_order_stat_indices(n, ks_grid_size)])
    cell_ends = _isolate_below(grid)
    cumulative = _cumulative_counts(ordered, cell_ends)
    positions = np.searchsorted(cell_ends, edges)
    return NumericReference(
        name=name,
        edges=edges,
        counts=_diff_counts(cumulative[positions], n),
        grid=grid,
        grid_counts=_diff_counts(cumulative, n),
        n=n,
        nan_count=nan_count,
    )


def _categorical_reference(name: str, values: npt.ArrayLike) -> CategoricalReference:
    counts, nan_count = _category_counts(name, values)
    categories = tuple(sorted(counts))
    return CategoricalReference(
        name=name,
        categories=categories,
        counts=np.array([counts[c] for c in categories], dtype=np.int64),
        n=sum(counts.values()),
        nan_count=nan_count,
    )


def build_reference(
    columns: Mapping[str, npt.ArrayLike],
    categorical: Iterable[str] = (),
    *,
    ks_grid_size: int = KS_GRID_SIZE,
    epsilon: float = EPSILON,
) -> DriftReference:
    """Describe the reference data column by column (one sort per numeric column, one count per categorical).

    :param columns: column name -> 1-D array of the reference values; every column becomes a feature.
    :param categorical: names of the columns to treat as categories; all others must be numeric.
    :param ks_grid_size: ``K`` quantile levels for the KS grid (a multiple of 10, >= 10); KS error <= ``1/K``.
    :param epsilon: PSI proportion floor stored with the reference.
    :return: a :class:`DriftReference`; ``to_dict()`` makes it JSON for an MLflow artifact or XCom.
    :raises DataError: a column is not 1-D, or a non-categorical column is not numeric.
    """
    categorical = set(categorical)
    unknown = sorted(categorical - set(columns))
    if unknown:
        raise ValueError(f"build_reference: categorical columns {unknown} are not among the columns {list(columns)}")
    if ks_grid_size < N_DECILES or ks_grid_size % N_DECILES:
        raise ValueError(f"build_reference: ks_grid_size={ks_grid_size}; expected a multiple of 10, at least 10")
    if not 0 < epsilon < 1:
        raise ValueError(f"build_reference: epsilon={epsilon}; expected 0 < epsilon < 1")
    built: dict[str, ColumnReference] = {}
    for name, values in columns.items():
        if name in categorical:
            built[name] = _categorical_reference(name, values)
        else:
            built[name] = _numeric_reference(name, values, ks_grid_size)
    return DriftReference(columns=built, epsilon=epsilon, ks_grid_size=ks_grid_size)


# --- summaries -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ColumnSummary:
    """Counts of one column of one partition against a reference; summaries merge by adding counts.

    :param name: column name.
    :param kind: ``"numeric"`` or ``"categorical"``.
    :param counts: numeric: values per PSI bin; categorical: values per reference category.
    :param nan_count: missing values.
    :param unseen_count: categorical: values of categories the reference never saw (0 for numeric).
    :param ks_counts: numeric: values per KS cell (``None`` for categorical).
    :param unseen_examples: categorical: up to 10 unseen category labels, for messages (not exact after merge).
    """

    name: str
    kind: Kind
    counts: IntArray
    nan_count: int = 0
    unseen_count: int = 0
    ks_counts: IntArray | None = None
    unseen_examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", _frozen(self.counts, np.int64))
        if self.ks_counts is not None:
            object.__setattr__(self, "ks_counts", _frozen(self.ks_counts, np.int64))
        if (self.kind == "numeric") != (self.ks_counts is not None):
            raise ValueError(f"ColumnSummary {self.name!r}: ks_counts are required for numeric columns only")

    @property
    def present(self) -> int:
        """Non-missing values (binned ones plus unseen categories)."""
        return int(self.counts.sum()) + self.unseen_count

    @property
    def n(self) -> int:
        """All rows, missing ones included."""
        return self.present + self.nan_count

    def _layout(self) -> tuple[str, str, tuple[int, ...], tuple[int, ...] | None]:
        return self.name, self.kind, self.counts.shape, None if self.ks_counts is None else self.ks_counts.shape

    def __add__(self, other: ColumnSummary) -> ColumnSummary:
        if self._layout() != other._layout():
            raise ValueError(
                f"cannot merge summaries of column {self.name!r} ({self.kind}) and {other.name!r} ({other.kind}) "
                "with different shapes: were they made against the same reference?"
            )
        ks_counts = None if self.ks_counts is None or other.ks_counts is None else self.ks_counts + other.ks_counts
        examples = tuple(sorted(set(self.unseen_examples) | set(other.unseen_examples)))[:MAX_UNSEEN_EXAMPLES]
        return ColumnSummary(
            name=self.name,
            kind=self.kind,
            counts=self.counts + other.counts,
            nan_count=self.nan_count + other.nan_count,
            unseen_count=self.unseen_count + other.unseen_count,
            ks_counts=ks_counts,
            unseen_examples=examples,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "counts": self.counts.tolist(),
            "nan_count": self.nan_count,
            "unseen_count": self.unseen_count,
            "ks_counts": None if self.ks_counts is None else self.ks_counts.tolist(),
            "unseen_examples": list(self.unseen_examples),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSummary:
        kind = data["kind"]
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"ColumnSummary.from_dict: kind={kind!r}; expected 'numeric' or 'categorical'")
        return cls(
            name=str(data["name"]),
            kind=kind,
            counts=np.array(data["counts"], dtype=np.int64),
            nan_count=int(data["nan_count"]),
            unseen_count=int(data["unseen_count"]),
            ks_counts=None if data["ks_counts"] is None else np.array(data["ks_counts"], dtype=np.int64),
            unseen_examples=tuple(str(x) for x in data["unseen_examples"]),
        )


def _summarize_numeric(reference: NumericReference, values: npt.ArrayLike) -> ColumnSummary:
    ordered, nan_count = _numeric_values(reference.name, values)
    total = len(ordered)
    cumulative = _cumulative_counts(ordered, reference.cell_ends)
    return ColumnSummary(
        name=reference.name,
        kind="numeric",
        counts=_diff_counts(cumulative[reference.edge_positions], total),
        nan_count=nan_count,
        ks_counts=_diff_counts(cumulative, total),
    )


def _summarize_categorical(reference: CategoricalReference, values: npt.ArrayLike) -> ColumnSummary:
    counts, nan_count = _category_counts(reference.name, values)
    binned = np.zeros(len(reference.categories), dtype=np.int64)
    unseen: dict[str, int] = {}
    for label, count in counts.items():
        position = reference.index.get(label)
        if position is None:
            unseen[label] = count
        else:
            binned[position] = count
    return ColumnSummary(
        name=reference.name,
        kind="categorical",
        counts=binned,
        nan_count=nan_count,
        unseen_count=sum(unseen.values()),
        unseen_examples=tuple(sorted(unseen, key=lambda label: (-unseen[label], label))[:MAX_UNSEEN_EXAMPLES]),
    )


def summarize(reference: DriftReference, chunk: Mapping[str, npt.ArrayLike]) -> dict[str, ColumnSummary]:
    """Count one partition's values against the reference: one sort per numeric column, one count per categorical.

    :param reference: the stored reference.
    :param chunk: column name -> 1-D array for every reference column (other columns are ignored).
    :return: column name -> :class:`ColumnSummary`, in reference column order; combine partitions with :func:`merge`.
    :raises DataError: a reference column is missing from the chunk, or a numeric column is not numeric.
    """
    missing = [name for name in reference.columns if name not in chunk]
    if missing:
        raise DataError(f"summarize: columns {missing} of the drift reference are missing from the data")
    summaries: dict[str, ColumnSummary] = {}
    for name, column in reference.columns.items():
        if isinstance(column, NumericReference):
            summaries[name] = _summarize_numeric(column, chunk[name])
        else:
            summaries[name] = _summarize_categorical(column, chunk[name])
    return summaries


def merge(summaries: Iterable[Mapping[str, ColumnSummary]]) -> dict[str, ColumnSummary]:
    """Add per-partition summaries column by column; the result equals the summary of all rows in one pass.

    :raises ValueError: no summaries, or they do not cover the same columns with the same shapes.
    """
    merged: dict[str, ColumnSummary] | None = None
    for part in summaries:
        if merged is None:
            merged = dict(part)
            continue
        if set(part) != set(merged):
            raise ValueError(
                f"merge: summaries cover different columns ({sorted(set(part) ^ set(merged))} in only some)"
            )
        merged = {name: merged[name] + part[name] for name in merged}
    if merged is None:
        raise ValueError("merge: got no summaries; expected at least one partition")
    return merged


# --- scores --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftThresholds:
    """PSI thresholds of one feature: ``psi >= psi_warn`` -> ``"warn"``, ``psi >= psi_act`` -> ``"act"``."""

    psi_warn: float = 0.1
    psi_act: float = 0.25

    def __post_init__(self) -> None:
        if not (math.isfinite(self.psi_warn) and math.isfinite(self.psi_act) and 0 <= self.psi_warn <= self.psi_act):
            raise ValueError(
                f"DriftThresholds: psi_warn={self.psi_warn}, psi_act={self.psi_act}; "
                "expected finite numbers with 0 <= psi_warn <= psi_act"
            )

    def status(self, psi_value: float | None) -> Status:
        if psi_value is None:
            return "no_data"
        if psi_value >= self.psi_act:
            return "act"
        return "warn" if psi_value >= self.psi_warn else "ok"

    @classmethod
    def coerce(cls, value: DriftThresholds | Mapping[str, float] | None, base: DriftThresholds) -> DriftThresholds:
        """A :class:`DriftThresholds`, or a mapping with ``psi_warn``/``psi_act`` (missing keys from ``base``)."""
        if value is None:
            return base
        if isinstance(value, DriftThresholds):
            return value
        unknown = sorted(set(value) - {"psi_warn", "psi_act"})
        if unknown:
            raise ValueError(f"drift thresholds: unknown keys {unknown}; allowed: ['psi_act', 'psi_warn']")
        return cls(
            psi_warn=float(value.get("psi_warn", base.psi_warn)), psi_act=float(value.get("psi_act", base.psi_act))
        )


@dataclass(frozen=True, kw_only=True)
class FeatureDrift:
    """Drift of one feature. Numeric features fill the ``ks_*`` fields, categorical ones ``chi2*``/``js_distance``.

    ``psi`` and the test statistics are ``None`` when ``status == "no_data"`` (see ``message``).
    ``n`` counts the current non-missing values; ``nan_share`` is the current share of missing values.
    """

    name: str
    kind: Kind
    psi: float | None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    ks_error_bound: float | None = None
    chi2: float | None = None
    chi2_pvalue: float | None = None
    chi2_dof: int | None = None
    js_distance: float | None = None
    unseen_share: float | None = None
    nan_share: float = 0.0
    reference_nan_share: float = 0.0
    n: int = 0
    status: Status = "ok"
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDrift:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def _ks(reference: NumericReference, summary: ColumnSummary) -> tuple[float, float]:
    """Grid KS statistic (a lower bound of the exact one, by less than ``ks_error_bound``) and its p-value."""
    from scipy.special import kolmogorov  # lazy: keeps scipy out of DAG parsing

    assert summary.ks_counts is not None
    n, m = reference.n, summary.present
    reference_cdf = np.cumsum(reference.grid_counts[:-1]) / n
    current_cdf = np.cumsum(summary.ks_counts[:-1]) / m
    statistic = float(np.max(np.abs(reference_cdf - current_cdf), initial=0.0))
    return statistic, float(kolmogorov(math.sqrt(n * m / (n + m)) * statistic))


def _chi_square(reference_counts: IntArray, current_counts: IntArray) -> tuple[float, int, float]:
    """Pearson chi-square test of homogeneity on the 2 x k table (no Yates correction); empty columns dropped."""
    from scipy.special import chdtrc  # lazy: keeps scipy out of DAG parsing

    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    dof = table.shape[1] - 1
    if dof < 1:
        return 0.0, 0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, dof, float(chdtrc(dof, statistic))


def _jensen_shannon(p: FloatArray, q: FloatArray) -> float:
    """Jensen-Shannon distance, base 2 (0 = same distribution, 1 = disjoint supports)."""
    middle = (p + q) / 2

    def kl(x: FloatArray) -> float:
        nonzero = x > 0
        return float(np.sum(x[nonzero] * np.log2(x[nonzero] / middle[nonzero])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def _no_data(reference: ColumnReference, summary: ColumnSummary) -> FeatureDrift | None:
    if reference.n and summary.present:
        return None
    if not reference.n:
        message = f"no data: the reference has no non-missing values ({reference.nan_count} missing)"
    else:
        message = f"no data: the current data has no non-missing values ({summary.nan_count} missing of {summary.n})"
    return FeatureDrift(
        name=reference.name,
        kind=reference.kind,
        psi=None,
        nan_share=_share(summary.nan_count, summary.n),
        reference_nan_share=reference.nan_share,
        n=summary.present,
        status="no_data",
        message=message,
    )


def _nan_message(reference_share: float, current_share: float) -> str:
    if abs(current_share - reference_share) < 0.01:
        return ""
    return f"missing share {reference_share:.1%} in the reference, {current_share:.1%} now"


def _score_numeric(reference: NumericReference, summary: ColumnSummary, epsilon: float) -> FeatureDrift:
    psi_value = psi(reference.expected, summary.counts / summary.present, epsilon)
    statistic, pvalue = _ks(reference, summary)
    nan_share = _share(summary.nan_count, summary.n)
    return FeatureDrift(
        name=reference.name,
        kind="numeric",
        psi=psi_value,
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        ks_error_bound=reference.ks_error_bound,
        nan_share=nan_share,
        reference_nan_share=reference.nan_share,
        n=summary.present,
        message=_nan_message(reference.nan_share, nan_share),
    )


def _score_categorical(reference: CategoricalReference, summary: ColumnSummary, epsilon: float) -> FeatureDrift:
    reference_counts = np.append(reference.counts, 0)
    current_counts = np.append(summary.counts, summary.unseen_count)
    expected, actual = reference_counts / reference.n, current_counts / summary.present
    chi2, dof, pvalue = _chi_square(reference_counts, current_counts)
    unseen_share = summary.unseen_count / summary.present
    nan_share = _share(summary.nan_count, summary.n)
    notes = [_nan_message(reference.nan_share, nan_share)]
    if summary.unseen_count:
        examples = ", ".join(repr(label) for label in summary.unseen_examples)
        notes.append(f"{unseen_share:.2%} of current values are categories the reference never saw (e.g. {examples})")
    return FeatureDrift(
        name=reference.name,
        kind="categorical",
        psi=psi(expected, actual, epsilon),
        chi2=chi2,
        chi2_pvalue=pvalue,
        chi2_dof=dof,
        js_distance=_jensen_shannon(expected, actual),
        unseen_share=unseen_share,
        nan_share=nan_share,
        reference_nan_share=reference.nan_share,
        n=summary.present,
        message="; ".join(note for note in notes if note),
    )


def _check_summary(reference: ColumnReference, summary: ColumnSummary) -> None:
    expected_shape = reference.counts.shape
    ks_ok = True
    if isinstance(reference, NumericReference):
        ks_ok = summary.ks_counts is not None and summary.ks_counts.shape == reference.grid_counts.shape
    if summary.kind != reference.kind or summary.counts.shape != expected_shape or not ks_ok:
        raise DataError(
            f"drift_scores: the summary of column {reference.name!r} ({summary.kind}, {len(summary.counts)} bins) "
            f"does not fit its reference ({reference.kind}, {len(reference.counts)} bins); "
            "summarize the data against the same reference"
        )


def drift_scores(
    reference: DriftReference,
    summary: Mapping[str, ColumnSummary],
    *,
    thresholds: Mapping[str, DriftThresholds | Mapping[str, float]] | None = None,
    default: DriftThresholds | Mapping[str, float] | None = None,
) -> dict[str, FeatureDrift]:
    """PSI plus KS (numeric) or chi-square and Jensen-Shannon (categorical) for every reference column.

    :param reference: the stored reference.
    :param summary: the (merged) summary of the current data, from :func:`summarize` / :func:`merge`.
    :param thresholds: per-feature PSI thresholds for ``status`` (same rules as :func:`decide`).
    :param default: thresholds of features not in ``thresholds`` (PSI 0.1 warn, 0.25 act).
    :return: feature name -> :class:`FeatureDrift`, in reference column order.
    :raises DataError: a column is missing from the summary or was summarised against another reference.
    """
    missing = [name for name in reference.columns if name not in summary]
    if missing:
        raise DataError(f"drift_scores: columns {missing} of the drift reference are missing from the summary")
    rules = _resolve_thresholds(list(reference.columns), thresholds, default)
    scores: dict[str, FeatureDrift] = {}
    for name, column in reference.columns.items():
        _check_summary(column, summary[name])
        score = _no_data(column, summary[name])
        if score is None and isinstance(column, NumericReference):
            score = _score_numeric(column, summary[name], reference.epsilon)
        elif score is None and isinstance(column, CategoricalReference):
            score = _score_categorical(column, summary[name], reference.epsilon)
        assert score is not None
        scores[name] = replace(score, status=rules[name].status(score.psi))
    return scores


# --- decisions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DatasetDrift:
    """The dataset-level verdict: ``dataset_drift`` when ``share >= drifted_share``.

    ``drifted_features`` are those whose status is ``drifted_at`` or worse; ``share`` is their number over
    the features that had data (``"no_data"`` features are listed apart and count neither way); with no
    such features it is 0 and ``dataset_drift`` is False. ``act_features`` / ``warn_features`` list the
    features by status whatever ``drifted_at`` is.
    """

    drifted_features: tuple[str, ...]
    act_features: tuple[str, ...]
    warn_features: tuple[str, ...]
    no_data_features: tuple[str, ...]
    share: float
    drifted_share: float
    drifted_at: Literal["warn", "act"]
    dataset_drift: bool
    statuses: Mapping[str, Status]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted_features": list(self.drifted_features),
            "act_features": list(self.act_features),
            "warn_features": list(self.warn_features),
            "no_data_features": list(self.no_data_features),
            "share": self.share,
            "drifted_share": self.drifted_share,
            "drifted_at": self.drifted_at,
            "dataset_drift": self.dataset_drift,
            "statuses": dict(self.statuses),
            "message": self.message,
        }


def _resolve_thresholds(
    features: list[str],
    thresholds: Mapping[str, DriftThresholds | Mapping[str, float]] | None,
    default: DriftThresholds | Mapping[str, float] | None,
) -> dict[str, DriftThresholds]:
    base = DriftThresholds.coerce(default, DriftThresholds())
    per_feature = dict(thresholds or {})
    unknown = sorted(set(per_feature) - set(features))
    if unknown:
        raise ValueError(f"drift thresholds given for unknown features {unknown}; features are {features}")
    return {name: DriftThresholds.coerce(per_feature.get(name), base) for name in features}


def decide(
    scores: Mapping[str, FeatureDrift],
    thresholds: Mapping[str, DriftThresholds | Mapping[str, float]] | None = None,
    default: DriftThresholds | Mapping[str, float] | None = None,
    drifted_share: float = 0.5,
    drifted_at: Literal["warn", "act"] = "warn",
) -> DatasetDrift:
    """Per-feature statuses from PSI thresholds, and whether enough features drifted to call it dataset drift.

    :param scores: output of :func:`drift_scores` (statuses are recomputed here from ``psi``).
    :param thresholds: feature -> :class:`DriftThresholds` or ``{"psi_warn": .., "psi_act": ..}`` (missing keys
        come from ``default``); naming a feature that is not scored is an error, to catch typos.
    :param default: thresholds of all other features (PSI 0.1 warn, 0.25 act).
    :param drifted_share: dataset drift when the share of drifted features reaches this (0 < x <= 1).
    :param drifted_at: the status from which a feature counts as drifted: ``"warn"`` (PSI >= psi_warn, default)
        or ``"act"`` (PSI >= psi_act).
    """
    if not 0 < drifted_share <= 1:
        raise ValueError(f"decide: drifted_share={drifted_share}; expected 0 < drifted_share <= 1")
    if drifted_at not in ("warn", "act"):
        raise ValueError(f"decide: drifted_at={drifted_at!r}; expected 'warn' or 'act'")
    rules = _resolve_thresholds(list(scores), thresholds, default)
    statuses: dict[str, Status] = {name: rules[name].status(score.psi) for name, score in scores.items()}
    counted: tuple[Status, ...] = ("warn", "act") if drifted_at == "warn" else ("act",)

    def having(*wanted: Status) -> tuple[str, ...]:
        return tuple(name for name, status in statuses.items() if status in wanted)

    drifted, no_data = having(*counted), having("no_data")
    evaluated = len(statuses) - len(no_data)
    share = len(drifted) / evaluated if evaluated else 0.0
    message = (
        f"{len(drifted)} of {evaluated} features drifted (PSI at {drifted_at!r} or above: {share:.0%}; "
        f"dataset drift at >= {drifted_share:.0%})"
        + (f": {', '.join(drifted)}" if drifted else "")
        + (f"; no data for {', '.join(no_data)}" if no_data else "")
    )
    return DatasetDrift(
        drifted_features=drifted,
        act_features=having("act"),
        warn_features=having("warn"),
        no_data_features=no_data,
        share=share,
        drifted_share=drifted_share,
        drifted_at=drifted_at,
        dataset_drift=bool(evaluated) and share >= drifted_share,
        statuses=statuses,
        message=message,
    )
