"""Prediction-log retention: whole hour partitions past ``now - retention`` go, of both kinds; nothing else does.

Partitions are written by the real :class:`~airflow_mlops.prediction_log.PredictionLog` into a local folder
and into fsspec's in-memory filesystem (the object-store path: ``FsspecStorage`` and a ``pyarrow`` wrapper of
an fsspec filesystem, as for ``wasbs://``). Real object stores behind Airflow connections are not needed here:
pruning only lists and deletes through :meth:`Storage.filesystem`, which those tests already cover.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from airflow_mlops.exceptions import ConfigError, DataError
from airflow_mlops.prediction_log import (
    FeedbackRecord,
    FsspecStorage,
    LocalStorage,
    PredictionLog,
    PredictionRecord,
    Storage,
    read_feedback,
    read_predictions,
)
from airflow_mlops.prediction_log.retention import prune_partitions, retention_cutoff

NOW = datetime(2026, 3, 10, 12, 20, tzinfo=UTC)
#: cutoff = 2026-03-09 09:20: hours up to 08:00 that day ended before it; 09:00 still holds kept rows.
RETENTION = timedelta(hours=27)
PREDICTION_HOURS = [
    datetime(2026, 3, 8, 22, tzinfo=UTC),
    datetime(2026, 3, 8, 23, tzinfo=UTC),
    datetime(2026, 3, 9, 7, tzinfo=UTC),
    datetime(2026, 3, 9, 8, tzinfo=UTC),
    datetime(2026, 3, 9, 9, tzinfo=UTC),  # holds the cutoff: kept
    datetime(2026, 3, 9, 10, tzinfo=UTC),
    datetime(2026, 3, 10, 12, tzinfo=UTC),  # the current hour
    datetime(2026, 3, 10, 14, tzinfo=UTC),  # the future (a gateway clock ahead)
]
FEEDBACK_HOURS = [datetime(2026, 3, 8, 23, tzinfo=UTC), datetime(2026, 3, 9, 9, tzinfo=UTC)]
EXPIRED = PREDICTION_HOURS[:4]


def write_log(storage: Storage, model: str = "fraud", minute: int = 30) -> None:
    """Two rows per prediction hour and one label per feedback hour, through the gateway's writer."""
    predictions = [
        PredictionRecord(
            f"{model}-{hour:%d%H}-{i}",
            hour + timedelta(minutes=minute, seconds=i),
            model,
            "1",
            "champion",
            "{}",
            "{}",
            1.0,
            None,
        )
        for hour in PREDICTION_HOURS
        for i in range(2)
    ]
    feedback = [
        FeedbackRecord(f"{model}-{hour:%d%H}-0", hour + timedelta(minutes=minute), model, "1")
        for hour in FEEDBACK_HOURS
    ]
    log = PredictionLog(storage)
    log.append(predictions)
    log.append_feedback(feedback)
    log.close()


def local_store(tmp_path: Path) -> Storage:
    return LocalStorage(tmp_path / "log")


def memory_store(tmp_path: Path) -> Storage:
    return FsspecStorage(MemoryFileSystem(), f"bucket/{uuid.uuid4().hex[:8]}/log")


@pytest.fixture(params=[local_store, memory_store], ids=["local", "object-store"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    store: Storage = request.param(tmp_path)
    write_log(store)
    return store


def files(storage: Storage) -> list[str]:
    """Every file under the root (temporary ones included), relative to it."""
    fs, base = storage.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1 :] for i in infos if i.type == pafs.FileType.File)


