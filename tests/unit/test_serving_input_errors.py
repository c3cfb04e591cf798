"""An unseen category is the client's input, not the model failing: read, checked, answered and counted apart.

The known categories come from real fitted pipelines (``build_pipeline`` on a toy frame, as training builds
them); the gateway runs in-process over fakes of the registry watcher, the model cache and the prediction
log, so each routing decision (champion, canary, shadow) is seen exactly: the answer, the metrics, and the
rows canary health reads (``deploy.health.canary_stats`` on what was logged).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.deploy.health import canary_stats
from airflow_mlops.serving.app import Gateway, GatewaySettings
from airflow_mlops.serving.categories import SHOWN_CATEGORIES, UnknownCategoryError, known_categories
from airflow_mlops.serving.models import LoadedModel
from airflow_mlops.serving.signature import MAX_PROBLEMS, ColumnSpec, InputSchema
from airflow_mlops.serving.state import Routing, WatchStatus
from support import toy_config

MODEL = "toy"
SCHEMA = InputSchema((ColumnSpec("a", "double"), ColumnSpec("c", "string")))
TRAIN = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "c": ["x", "y", "x", "y", None, "x"]})
LABELS = [0, 1, 0, 1, 0, 1]
REFUSES = "this model refuses categories it did not see in training"


def fitted(unknown: str = "error", frame: pd.DataFrame = TRAIN) -> Any:
    from airflow_mlops.training.estimator import build_pipeline

    config = toy_config(features={"numeric": ["a"], "categorical": ["c"], "unknown_categories": unknown})
    return build_pipeline(config).fit(frame, LABELS[: len(frame)])


# -- reading the known categories from a fitted pipeline ----------------------------------------------------


def test_categories_are_read_from_a_pipeline_that_refuses_unseen_ones() -> None:
    known = known_categories(fitted("error"))

    assert set(known.columns) == {"c"}
    assert known.columns["c"].known == {"x", "y"}
    assert known.columns["c"].accepts_missing  # the imputer fills null before the encoder


def test_a_pipeline_that_ignores_unseen_categories_has_nothing_to_check() -> None:
    known = known_categories(fitted("ignore"))

    assert not known
    assert known.problems({"records": {"a": 1.0, "c": "never seen"}}) == []


def test_an_encoder_fitted_on_a_frame_is_read_by_its_feature_names() -> None:
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(handle_unknown="error").fit(pd.DataFrame({"c": ["x", "y"], "d": [1, 2]}))

    known = known_categories(encoder)
    assert {name: spec.known for name, spec in known.columns.items()} == {"c": {"x", "y"}, "d": {1, 2}}
    assert not known.columns["c"].accepts_missing  # no imputer and no missing value seen: null is refused


def test_positional_columns_are_named_through_the_column_transformer() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    transformer = ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="error"), [1])])
    transformer.fit(pd.DataFrame({"a": [1.0, 2.0], "c": ["x", "y"]}))

    assert {name: spec.known for name, spec in known_categories(transformer).columns.items()} == {"c": {"x", "y"}}


def test_an_encoder_behind_a_step_that_may_change_values_is_not_checked() -> None:
    """A function before the encoder may map 'X' to a known 'x': checking raw values there would refuse valid input."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    lower = FunctionTransformer(lambda frame: frame.apply(lambda col: col.str.lower()))
    branch = Pipeline([("lower", lower), ("onehot", OneHotEncoder(handle_unknown="error"))])
    transformer = ColumnTransformer([("c", branch, ["c"])]).fit(pd.DataFrame({"c": ["x", "y"]}))

    assert not known_categories(transformer)
    transformer.transform(pd.DataFrame({"c": ["X"]}))  # the value the check would have refused is valid


def test_an_estimator_it_cannot_read_checks_nothing_and_never_raises() -> None:
    class Odd:
        handle_unknown = "error"

        @property
        def categories_(self) -> Any:
            raise RuntimeError("broken attribute")

    assert not known_categories(Odd())
    assert not known_categories(object())


# -- the check: field, value, what is accepted ---------------------------------------------------------------


def test_a_single_record_names_the_field_the_value_and_the_known_categories() -> None:
    known = known_categories(fitted("error"))

    with pytest.raises(UnknownCategoryError) as caught:
        known.check({"records": {"a": 1.0, "c": "crypto"}})

    assert caught.value.problems == [
        {"loc": ["records", "c"], "msg": f"unknown category 'crypto': {REFUSES}; expected one of ['x', 'y']"}
    ]
    known.check({"records": {"a": 1.0, "c": "x"}})  # known: no error
    known.check({"records": {"a": 1.0, "c": None}})  # imputed: no error


def test_a_batch_names_each_refused_row() -> None:
    known = known_categories(fitted("error"))
    batch = {"records": [{"a": 1.0, "c": "x"}, {"a": 2.0, "c": "z"}, {"a": 3.0, "c": "y"}, {"a": 4.0, "c": "w"}]}

    assert [p["loc"] for p in known.problems(batch)] == [["records", 1, "c"], ["records", 3, "c"]]
    assert [p["loc"] for p in known.problems(batch, limit=1)] == [["records", 1, "c"]]
    assert known.problems({"records": [{"a": 1.0, "c": "x"}]}) == []


