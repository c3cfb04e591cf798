"""Reading the prediction log: part files found and read with ``pyarrow.dataset``, through a storage.

The part files of one model and kind form a hive-partitioned dataset (``date=YYYY-MM-DD/hour=HH``, both kept
as strings). Only names ``date=.../hour=.../part-*.parquet`` count; temporary files start with ``.``.

Every reader keeps the same rules:

- bounds are timezone-aware and the window is ``start <= ts < end``; whole hours outside it are pruned by
  their partition keys before any file is opened, rows are filtered by ``ts`` while scanning;
- a row written twice (recovery after a crash between writing Parquet and deleting the WAL) has one
  ``row_id``, and only its first copy is kept;
- rows come back sorted by ``ts`` (stable: equal times keep partition, file and row order), with exactly
  the record's columns and fixed dtypes (``ts`` is ``datetime64[us, UTC]``), even when nothing matches;
- a part file that is not Parquet is a :class:`~airflow_mlops.exceptions.DataError` naming it.

Paths handed out (:func:`list_partitions`, :func:`hour_partitions`) are the storage's ``uri`` plus the
part's relative path: local paths for a local root, URIs for an object store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from airflow_mlops.exceptions import DataError
from airflow_mlops.prediction_log.records import KINDS, ROW_ID, Kind, check_model, columns, hour_of, schema
from airflow_mlops.prediction_log.storage import list_files

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    from airflow_mlops.prediction_log.storage import Storage

__all__ = [
    "count_prediction_parts",
    "hour_partitions",
    "list_partitions",
    "read_feedback",
    "read_prediction_parts",
    "read_predictions",
]

_PART = re.compile(r"date=\d{4}-\d{2}-\d{2}/hour=\d{2}/part-[^/]+\.parquet")


def list_partitions(storage: Storage, model: str, kind: Kind = "predictions") -> list[str]:
    """Every part file of ``model``'s ``kind`` (local paths or URIs), oldest partition first."""
    parts = _Parts(storage, model, kind)
    return [parts.display(fragment.path) for fragment in parts.dataset.get_fragments()]


def hour_partitions(
    storage: Storage, model: str, start: datetime | None = None, end: datetime | None = None
) -> list[list[str]]:
    """The prediction part files of each hour partition overlapping ``[start, end)``, oldest hour first.

    An hour's files belong together (rows written twice by a recovery share an hour), so a reader that
    handles whole hours deduplicates exactly; monitoring maps one task over each hour.
    """
    import pyarrow.dataset as ds

    _check_bounds(start, end)
    parts = _Parts(storage, model, "predictions")
    groups: dict[tuple[str, str], list[str]] = {}
    for fragment in parts.dataset.get_fragments(filter=_hour_filter(start, end)):
        keys = ds.get_partition_keys(fragment.partition_expression)
        groups.setdefault((keys["date"], keys["hour"]), []).append(parts.display(fragment.path))
    return [groups[key] for key in sorted(groups)]


def read_predictions(
    storage: Storage,
    model: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Logged predictions with ``start <= ts < end`` (UTC-aware bounds), sorted by ``ts``, duplicates removed.

    :param columns: Only these record columns (``ts`` is always read, for the window and the order): a
        reader that needs no inputs or outputs does not load them.
    """
    return _read(storage, model, "predictions", start, end, columns)


def read_feedback(
    storage: Storage, model: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Logged labels with ``start <= ts < end`` (UTC-aware bounds), sorted by ``ts``, duplicates removed."""
    return _read(storage, model, "feedback", start, end)


def read_prediction_parts(
    storage: Storage, paths: Sequence[str], start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """The rows of the given prediction part files (as :func:`hour_partitions` returns them) in ``[start, end)``."""
    _check_bounds(start, end)
    dataset, display = _part_dataset(storage, paths)
    return _to_frame(_scan(dataset, _row_filter(start, end), "predictions", display), "predictions")


def count_prediction_parts(storage: Storage, paths: Sequence[str]) -> int:
    """How many rows the given prediction part files hold, from their Parquet footers (no data is read)."""
    if not paths:
        return 0
    dataset, _ = _part_dataset(storage, paths)
    try:
        return int(dataset.count_rows())
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot count the rows of prediction-log part files under {storage.uri}: {exc}") from exc


def _part_dataset(storage: Storage, paths: Sequence[str]) -> tuple[ds.Dataset, _Display]:
    import pyarrow.dataset as ds

    fs, base = storage.filesystem()
    prefix = storage.uri + "/"
    outside = [path for path in paths if not path.startswith(prefix)]
    if outside:
        raise ValueError(f"Prediction-log part file {outside[0]!r} is not under the log root {storage.uri!r}")
    files = [f"{base}/{path[len(prefix) :]}" for path in paths]
    dataset = ds.dataset(files, schema=schema("predictions"), format="parquet", filesystem=fs)
    return dataset, _Display(storage.uri, base)


# --- the dataset of one model and kind ----------------------------------------------------------------------


class _Parts:
    """The part files of ``model``'s ``kind`` as a hive-partitioned dataset, in partition then name order."""

    def __init__(self, storage: Storage, model: str, kind: Kind) -> None:
        import pyarrow as pa
        import pyarrow.dataset as ds

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        check_model(model, "Cannot read the prediction log")
        fs, base, files = list_files(storage, f"{model}/{kind}")
        directory = f"{base}/{model}/{kind}"
        paths = [path for path in files if _PART.fullmatch(path[len(directory) + 1 :])]
        partitioning = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.string())]), flavor="hive")
        self.kind = kind
        self.display = _Display(storage.uri, base)
        self.dataset = ds.dataset(
            paths,
            schema=pa.unify_schemas([schema(kind), partitioning.schema]),
            format="parquet",
            filesystem=fs,
            partitioning=partitioning,
            partition_base_dir=directory,
        )


