"""``evaluation.split``: random, stratified and time splits, with and without ``group_column``.

What users rely on: a time split trains only on rows older than every held-out row; a group never has rows
on both sides; the same data, config and seed always hold out the same rows (the gate rebuilds them); a
config without ``split`` splits exactly as before ``split`` existed; bad time or group columns are errors
naming the column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from airflow_mlops.exceptions import DataError
from airflow_mlops.training.trainer import split_data
from support import toy_config

N = 400


def frame(seed: int = 0, n: int = N) -> pd.DataFrame:
    """Rows in shuffled time order: ``ts`` timestamps (several rows share one), ``day`` numbers, ``user`` groups."""
    rng = np.random.default_rng(seed)
    day = rng.integers(0, 100, n)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "c": rng.choice(["x", "y", "z"], n),
            "y": rng.integers(0, 2, n),
            "day": day,
            "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day, unit="D"),
            "user": rng.integers(0, 60, n),
        }
    )


def config(**evaluation: Any) -> Any:
    return toy_config(evaluation=evaluation)


def held_out_rows(split: Any) -> list[int]:
    return sorted(split.x_test.index.tolist())


def test_without_split_the_rows_and_their_order_are_train_test_splits_as_before() -> None:
    df = frame()
    for evaluation, stratify in (({}, df["y"]), ({"stratify": False}, None)):
        split = split_data(df, config(**evaluation))
        x_train, x_test, _, _ = train_test_split(
            df[["a", "c"]], df["y"], test_size=0.25, random_state=42, stratify=stratify
        )
        assert split.x_test.index.tolist() == x_test.index.tolist()  # same rows, same (shuffled) order
        assert split.x_train.index.tolist() == x_train.index.tolist()
    assert split_data(df, config()).lineage["split"] == "stratified"
    assert split_data(df, config(split="random")).lineage["split"] == "random"


@pytest.mark.parametrize("column", ["ts", "day"])
def test_a_time_split_trains_only_on_rows_older_than_every_held_out_row(column: str) -> None:
    df = frame()
    split = split_data(df, config(split="time", time_column=column, test_size=0.2))
    train_times, test_times = df.loc[split.x_train.index, column], df.loc[split.x_test.index, column]
    assert train_times.max() < test_times.min()  # ties at the cutoff go to the held-out side
    assert 0.2 * N <= len(split.x_test) < 0.3 * N
    assert len(split.x_train) + len(split.x_test) == N
    assert split.lineage["split"] == "time" and split.lineage["split.time_column"] == column
    expected_from = test_times.min()
    shown = expected_from.isoformat() if column == "ts" else str(float(expected_from))
    assert split.lineage["split.test_from"] == shown
    # reproducible: the gate rebuilds the same held-out rows
    assert held_out_rows(split_data(df, config(split="time", time_column=column, test_size=0.2))) == held_out_rows(
        split
    )


def test_a_time_split_parses_text_timestamps_with_offsets() -> None:
    df = frame()
    df["ts"] = df["ts"].dt.tz_convert("Europe/Paris").astype(str)  # '2026-01-03 01:00:00+01:00'
    split = split_data(df, config(split="time", time_column="ts"))
    assert frame()["day"][split.x_train.index].max() < frame()["day"][split.x_test.index].min()


@pytest.mark.parametrize(
    "evaluation",
    [
        {"split": "random", "group_column": "user"},
        {"split": "stratified", "group_column": "user"},
        {"split": "time", "time_column": "day", "group_column": "user"},
    ],
    ids=["random", "stratified", "time"],
)
def test_a_group_never_has_rows_on_both_sides(evaluation: dict[str, Any]) -> None:
    df = frame()
    split = split_data(df, config(**evaluation))
    train_users = set(df.loc[split.x_train.index, "user"])
    test_users = set(df.loc[split.x_test.index, "user"])
    assert train_users and test_users and not train_users & test_users
    assert split.lineage["split.group_column"] == "user"
    assert held_out_rows(split_data(df, config(**evaluation))) == held_out_rows(split)


def test_a_grouped_time_split_places_each_group_by_its_newest_row() -> None:
    df = frame()
    split = split_data(df, config(split="time", time_column="day", group_column="user"))
    newest = df.groupby("user")["day"].max()
    train_newest = newest[sorted(set(df.loc[split.x_train.index, "user"]))]
    test_newest = newest[sorted(set(df.loc[split.x_test.index, "user"]))]
    assert train_newest.max() < test_newest.min()


def test_the_time_and_group_columns_need_not_be_features() -> None:
    split = split_data(frame(), config(split="time", time_column="ts", group_column="user"))
    assert list(split.x_train.columns) == ["a", "c"]


@pytest.mark.parametrize(
    ("evaluation", "change", "message"),
    [
        ({"split": "time", "time_column": "ts"}, lambda df: df.drop(columns="ts"), r"missing columns \['ts'\]"),
        (
            {"split": "random", "group_column": "user"},
            lambda df: df.drop(columns="user"),
            r"missing columns \['user'\]",
        ),
        (
            {"split": "time", "time_column": "ts"},
            lambda df: df.assign(ts=["not a date"] * len(df)),
            r"evaluation.time_column 'ts': expected numbers or timestamps",
        ),
        (
            {"split": "time", "time_column": "day"},
            lambda df: df.assign(day=df["day"].astype(float).where(df.index % 7 != 0)),
            r"evaluation.time_column 'day': has 58 missing or unparsable values",
        ),
        (
            {"split": "time", "time_column": "day"},
            lambda df: df.assign(day=5),
            r"evaluation.time_column 'day': the newest 25% of the rows start at its earliest value",
        ),
        (
            {"split": "random", "group_column": "user"},
            lambda df: df.assign(user=df["user"].where(df.index != 3)),
            r"evaluation.group_column 'user': has missing values",
        ),
        (
            {"split": "stratified", "group_column": "user"},
            lambda df: df.assign(user=1),
            r"evaluation.split 'stratified': cannot split 400 rows",
        ),
    ],
    ids=["no-time-column", "no-group-column", "text", "missing-times", "one-time", "missing-group", "one-group"],
)
def test_bad_time_or_group_columns_are_errors_naming_them(
    evaluation: dict[str, Any], change: Any, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        split_data(change(frame()), config(**evaluation))