def test_the_known_categories_shown_are_bounded() -> None:
    many = pd.DataFrame({"a": np.arange(30.0), "c": [f"cat{i:02d}" for i in range(30)]})
    from airflow_mlops.training.estimator import build_pipeline

    config = toy_config(features={"numeric": ["a"], "categorical": ["c"], "unknown_categories": "error"})
    known = known_categories(build_pipeline(config).fit(many, [i % 2 for i in range(30)]))

    [problem] = known.problems({"records": {"a": 1.0, "c": "new"}})
    shown = ", ".join(repr(f"cat{i:02d}") for i in range(SHOWN_CATEGORIES))
    assert problem["msg"].endswith(f"expected one of [{shown}] (+10 more)")


def test_missing_values_are_refused_where_nothing_fills_them() -> None:
    from sklearn.preprocessing import OneHotEncoder

    known = known_categories(OneHotEncoder(handle_unknown="error").fit(pd.DataFrame({"c": ["x", "y"]})))

    [problem] = known.problems({"records": {"c": None}})
    assert problem == {"loc": ["records", "c"], "msg": f"missing value: {REFUSES}; expected one of ['x', 'y']"}


def test_a_hostile_batch_is_reported_up_to_the_cap() -> None:
    known = known_categories(fitted("error"))
    batch = {"records": [{"a": 1.0, "c": f"bad{i}"} for i in range(500)]}

    with pytest.raises(UnknownCategoryError) as caught:
        known.check(batch)
    assert len(caught.value.problems) == MAX_PROBLEMS and caught.value.truncated


# -- the gateway: who answers, what is counted, what canary health reads --------------------------------------


class FakeWatcher:
    def __init__(self, routing: Routing) -> None:
        self.table = routing
        self.status = WatchStatus()

    def routing(self, model: str) -> Routing | None:
        return self.table if model == MODEL else None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class FakeCache:
    def __init__(self, versions: dict[str, LoadedModel]) -> None:
        self.versions = versions

    def get(self, model: str, version: str) -> LoadedModel | None:
        return self.versions.get(version)

    def load(self, model: str, version: str) -> LoadedModel:
        return self.versions[version]


class FakeLog:
    dropped_rows = 0  # read by the gateway's /metrics, as PredictionLog's
    pending_rows = 0

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def append(self, records: list[Any]) -> None:
        self.rows.extend(records)

    def frame(self) -> pd.DataFrame:
        columns = ["request_id", "ts", "model", "version", "role", "inputs", "output", "latency_ms", "error"]
        return pd.DataFrame([dataclasses.asdict(r) for r in self.rows], columns=columns)


class Raising:
    """A model that fails on input it accepts: a genuine model error."""

    classes_ = np.array([0, 1])

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        raise RuntimeError("model bug")


def loaded(version: str, estimator: Any) -> LoadedModel:
    return LoadedModel(MODEL, version, estimator, SCHEMA, "classification")


@pytest.fixture
def make_gateway() -> Iterator[Any]:
    started: list[Gateway] = []

    def make(routing: Routing, **versions: Any) -> Gateway:
        gateway = Gateway(
            GatewaySettings(models=[MODEL]),
            FakeCache({v.lstrip("v"): loaded(v.lstrip("v"), est) for v, est in versions.items()}),  # type: ignore[arg-type]
            FakeWatcher(routing),  # type: ignore[arg-type]
            FakeLog(),  # type: ignore[arg-type]
        )
        gateway.start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


def body(category: str) -> dict[str, Any]:
    return {"records": {"a": 1.0, "c": category}}


def rows(gateway: Gateway) -> pd.DataFrame:
    plog = gateway.plog
    assert isinstance(plog, FakeLog)
    return plog.frame()


def test_an_unseen_category_for_a_champion_that_refuses_it_is_a_422_not_an_error(make_gateway: Any) -> None:
    gateway = make_gateway(Routing(champion="1"), v1=fitted("error"))

    status, answer = gateway.predict(MODEL, body("crypto"), "crafted-1")

    assert status == 422
    msg = f"unknown category 'crypto': {REFUSES}; expected one of ['x', 'y']"
    assert answer == {"detail": [{"loc": ["records", "c"], "msg": msg}], "request_id": "crafted-1"}
    assert gateway.metrics.snapshot(MODEL) == {}  # no request, no error counted for any version
    text = gateway.metrics.render()
    assert 'mlops_gateway_rejected_total{model="toy",reason="unknown_category"} 1.0' in text
    assert 'mlops_gateway_refused_inputs_total{model="toy",role="champion",version="1"} 1.0' in text
    assert rows(gateway).empty
    assert gateway.predict(MODEL, body("x"), "fine-1")[0] == 200


