"""Prediction-log retention: delete a model's hour partitions that are entirely older than a cutoff.

The log (see the package docstring) keeps one directory per hour and kind::

    <root>/<model>/predictions/date=YYYY-MM-DD/hour=HH/part-*.parquet
    <root>/<model>/feedback/date=YYYY-MM-DD/hour=HH/part-*.parquet

:func:`prune_partitions` deletes the hour directories of both kinds whose *whole hour* lies before
``now - retention``: an hour ``H`` goes when ``H + 1h <= now - retention``, so a partition that may still hold
a row inside the retention period stays, and with a positive retention the current hour (and anything newer)
never qualifies. The cutoff is computed once per call from ``now``.

Rules it keeps:

- **whole hours only**: an hour directory is deleted with everything in it (part files, leftover temporary
  files of a crashed writer); rows are never rewritten;
- **idempotent and safe after a partial run**: what is deleted is found by listing the store each time, so a
  re-run deletes nothing more, and a run that stopped half-way (a crash, a store error on one hour) leaves
  hours that the next run lists and deletes; an hour that disappears between listing and deleting (another
  pruner) counts as nothing deleted;
- **one storage abstraction**: everything goes through :meth:`Storage.filesystem` (a ``pyarrow.fs``
  filesystem), so local folders, ``s3://`` and ``wasbs://`` roots behave the same. On object stores
  directories are prefixes: an hour's objects are deleted under its prefix;
- **listing cost stays small**: date directories are listed first and only the hours of dates that reach
  back before the cutoff are opened, so a run after the first one lists a few directories, not the log;
- **the write-ahead log is not touched**: ``<root>/_wal`` (strict mode) holds rows not yet in Parquet, per
  process, not per hour. A row recovered from it into an hour that is already past retention lands in a
  fresh part file there and is deleted by the next run.

Bytes are counted from the listing of each deleted hour (sizes come with the listing: no extra request per
file). Plain Python: no Airflow, no pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import DataError
from airflow_mlops.prediction_log.records import KINDS, Kind, check_model, hour_of

if TYPE_CHECKING:
    from airflow_mlops.prediction_log.storage import Storage

__all__ = ["PruneResult", "PrunedHour", "prune_partitions", "retention_cutoff"]

_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_HOUR_DIR = re.compile(r"hour=(\d{2})")


@dataclass(frozen=True)
class PrunedHour:
    """One hour partition of one kind that was (or, in a dry run, would be) deleted."""

    kind: Kind
    hour: datetime
    path: str  # as users see it: the storage's uri + the partition's relative path
    files: int
    bytes: int


@dataclass(frozen=True)
class PruneResult:
    """What one prune of one model deleted (``dry_run``: what it would delete)."""

    model: str
    cutoff: datetime
    dry_run: bool = False
    hours: list[PrunedHour] = field(default_factory=list)

    @property
    def partitions(self) -> int:
        return len(self.hours)

    @property
    def files(self) -> int:
        return sum(hour.files for hour in self.hours)

    @property
    def bytes(self) -> int:
        return sum(hour.bytes for hour in self.hours)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (for XCom): counts per kind and the oldest/newest hour deleted, not every path."""
        per_kind = {kind: sum(1 for hour in self.hours if hour.kind == kind) for kind in KINDS}
        hours = sorted(hour.hour for hour in self.hours)
        return {
            "model": self.model,
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "partitions": self.partitions,
            "partitions_by_kind": per_kind,
            "files": self.files,
            "bytes": self.bytes,
            "oldest_hour": hours[0].isoformat() if hours else None,
            "newest_hour": hours[-1].isoformat() if hours else None,
        }


def retention_cutoff(now: datetime, retention: timedelta) -> datetime:
    """Hours that end at or before this instant are past retention: ``now - retention``.

    :raises ValueError: ``now`` is naive, or ``retention`` is not positive (it would reach the current hour).
    """
    if now.utcoffset() is None:
        raise ValueError(f"now={now!r} is naive; pass a timezone-aware datetime (UTC)")
    if retention <= timedelta(0):
        raise ValueError(f"retention must be a positive duration, got {retention!r}")
    return now.astimezone(UTC) - retention


