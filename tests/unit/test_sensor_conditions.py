"""The plain checks behind the sensors, against a real MLflow SQLite store (no Airflow).

``check_gated_alias`` (alias -> servable version), ``approval_answer`` (approved / rejected / pending) and
``latest_verdict`` (monitoring runs -> ``ok < warn < act``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.monitoring.verdicts import at_least, latest_verdict, parse_level
from airflow_mlops.registry.approval import approval_answer
from airflow_mlops.registry.gated_alias import check_gated_alias, servable_refusal
from airflow_mlops.vocabulary import Alias, Tag
from sensor_support import client, gated, make_version, mlflow_store, record_monitoring_run, unique_model


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    root = tmp_path_factory.mktemp("conditions")
    yield client(mlflow_store(root)), root / "artifacts"


# -- gated alias -------------------------------------------------------------------------------------------


def test_alias_of_unknown_model_or_unset_alias_is_not_satisfied(store: tuple[Any, Path]) -> None:
    mlflow_client, _ = store
    model = unique_model()

    assert check_gated_alias(mlflow_client, model, Alias.CHAMPION).reason == f"{model}@champion is not set"
    make_version(mlflow_client, model, gated())
    check = check_gated_alias(mlflow_client, model, Alias.CHAMPION)
    assert (check.satisfied, check.version) == (False, None)


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({}, "mlops.gate is None, not 'passed'"),
        ({Tag.GATE: "failed"}, "mlops.gate is 'failed', not 'passed'"),
        (gated(**{Tag.REJECTED_REASON: "bias"}), "it was rejected (mlops.rejected_reason='bias')"),
        (gated(**{Tag.ROLLBACK_REASON: "5xx"}), "it was rolled back (mlops.rollback_reason='5xx')"),
    ],
    ids=["no-gate", "gate-failed", "rejected", "rolled-back"],
)
def test_alias_on_a_version_that_may_not_serve_is_not_satisfied(
    store: tuple[Any, Path], tags: dict[str, str], reason: str
) -> None:
    mlflow_client, _ = store
    model = unique_model()
    version = make_version(mlflow_client, model, tags)
    mlflow_client.set_registered_model_alias(model, Alias.CHAMPION, version)

    check = check_gated_alias(mlflow_client, model, Alias.CHAMPION)

    assert (check.satisfied, check.version) == (False, version)
    assert check.reason == f"{model}@champion is v{version}, but {reason}"
    assert servable_refusal(tags) == reason


def test_alias_on_a_gated_version_is_satisfied_and_a_wanted_version_must_match(store: tuple[Any, Path]) -> None:
    mlflow_client, _ = store
    model = unique_model()
    v1 = make_version(mlflow_client, model, gated())
    v2 = make_version(mlflow_client, model, gated())
    mlflow_client.set_registered_model_alias(model, Alias.CHALLENGER, v1)

    assert check_gated_alias(mlflow_client, model, Alias.CHALLENGER).to_dict() == {
        "model": model,
        "alias": "challenger",
        "version": v1,
    }
    waiting = check_gated_alias(mlflow_client, model, Alias.CHALLENGER, version=v2)
    assert (waiting.satisfied, waiting.reason) == (False, f"{model}@challenger is v{v1}, waiting for v{v2}")

    mlflow_client.set_registered_model_alias(model, Alias.CHALLENGER, v2)
    assert check_gated_alias(mlflow_client, model, Alias.CHALLENGER, version=v2).satisfied


# -- approval ----------------------------------------------------------------------------------------------


def test_approval_pending_then_approved(store: tuple[Any, Path]) -> None:
    mlflow_client, _ = store
    model = unique_model()
    version = make_version(mlflow_client, model, gated())

    assert approval_answer(mlflow_client, model, version) is None
    mlflow_client.set_model_version_tag(model, version, Tag.APPROVED_BY, "alice")
    mlflow_client.set_model_version_tag(model, version, Tag.APPROVED_AT, "2026-12-01T10:00:00+00:00")

    assert approval_answer(mlflow_client, model, int(version)).to_dict() == {  # type: ignore[union-attr]
        "model": model,
        "version": version,
        "decision": "approved",
        "by": "alice",
        "at": "2026-12-01T10:00:00+00:00",
        "reason": None,
    }


def test_rejection_wins_over_an_earlier_approval(store: tuple[Any, Path]) -> None:
    mlflow_client, _ = store
    model = unique_model()
    version = make_version(mlflow_client, model, gated(**{Tag.APPROVED_BY: "alice"}))
    mlflow_client.set_model_version_tag(model, version, Tag.REJECTED_REASON, "leaks a feature")
    mlflow_client.set_model_version_tag(model, version, Tag.REJECTED_BY, "bob")

    answer = approval_answer(mlflow_client, model, version)

    assert answer is not None
    assert (answer.decision, answer.by, answer.reason) == ("rejected", "bob", "leaks a feature")


def test_approval_of_a_missing_version_raises(store: tuple[Any, Path]) -> None:
    from mlflow.exceptions import MlflowException

    mlflow_client, _ = store
    model = unique_model()
    make_version(mlflow_client, model)

    with pytest.raises(MlflowException):
        approval_answer(mlflow_client, model, "99")


# -- drift verdicts ----------------------------------------------------------------------------------------


def test_levels_are_ordered_and_unknown_levels_are_refused() -> None:
    assert [at_least(level, "warn") for level in ("ok", "warn", "act")] == [False, True, True]
    assert at_least("ok", "ok")
    with pytest.raises(ValueError, match=r"drift level: got 'high'; expected one of \['ok', 'warn', 'act'\]"):
        parse_level("high")


def test_no_monitoring_experiment_or_no_finished_run_means_no_verdict(store: tuple[Any, Path]) -> None:
    mlflow_client, root = store
    model = unique_model()

    assert latest_verdict(mlflow_client, model) is None
    record_monitoring_run(mlflow_client, model, root, act=True, statuses={"amount": "act"}, finish=False)
    assert latest_verdict(mlflow_client, model) is None


@pytest.mark.parametrize(
    ("act", "statuses", "level", "features"),
    [
        (False, {"amount": "ok", "hour": "ok"}, "ok", ()),
        (False, {"amount": "warn", "hour": "ok"}, "warn", ("amount",)),
        (False, {"amount": "act", "hour": "ok"}, "warn", ("amount",)),  # one feature, not a dataset drift
        (True, {"amount": "act", "hour": "warn"}, "act", ("amount", "hour")),
        (True, {"amount": "ok"}, "act", ()),  # e.g. a performance breach alone
        (True, None, "act", ()),
        (False, None, "ok", ()),
    ],
    ids=["ok", "warn", "feature-act-only", "act", "act-by-performance", "act-no-artifact", "ok-no-artifact"],
)
def test_verdict_level_from_what_the_run_recorded(
    store: tuple[Any, Path], act: bool, statuses: dict[str, str] | None, level: str, features: tuple[str, ...]
) -> None:
    mlflow_client, root = store
    model = unique_model()
    run_id = record_monitoring_run(mlflow_client, model, root, act=act, statuses=statuses)

    verdict = latest_verdict(mlflow_client, model)

    assert verdict is not None
    assert (verdict.level, verdict.features, verdict.run_id) == (level, features, run_id)
    assert verdict.to_dict()["window_end"] == "2026-12-01T06:00:00+00:00"


def test_the_newest_run_is_the_verdict_and_since_filters_older_runs(store: tuple[Any, Path]) -> None:
    mlflow_client, root = store
    model = unique_model()
    record_monitoring_run(mlflow_client, model, root, act=True, statuses={"amount": "act"}, suppressed=True)
    drifted = latest_verdict(mlflow_client, model)
    assert drifted is not None and (drifted.level, drifted.suppressed) == ("act", True)

    later = datetime.now(UTC) + timedelta(milliseconds=5)
    assert latest_verdict(mlflow_client, model, since=later + timedelta(seconds=1)) is None
    import time

    time.sleep(0.02)
    clean = record_monitoring_run(mlflow_client, model, root, act=False, statuses={"amount": "ok"})
    newest = latest_verdict(mlflow_client, model)
    assert newest is not None and (newest.run_id, newest.level) == (clean, "ok")
    assert latest_verdict(mlflow_client, model, since=later) == newest


def test_since_must_carry_a_timezone(store: tuple[Any, Path]) -> None:
    mlflow_client, _ = store
    with pytest.raises(ValueError, match="since: got the naive datetime '2026-12-01T00:00:00'"):
        latest_verdict(mlflow_client, "any", since=datetime(2026, 12, 1))


# -- prediction volume -------------------------------------------------------------------------------------


def _prediction(model: str, request_id: str, version: str, ts: datetime, role: str = "champion", **kw: Any) -> Any:
    import json

    from airflow_mlops.prediction_log import PredictionRecord

    error = kw.get("error")
    return PredictionRecord(
        request_id=request_id,
        ts=ts,
        model=model,
        version=version,
        role=role,
        inputs=json.dumps({"amount": 1.0}),
        output=None if error else json.dumps({"prediction": 0, "score": 0.1}),
        latency_ms=2.0,
        error=error,
    )


def test_prediction_volume_counts_served_answers_of_the_version_and_their_labels(tmp_path: Path) -> None:
    from airflow_mlops.monitoring.volume import prediction_volume
    from airflow_mlops.prediction_log import FeedbackRecord, LocalStorage, PredictionLog

    model, t0 = "volume", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    storage = LocalStorage(tmp_path / "plog")
    with PredictionLog(storage) as log:
        log.append(
            [
                _prediction(model, "early", "3", t0 - timedelta(hours=2)),  # before since
                _prediction(model, "a", "3", t0),
                _prediction(model, "b", "3", t0 + timedelta(minutes=5), role="canary"),
                _prediction(model, "c", "3", t0 + timedelta(minutes=6), role="shadow"),
                _prediction(model, "d", "3", t0 + timedelta(minutes=7), error="boom"),
                _prediction(model, "e", "2", t0 + timedelta(minutes=8)),
                _prediction(model, "late", "3", t0 + timedelta(hours=3)),  # at or after until
            ]
        )
        labels = [("a", t0 + timedelta(days=2)), ("e", t0), ("c", t0), ("early", t0)]  # a's label came much later
        log.append_feedback([FeedbackRecord(rid, ts, model, "1") for rid, ts in labels])
        log.flush()

    since, until = t0 - timedelta(hours=1), t0 + timedelta(hours=3)
    volume = prediction_volume(storage, model, 3, since, until)

    assert volume.to_dict() == {
        "model": model,
        "version": "3",
        "predictions": 2,
        "labelled": 1,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    assert volume.enough(2, 1) and not volume.enough(3) and not volume.enough(2, 2)
    assert prediction_volume(storage, model, "3", since, until, count_labels=False).labelled == 0
    assert prediction_volume(storage, model, "3").predictions == 4  # no bounds: early and late count too


def test_prediction_volume_of_a_model_without_a_log_is_zero(tmp_path: Path) -> None:
    from airflow_mlops.monitoring.volume import prediction_volume
    from airflow_mlops.prediction_log import LocalStorage

    volume = prediction_volume(LocalStorage(tmp_path / "empty"), "nobody", "1")

    assert (volume.predictions, volume.labelled) == (0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json {", r"drift/statistics.json is not JSON"),
        ('["a", "list"]', r"drift/statistics.json has no 'scores' mapping"),
        ('{"scores": {"amount": "act"}}', r"drift/statistics.json has no 'scores' mapping"),
    ],
    ids=["garbage", "list", "score-not-a-mapping"],
)
def test_a_tampered_statistics_artifact_is_an_error_not_a_verdict(
    store: tuple[Any, Path], content: str, message: str
) -> None:
    """Artifacts in MLflow are outside input: a malformed one fails the check instead of deciding a level."""
    from airflow_mlops.exceptions import DataError

    mlflow_client, root = store
    model = unique_model()
    run_id = record_monitoring_run(mlflow_client, model, root, act=False, statuses=None)
    mlflow_client.log_text(run_id, content, "drift/statistics.json")
    with pytest.raises(DataError, match=rf"monitoring run {run_id}: {message}"):
        latest_verdict(mlflow_client, model)