def test_a_canary_that_refuses_a_category_the_champion_answers_is_charged_and_the_champion_answers(
    make_gateway: Any,
) -> None:
    """Live traffic the canary cannot serve is what its health check must see (the client still gets an answer)."""
    gateway = make_gateway(
        Routing(champion="1", canary="2", canary_percent=100.0), v1=fitted("ignore"), v2=fitted("error")
    )

    for i in range(3):
        status, answer = gateway.predict(MODEL, body("crypto"), f"new-category-{i}")
        assert (status, answer["model_version"], answer["role"]) == (200, "1", "champion")
    status, answer = gateway.predict(MODEL, body("x"), "fine")
    assert (status, answer["model_version"], answer["role"]) == (200, "2", "canary")

    snapshot = gateway.metrics.snapshot(MODEL)
    assert snapshot["2"]["canary"]["requests"] == 4 and snapshot["2"]["canary"]["errors"] == 3
    text = gateway.metrics.render()
    assert 'mlops_gateway_refused_inputs_total{model="toy",role="canary",version="2"} 3.0' in text
    assert 'mlops_gateway_canary_fallbacks_total{model="toy",version="2"} 3.0' in text
    health = canary_stats(rows(gateway), None, canary="2", champion="1", metric=None)
    assert (health.requests, health.errors) == (4, 3)
    refused = rows(gateway).query("role == 'canary' and error.notna()")["error"]
    assert refused.str.startswith("UnknownCategoryError: ").all(), list(refused)


def test_a_canary_that_learned_a_new_category_answers_it_and_the_champion_refuses_it(make_gateway: Any) -> None:
    newer = pd.concat([TRAIN, pd.DataFrame({"a": [7.0, 8.0], "c": ["z", "z"]})], ignore_index=True)
    from airflow_mlops.training.estimator import build_pipeline

    config = toy_config(features={"numeric": ["a"], "categorical": ["c"], "unknown_categories": "error"})
    learned = build_pipeline(config).fit(newer, [*LABELS, 0, 1])
    gateway = make_gateway(Routing(champion="1", canary="2", canary_percent=100.0), v1=fitted("error"), v2=learned)

    status, answer = gateway.predict(MODEL, body("z"), "to-canary")
    assert (status, answer["model_version"], answer["role"]) == (200, "2", "canary")

    gateway.watcher.table = Routing(champion="1")  # the same input routed to the champion
    status, answer = gateway.predict(MODEL, body("z"), "to-champion")
    assert status == 422 and answer["detail"][0]["loc"] == ["records", "c"]
    assert gateway.metrics.snapshot(MODEL)["2"]["canary"]["errors"] == 0
    assert "1" not in gateway.metrics.snapshot(MODEL)  # the champion never ran on it, so no error either


def test_a_canary_that_fails_on_valid_input_still_counts_an_error(make_gateway: Any) -> None:
    gateway = make_gateway(Routing(champion="1", canary="2", canary_percent=100.0), v1=fitted("ignore"), v2=Raising())

    status, answer = gateway.predict(MODEL, body("x"), "genuine")

    assert (status, answer["model_version"], answer["role"]) == (200, "1", "champion")
    assert gateway.metrics.snapshot(MODEL)["2"]["canary"]["errors"] == 1
    assert 'mlops_gateway_canary_fallbacks_total{model="toy",version="2"} 1.0' in gateway.metrics.render()
    health = canary_stats(rows(gateway), None, canary="2", champion="1", metric=None)
    assert (health.requests, health.errors) == (1, 1)
    failed = rows(gateway).query("role == 'canary'").iloc[0]
    assert failed["error"] == "RuntimeError: model bug"


def test_a_champion_that_fails_on_valid_input_still_counts_an_error(make_gateway: Any) -> None:
    gateway = make_gateway(Routing(champion="1"), v1=Raising())

    with pytest.raises(RuntimeError, match="model bug"):  # the route turns it into a 503
        gateway.predict(MODEL, body("x"), "genuine")

    assert gateway.metrics.snapshot(MODEL)["1"]["champion"]["errors"] == 1
    assert list(rows(gateway)["error"]) == ["RuntimeError: model bug"]


def test_a_shadow_that_refuses_a_category_the_champion_answers_logs_an_error(make_gateway: Any) -> None:
    gateway = make_gateway(Routing(champion="1", shadow="2"), v1=fitted("ignore"), v2=fitted("error"))

    for i, category in enumerate(["x", "crypto", "y", "crypto"]):
        assert gateway.predict(MODEL, body(category), f"shadowed-{i}")[0] == 200
    gateway.stop()  # drains the shadow queue

    shadow = rows(gateway).query("role == 'shadow'").sort_values("request_id")
    assert list(shadow["request_id"]) == ["shadowed-0", "shadowed-1", "shadowed-2", "shadowed-3"]
    assert list(shadow["error"].notna()) == [False, True, False, True]
    series = gateway.metrics.snapshot(MODEL)["2"]["shadow"]
    assert (series["requests"], series["errors"]) == (4, 2)