def prune_partitions(
    storage: Storage, model: str, retention: timedelta, *, now: datetime | None = None, dry_run: bool = False
) -> PruneResult:
    """Delete ``model``'s prediction and feedback hour partitions that ended at or before ``now - retention``.

    :param storage: the log's root (:class:`~airflow_mlops.prediction_log.storage.LocalStorage`, or one built by
        ``airflow_mlops.hooks.object_storage.prediction_log_storage``).
    :param retention: how long hours are kept; must be positive.
    :param now: the instant the cutoff is measured from (default: the current time).
    :param dry_run: list what would be deleted, delete nothing.
    :raises DataError: the store cannot be listed, or an hour cannot be deleted (hours deleted before it
        stay deleted; a re-run continues).
    """
    check_model(model, "Cannot prune the prediction log")
    cutoff = retention_cutoff(now or datetime.now(UTC), retention)
    pruner = _Pruner(storage, dry_run)
    result = PruneResult(model=model, cutoff=cutoff, dry_run=dry_run)
    for kind in KINDS:
        result.hours.extend(pruner.prune_kind(kind, f"{model}/{kind}", hour_of(cutoff) - timedelta(hours=1)))
    return result


class _Pruner:
    """Lists and deletes hour directories through the storage's ``pyarrow.fs`` filesystem."""

    def __init__(self, storage: Storage, dry_run: bool) -> None:
        self.fs, self.base = storage.filesystem()
        self.uri = storage.uri
        self.dry_run = dry_run

    def prune_kind(self, kind: Kind, rel_kind: str, last_hour: datetime) -> list[PrunedHour]:
        """Every hour up to and including ``last_hour`` (the newest hour that ended by the cutoff)."""
        pruned = []
        for date_name in self.subdirs(rel_kind):
            day = _parse_date(date_name)
            if day is None or day > last_hour:  # not ours, or not a single hour of it is old enough
                continue
            rel_date = f"{rel_kind}/{date_name}"
            for hour_name in self.subdirs(rel_date):
                hour = _parse_hour(day, hour_name)
                if hour is not None and hour <= last_hour:
                    deleted = self.delete_hour(kind, hour, f"{rel_date}/{hour_name}")
                    if deleted is not None:
                        pruned.append(deleted)
            if day + timedelta(hours=23) <= last_hour:
                self.delete_if_empty(rel_date)  # else every later run would list an empty day again
        return pruned

    def delete_hour(self, kind: Kind, hour: datetime, rel: str) -> PrunedHour | None:
        """Delete one hour directory with everything in it; ``None`` when it was already gone."""
        import pyarrow.fs as pafs

        path = f"{self.base}/{rel}"
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
            files = [info for info in infos if info.type == pafs.FileType.File]
            if not self.dry_run:
                self.fs.delete_dir(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DataError(f"Cannot delete prediction-log partition {self.uri + '/' + rel!r}: {_first(exc)}") from exc
        size = sum(info.size or 0 for info in files)
        return PrunedHour(kind=kind, hour=hour, path=f"{self.uri}/{rel}", files=len(files), bytes=size)

    def delete_if_empty(self, rel: str) -> None:
        """Remove a date directory left empty (object stores have none: their prefixes vanish by themselves)."""
        if self.dry_run:
            return
        import pyarrow.fs as pafs

        path = f"{self.base}/{rel}"
        try:
            if self.fs.get_file_info(path).type != pafs.FileType.Directory:
                return  # an object store's prefix with nothing left under it is gone already
            if not self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                self.fs.delete_dir(path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            raise DataError(f"Cannot delete the empty directory {self.uri + '/' + rel!r}: {_first(exc)}") from exc

    def subdirs(self, rel: str) -> list[str]:
        """Names of the directories directly under ``rel`` (none when it does not exist), sorted."""
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(f"{self.base}/{rel}", allow_not_found=True))
        except (OSError, ValueError) as exc:
            raise DataError(f"Cannot list {self.uri + '/' + rel!r}: {_first(exc)}") from exc
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def _parse_date(name: str) -> datetime | None:
    """``date=YYYY-MM-DD`` -> its midnight (UTC); anything else is not a partition of ours."""
    match = _DATE_DIR.fullmatch(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_hour(day: datetime, name: str) -> datetime | None:
    match = _HOUR_DIR.fullmatch(name)
    if match is None or int(match.group(1)) > 23:
        return None
    return day + timedelta(hours=int(match.group(1)))


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
