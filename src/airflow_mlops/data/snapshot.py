"""The exact training data of one run: one file, or the newest files of a folder, and their fingerprint.

``data.uri`` may name a file or a folder (a local directory or an object-store prefix ending in ``/``)
where new batches land. For a folder, a run trains on the files modified within
``retraining.window`` (or, with no window, the newest file). The chosen files are recorded, so every
later reader (validation, training, gates, monitoring) re-reads exactly them and checks the hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from airflow_mlops.data.fingerprint import fingerprint
from airflow_mlops.data.io import is_folder, list_data_files, read_table
from airflow_mlops.exceptions import DataError
from airflow_mlops.vocabulary import Tag

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Snapshot:
    frame: pd.DataFrame
    files: tuple[str, ...]
    #: One file: the sha256 of its bytes. Several: the sha256 of "<sha256 of file>  <file>\n" lines, sorted by file.
    sha256: str


def choose_files(
    uri: str, conn_id: str | None, window: timedelta | None, now: datetime | None = None
) -> tuple[str, ...]:
    """``(uri,)`` for a file; for a folder, the files modified within ``window`` (newest only without one)."""
    if not is_folder(uri):
        return (uri,)
    listed = list_data_files(uri, conn_id)
    if not listed:
        raise DataError(f"{uri!r} is a folder with no .csv/.parquet files to train on")
    if window is None:
        return (listed[-1][0],)
    since = (now or datetime.now(UTC)) - window
    chosen = tuple(name for name, modified in listed if modified >= since)
    if not chosen:
        raise DataError(
            f"{uri!r}: no data file modified within the last {window} (newest: {listed[-1][1]:%Y-%m-%d %H:%M})"
        )
    return chosen


def read_snapshot(files: tuple[str, ...] | list[str], conn_id: str | None, fmt: str | None) -> Snapshot:
    import pandas as pd

    frames, digests = [], []
    for name in files:
        frame, raw = read_table(name, conn_id, fmt)
        frames.append(frame)
        digests.append((name, fingerprint(raw)))
    if len(digests) == 1:
        return Snapshot(frames[0], tuple(files), digests[0][1])
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(digests))
    combined = pd.concat(frames, ignore_index=True)
    return Snapshot(combined, tuple(files), hashlib.sha256(lines.encode()).hexdigest())


def recorded_files(tags: dict[str, str]) -> list[str]:
    """The data files a run (or version) recorded; runs of a single file may carry only ``mlops.data_uri``."""
    import json

    raw = tags.get(Tag.DATA_FILES)
    return list(json.loads(raw)) if raw else [tags[Tag.DATA_URI]]