class _Display:
    """Turns a path of the storage's filesystem into the path or URI users see."""

    def __init__(self, uri: str, base: str) -> None:
        self._uri, self._base = uri, base

    def __call__(self, path: str) -> str:
        return self._uri + path[len(self._base) :]


def _read(
    storage: Storage,
    model: str,
    kind: Kind,
    start: datetime | None,
    end: datetime | None,
    selected: Sequence[str] | None = None,
) -> pd.DataFrame:
    _check_bounds(start, end)
    wanted = _selected(kind, selected)
    parts = _Parts(storage, model, kind)
    window = _both(_hour_filter(start, end), _row_filter(start, end))
    return _to_frame(_scan(parts.dataset, window, kind, parts.display, wanted), kind, wanted)


def _selected(kind: Kind, selected: Sequence[str] | None) -> list[str]:
    every = list(columns(kind))
    if selected is None:
        return every
    unknown = [name for name in selected if name not in every]
    if unknown:
        raise ValueError(f"unknown {kind} columns {unknown}; expected some of {every}")
    return [name for name in every if name in selected or name == "ts"]


def _scan(
    dataset: ds.Dataset, window: ds.Expression | None, kind: Kind, display: _Display, wanted: list[str] | None = None
) -> pa.Table:
    """The rows of ``dataset`` in ``window``; a file that cannot be parsed is named in the error."""
    import pyarrow as pa

    names = [*(wanted or columns(kind)), ROW_ID]
    try:
        return dataset.to_table(columns=names, filter=window)
    except (pa.ArrowInvalid, OSError) as exc:
        # The scan's error often does not say which file: read them one by one to name it.
        for fragment in dataset.get_fragments(filter=window):
            try:
                fragment.to_table(schema=dataset.schema, columns=names)
            except (pa.ArrowInvalid, OSError) as part_exc:
                raise DataError(
                    f"Cannot parse prediction-log part file {display(fragment.path)!r} as Parquet: {part_exc}"
                ) from exc
        raise DataError(f"Cannot read prediction-log part files of {kind}: {exc}") from exc


def _to_frame(table: pa.Table, kind: Kind, wanted: list[str] | None = None) -> pd.DataFrame:
    frame = table.to_pandas()
    frame = frame.drop_duplicates(subset=[ROW_ID]).sort_values("ts", kind="stable")
    return frame[wanted or list(columns(kind))].reset_index(drop=True)


# --- the window ----------------------------------------------------------------------------------------------


def _check_bounds(start: datetime | None, end: datetime | None) -> None:
    for name, bound in (("start", start), ("end", end)):
        if bound is not None and bound.utcoffset() is None:
            raise ValueError(f"{name}={bound!r} is naive; pass a timezone-aware datetime (UTC)")


def _hour_filter(start: datetime | None, end: datetime | None) -> ds.Expression | None:
    """Hour partitions overlapping ``[start, end)``: from ``start``'s hour up to, not including, ``end`` rounded up.

    The keys are zero-padded strings, so (date, hour) compares like the time it names.
    """
    import pyarrow.dataset as ds

    date, hour = ds.field("date"), ds.field("hour")
    window: ds.Expression | None = None
    if start is not None:
        first = hour_of(start)
        window = (date > f"{first:%Y-%m-%d}") | ((date == f"{first:%Y-%m-%d}") & (hour >= f"{first:%H}"))
    if end is not None:
        after = hour_of(end) if hour_of(end) == end else hour_of(end) + timedelta(hours=1)
        before_end = (date < f"{after:%Y-%m-%d}") | ((date == f"{after:%Y-%m-%d}") & (hour < f"{after:%H}"))
        window = _both(window, before_end)
    return window


def _row_filter(start: datetime | None, end: datetime | None) -> ds.Expression | None:
    import pyarrow as pa
    import pyarrow.dataset as ds

    ts, utc = ds.field("ts"), pa.timestamp("us", tz="UTC")
    window: ds.Expression | None = None
    if start is not None:
        window = ts >= pa.scalar(start, type=utc)
    if end is not None:
        window = _both(window, ts < pa.scalar(end, type=utc))
    return window


def _both(first: ds.Expression | None, second: ds.Expression | None) -> ds.Expression | None:
    if first is None or second is None:
        return first if second is None else second
    return first & second