def dirs(storage: Storage, rel: str) -> list[str]:
    fs, base = storage.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(f"{base}/{rel}", allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def hours_of(frame: Any) -> list[datetime]:
    return sorted({ts.to_pydatetime().replace(minute=0, second=0) for ts in frame["ts"]})


def test_whole_hours_past_retention_go_for_predictions_and_feedback(storage: Storage) -> None:
    before = files(storage)
    result = prune_partitions(storage, "fraud", RETENTION, now=NOW)

    assert result.cutoff == datetime(2026, 3, 9, 9, 20, tzinfo=UTC)
    assert [(h.kind, h.hour) for h in result.hours] == [
        *[("predictions", hour) for hour in EXPIRED],
        ("feedback", FEEDBACK_HOURS[0]),
    ]
    assert hours_of(read_predictions(storage, "fraud")) == PREDICTION_HOURS[4:]
    assert hours_of(read_feedback(storage, "fraud")) == FEEDBACK_HOURS[1:]
    removed = sorted(set(before) - set(files(storage)))
    assert result.files == len(removed) == 5
    assert result.bytes > 0
    assert result.hours[0].path == f"{storage.uri}/fraud/predictions/date=2026-03-08/hour=22"
    summary = result.to_dict()
    assert summary["partitions"] == 5 and summary["partitions_by_kind"] == {"predictions": 4, "feedback": 1}
    assert (summary["oldest_hour"], summary["newest_hour"]) == (
        "2026-03-08T22:00:00+00:00",
        "2026-03-09T08:00:00+00:00",
    )
    # a day with nothing left is removed too, or every later run would list it again
    assert dirs(storage, "fraud/predictions") == ["date=2026-03-09", "date=2026-03-10"]
    assert dirs(storage, "fraud/feedback") == ["date=2026-03-09"]


def test_a_rerun_deletes_nothing_more(storage: Storage) -> None:
    prune_partitions(storage, "fraud", RETENTION, now=NOW)
    after_first = files(storage)

    again = prune_partitions(storage, "fraud", RETENTION, now=NOW)

    assert (again.partitions, again.files, again.bytes) == (0, 0, 0)
    assert files(storage) == after_first


@pytest.mark.parametrize(
    ("now", "newest_deleted"),
    [
        (datetime(2026, 3, 10, 12, 0, tzinfo=UTC), datetime(2026, 3, 10, 10, tzinfo=UTC)),  # 11:00 ends after 11:59:59
        (datetime(2026, 3, 10, 12, 0, 1, tzinfo=UTC), datetime(2026, 3, 10, 11, tzinfo=UTC)),  # ends exactly at cutoff
    ],
    ids=["hour-ending-after-cutoff-kept", "hour-ending-at-cutoff-deleted"],
)
def test_the_current_hour_and_newer_are_never_deleted(tmp_path: Path, now: datetime, newest_deleted: datetime) -> None:
    storage = LocalStorage(tmp_path / "log")
    hours = [datetime(2026, 3, 10, h, tzinfo=UTC) for h in (10, 11, 12, 13)]
    with PredictionLog(storage) as log:
        log.append([PredictionRecord(f"r{h:%H}", h, "fraud", "1", "champion", "{}", None, 1.0, "x") for h in hours])

    result = prune_partitions(storage, "fraud", timedelta(seconds=1), now=now)

    assert max(h.hour for h in result.hours) == newest_deleted
    assert hours_of(read_predictions(storage, "fraud"))[-2:] == hours[2:]
    with pytest.raises(ValueError, match="retention must be a positive duration"):
        prune_partitions(storage, "fraud", timedelta(0), now=now)
    with pytest.raises(ValueError, match="naive"):
        retention_cutoff(datetime(2026, 3, 10, 12), timedelta(days=1))


def test_dry_run_reports_the_same_hours_and_deletes_nothing(storage: Storage) -> None:
    before = files(storage)

    dry = prune_partitions(storage, "fraud", RETENTION, now=NOW, dry_run=True)

    assert files(storage) == before
    real = prune_partitions(storage, "fraud", RETENTION, now=NOW)
    assert dry.to_dict() == {**real.to_dict(), "dry_run": True}


def test_a_partially_deleted_partition_is_finished_by_the_next_run(tmp_path: Path) -> None:
    """A crash half-way (one part of an hour gone, a writer's temp file left) or a store error on one hour."""
    storage = LocalStorage(tmp_path / "log")
    write_log(storage)
    write_log(storage, minute=45)  # a second part file in every hour
    hour_dir = storage.path / "fraud/predictions/date=2026-03-08/hour=22"
    parts = sorted(hour_dir.glob("part-*.parquet"))
    assert len(parts) == 2
    parts[0].unlink()
    (hour_dir / ".part-x.parquet.1234abcd.tmp").write_bytes(b"half")

    fs, base = storage.filesystem()
    failing_on = f"{base}/fraud/predictions/date=2026-03-09/hour=07"

    real_delete = fs.delete_dir
    calls: list[str] = []

    def delete_dir(path: str) -> None:
        calls.append(path)
        if path == failing_on and calls.count(path) == 1:
            raise OSError("store said no")
        real_delete(path)

    class Flaky:
        def __getattr__(self, name: str) -> Any:
            return delete_dir if name == "delete_dir" else getattr(fs, name)

    class FlakyStorage(LocalStorage):
        def filesystem(self) -> tuple[Any, str]:
            return Flaky(), base

    flaky = FlakyStorage(storage.path)
    with pytest.raises(DataError, match=r"Cannot delete prediction-log partition '.*/date=2026-03-09/hour=07': store"):
        prune_partitions(flaky, "fraud", RETENTION, now=NOW)
    assert not hour_dir.exists(), "hours deleted before the failure stay deleted"

    result = prune_partitions(flaky, "fraud", RETENTION, now=NOW)

    assert [h.hour for h in result.hours if h.kind == "predictions"] == EXPIRED[2:]
    assert hours_of(read_predictions(storage, "fraud")) == PREDICTION_HOURS[4:]


def test_other_models_the_wal_and_foreign_folders_are_left_alone(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "log")
    write_log(storage, "fraud")
    write_log(storage, "churn")
    wal = storage.path / "_wal" / "wal-0123456789ab-00000000.jsonl"
    wal.parent.mkdir(exist_ok=True)
    wal.write_text("{}\n")
    foreign = [storage.path / "fraud/predictions/date=garbage", storage.path / "fraud/predictions/date=2026-03-08/x"]
    for folder in foreign:
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text("not ours")

    prune_partitions(storage, "fraud", RETENTION, now=NOW)

    assert hours_of(read_predictions(storage, "churn")) == PREDICTION_HOURS
    assert wal.exists()
    assert all((folder / "keep.txt").exists() for folder in foreign)
    assert (storage.path / "fraud/predictions/date=2026-03-08").exists(), "a day with foreign content stays"
    with pytest.raises(ValueError, match="not a safe path segment"):
        prune_partitions(storage, "../fraud", RETENTION, now=NOW)


# --- config: monitoring.retention -----------------------------------------------------------------------------

CONFIG = """\
name: fraud_model
task: classification
data:
  uri: data.csv
target: is_fraud
features:
  numeric: [amount, hour]
  categorical: [merchant_category]
estimator:
  class: sklearn.linear_model.LogisticRegression
monitoring:
  window: {window}
  retention: {retention}
"""


@pytest.mark.parametrize(
    ("window", "retention", "needed"),
    [("1d", "8d", "8d"), ("6h", "7d", "174h"), ("1d", "0", "8d")],
    ids=["equal-is-not-longer", "shorter", "zero"],
)
def test_validate_config_refuses_a_retention_not_longer_than_what_the_monitor_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], window: str, retention: str, needed: str
) -> None:
    from airflow_mlops.cli import main

    path = tmp_path / "fraud_model.yaml"
    path.write_text(CONFIG.format(window=window, retention=retention))

    assert main(["validate-config", str(path)]) == 1

    shown = repr(int(retention)) if retention.isdigit() else repr(retention)
    assert capsys.readouterr().err.splitlines()[1] == (
        f"  {path}: monitoring.retention: got {shown}; expected a duration longer than monitoring.window "
        f"({window}) plus the 7d label delay (more than {needed}): a window's predictions are read again until "
        "its delayed labels are in"
    )


def test_retention_is_optional_and_a_long_enough_one_loads(tmp_path: Path) -> None:
    from airflow_mlops.config.loader import load_config
    from airflow_mlops.config.schema import MonitoringConfig

    assert MonitoringConfig().retention is None
    path = tmp_path / "fraud_model.yaml"
    path.write_text(CONFIG.format(window="1d", retention="90d"))
    assert load_config(path).config.monitoring.retention == "90d"
    path.write_text(CONFIG.format(window="bogus", retention="1d"))
    with pytest.raises(ConfigError, match=r"monitoring\.window: got 'bogus'") as raised:
        load_config(path)
    assert "monitoring.retention" not in str(raised.value), "a bad window is one error, on the window"
