"""The serving gateway's ASGI app in-process (Starlette ``TestClient``) against a real MLflow registry.

One registry per module (SQLite + local artifacts in a module tmp dir) holds three versions trained,
registered and gated by the real operators: v1 and v3 are the same good config, v2 was trained with
``unknown_categories: error`` and raises at predict time on a merchant category it never saw
("crypto"), so it serves as the broken canary or shadow. Every test starts from v1 as the only
champion (``reset``) and builds its own gateway (``serve``), so caches, metrics and prediction logs
are never shared; the registry state a test changes is moved through ``LocalGatewayTarget``, as the
deploy DAG does.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from airflow_mlops.vocabulary import Tag
from support import trained_registry

MODEL = "fraud"
NO_CHAMPION = "fraud_unreleased"
UNSEEN = "crypto"  # a merchant category no version saw in training; v2 raises on it
COLUMNS = [
    "amount",
    "hour",
    "distance_from_home_km",
    "txn_count_24h",
    "account_age_days",
    "card_present",
    "merchant_category",
]


def record(category: str = "grocery", **overrides: Any) -> dict[str, Any]:
    base = {
        "amount": 120.5,
        "hour": 3,
        "distance_from_home_km": 42.0,
        "txn_count_24h": 7,
        "account_age_days": 30.0,
        "card_present": 0,
        "merchant_category": category,
    }
    return {**base, **overrides}


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None and value is not False:  # None/False: not yet (a DataFrame has no truth value)
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {value!r}")
        time.sleep(0.05)


# -- registry (module) ----------------------------------------------------------------------------


@dataclass
class Registry:
    tracking_uri: str
    client: Any
    target: Any
    v1: str
    v2: str
    v3: str
    run_versions: dict[str, str]  # MLflow run id -> version, to tell which version a load was for

    def reset(self) -> None:
        """v1 is the champion; no canary, no shadow; v2 and v3 not rejected (a rollback rejects what was in flight)."""
        self.target.rollback(MODEL, to_version=self.v1, actor="test", reason="reset")
        for version in (self.v2, self.v3):
            tags = self.client.get_model_version(MODEL, version).tags
            for key in (Tag.REJECTED_REASON, Tag.REJECTED_BY):
                if key in tags:
                    self.client.delete_model_version_tag(MODEL, version, key)

    def artifacts(self, version: str) -> Path:
        return Path(self.client.get_model_version_download_uri(MODEL, version))


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    trainings = [
        (None, "manual__good_v1"),
        ({"features": {"unknown_categories": "error"}}, "manual__broken_v2"),
        (None, "manual__good_v3"),
    ]
    with trained_registry(request.config, tmp_path_factory.mktemp("gateway-registry"), trainings) as trained:
        client, (v1, v2, v3) = trained.client, trained.versions
        client.create_registered_model(NO_CHAMPION)
        run_versions = {client.get_model_version(MODEL, v).tags["mlops.mlflow_run_id"]: v for v in (v1, v2, v3)}
        reg = Registry(trained.tracking_uri, client, trained.target, v1, v2, v3, run_versions)
        assert (v1, v2, v3) == ("1", "2", "3")
        reg.reset()
        yield reg


@pytest.fixture
def reg(registry: Registry) -> Iterator[Registry]:
    registry.reset()
    yield registry
    registry.reset()


# -- gateway (per test) ---------------------------------------------------------------------------


@dataclass
class Served:
    gateway: Any
    http: TestClient
    log_root: Path

    def predict(self, body: Any, request_id: str | None = None, model: str = MODEL) -> Any:
        headers = {"X-Request-ID": request_id} if request_id else {}
        if isinstance(body, bytes | str):  # a raw body, declared as JSON (the content type is checked first)
            headers["content-type"] = "application/json"
            return self.http.post(f"/v1/models/{model}/predict", content=body, headers=headers)
        return self.http.post(f"/v1/models/{model}/predict", json=body, headers=headers)

    def ready(self) -> dict[str, Any]:
        return dict(self.http.get("/ready").json())

    def metrics(self) -> str:
        return str(self.http.get("/metrics").text)

    def logged(self) -> Any:
        from airflow_mlops.prediction_log import LocalStorage, read_predictions

        self.gateway.plog.flush()
        return read_predictions(LocalStorage(self.log_root), MODEL)


@pytest.fixture
def serve(reg: Registry, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    from airflow_mlops.serving.app import create_app
    from airflow_mlops.serving.server import ServeOptions, build_gateway

    numbers = itertools.count()
    with ExitStack() as stack:

        def start(models: tuple[str, ...] = (MODEL,), **options: Any) -> Served:
            """A gateway in this process; its shadow on a thread unless ``shadow_mode="process"``."""
            log_root = tmp_path / f"plog{next(numbers)}"
            options.setdefault("shadow_mode", "thread")
            gateway = build_gateway(
                ServeOptions(
                    models=list(models),
                    tracking_uri=reg.tracking_uri,
                    log_root=str(log_root),
                    poll_interval=0.2,
                    flush_interval=0.2,
                    **options,
                )
            )
            gateway.start()
            stack.callback(gateway.stop)
            http = stack.enter_context(TestClient(create_app(gateway)))
            return Served(gateway, http, log_root)

        yield start


# -- predict ----------------------------------------------------------------------------------------


def test_predict_single_record_answers_every_field_and_logs_it(serve: Callable[..., Served], reg: Registry) -> None:
    served = serve()
    response = served.predict({"records": record()}, request_id="req-single-1")

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-single-1"
    body = response.json()
    assert set(body) == {"model", "model_version", "role", "request_id", "predictions"}
    assert (body["model"], body["model_version"], body["role"], body["request_id"]) == (
        MODEL,
        reg.v1,
        "champion",
        "req-single-1",
    )
    [prediction] = body["predictions"]
    assert set(prediction) == {"prediction", "score"}
    assert prediction["prediction"] in (0, 1)
    assert 0.0 <= prediction["score"] <= 1.0
    assert prediction["prediction"] == int(prediction["score"] >= 0.5)

    rows = served.logged()
    assert list(rows["request_id"]) == ["req-single-1"]
    row = rows.iloc[0]
    assert (row["model"], row["version"], row["role"], row["error"]) == (MODEL, reg.v1, "champion", None)
    assert json.loads(row["inputs"]) == record()
    assert json.loads(row["output"]) == prediction
    assert row["latency_ms"] >= 0.0

    generated = served.predict({"records": record()})  # no X-Request-ID: the gateway makes one and echoes it
    assert generated.status_code == 200
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
    assert len(generated.json()["request_id"]) == 32


def test_predict_batch_answers_in_order_and_logs_each_row_as_id_hash_index(
    serve: Callable[..., Served], reg: Registry
) -> None:
    served = serve()
    batch = [record("grocery", amount=5.0), record("travel", amount=4000.0, hour=2), record("online", amount=800.0)]
    singles = [
        served.predict({"records": r}, request_id=f"one-{i}").json()["predictions"][0] for i, r in enumerate(batch)
    ]

    response = served.predict({"records": batch}, request_id="req-batch-1")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["model_version"], body["role"], body["request_id"]) == (
        MODEL,
        reg.v1,
        "champion",
        "req-batch-1",
    )
    assert body["predictions"] == singles  # row i answers record i
    rows = served.logged()
    rows = rows[rows["request_id"].str.startswith("req-batch-1")].sort_values("request_id")
    assert list(rows["request_id"]) == ["req-batch-1#0", "req-batch-1#1", "req-batch-1#2"]
    assert [json.loads(x) for x in rows["inputs"]] == batch
    assert [json.loads(x) for x in rows["output"]] == singles
    assert set(rows["role"]) == {"champion"} and set(rows["version"]) == {reg.v1}


# -- bad input: 422 naming the field, never a 5xx -----------------------------------------------------


def _problems(response: Any) -> list[tuple[list[Any], str]]:
    assert response.status_code == 422, response.text
    return [(p["loc"], p["msg"]) for p in response.json()["detail"]]


def test_bad_input_is_a_422_that_names_the_field(serve: Callable[..., Served]) -> None:
    served = serve()
    missing = record()
    del missing["hour"]

    assert _problems(served.predict({"records": missing}, request_id="bad-1")) == [
        (["records", "hour"], "field required")
    ]
    assert _problems(served.predict({"records": record(colour="red")})) == [
        (["records", "colour"], f"unknown field; expected one of {COLUMNS}")
    ]
    assert _problems(served.predict({"records": record(amount="abc")})) == [
        (["records", "amount"], "expected a number, got 'abc'")
    ]
    assert _problems(served.predict({"records": [record(), record(card_present=True)]})) == [
        (["records", 1, "card_present"], "expected a number, got True")
    ]
    nan_category = json.dumps({"records": record(merchant_category=math.nan)})
    assert "NaN" in nan_category
    assert _problems(served.predict(nan_category)) == [
        (["records", "merchant_category"], "missing values are not allowed for string column")
    ]
    assert _problems(served.predict(json.dumps({"records": record(amount=math.inf)}))) == [
        (["records", "amount"], "expected a finite number, got inf")
    ]
    invalid_json = served.predict(b'{"records": {"amount": 1', request_id="bad-json")
    [(loc, msg)] = _problems(invalid_json)
    assert loc == ["body"] and msg.startswith("body is not valid JSON: ")
    assert invalid_json.headers.get("x-request-id") is None  # answered before routing
    [(loc, msg)] = _problems(served.predict([record()]))
    assert (
        loc == ["body"] and msg.startswith('expected a JSON object {"records": [{...}, ...]}') and "got an array" in msg
    )
    [(loc, msg)] = _problems(served.predict({"rows": [record()]}))
    assert loc == ["body"] and msg.endswith("got an object with keys ['rows']")
    assert _problems(served.predict({"records": []})) == [
        (["records"], "expected at least one record, got an empty array")
    ]
    assert _problems(served.predict({"records": "x"})) == [
        (["records"], "expected an array of records or one record object, got a string")
    ]
    assert _problems(served.predict({"records": [record(), 7]})) == [
        (["records", 1], "expected an object of column values, got a number")
    ]
    # a bad request still carries its id, in the body and the header
    echoed = served.predict({"records": missing}, request_id="bad-1")
    assert echoed.json()["request_id"] == "bad-1" and echoed.headers["x-request-id"] == "bad-1"
    # nothing was predicted, so nothing was logged
    assert served.logged().empty


def test_oversize_batch_is_refused_with_the_limit(serve: Callable[..., Served]) -> None:
    served = serve(max_batch=5)

    assert served.predict({"records": [record()] * 5}).status_code == 200
    assert _problems(served.predict({"records": [record()] * 6})) == [
        (["records"], "batch of 6 records exceeds the limit of 5")
    ]


BAD_BODIES: list[Any] = [
    b"",
    b"\xff\xfe\x00garbage",
    b"null",
    b"42",
    b'"records"',
    b"[]",
    {},
    {"records": None},
    {"records": {}},
    {"records": [[]]},
    {"records": record(), "extra": 1},
    {"records": record(amount=10**400)},
    {"records": record(amount=None, hour=None, merchant_category=None)},
    {"records": record(amount={"nested": [1, 2]})},
    {"records": record(merchant_category=["a"])},
    {"records": record(merchant_category=12)},
    {"records": {str(i): i for i in range(500)}},
    {"records": [{"amount": "x"}] * 200},
    b'{"records": {"amount": NaN, "hour": Infinity}}',
    b'{"records": {"amount": 1e999}}',
]


def test_no_bad_body_ever_gets_a_5xx(serve: Callable[..., Served]) -> None:
    served = serve()
    statuses = Counter()
    for body in BAD_BODIES:
        response = served.predict(body)
        statuses[response.status_code] += 1
        assert response.status_code == 422, (body if isinstance(body, bytes) else json.dumps(body)[:80], response.text)
        detail = response.json()["detail"]
        assert detail and all(isinstance(p["loc"], list) and p["msg"] for p in detail)
    assert statuses == {422: len(BAD_BODIES)}
    assert len(served.predict({"records": [{"amount": "x"}] * 200}).json()["detail"]) == 50  # capped
    # a missing numeric value is imputed, not an error
    assert served.predict({"records": record(amount=None)}).status_code == 200


def test_deeply_nested_json_is_a_422_not_a_503(serve: Callable[..., Served]) -> None:
    served = serve()
    response = served.predict(b'{"records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert response.status_code == 422, response.text


def test_invalid_json_for_an_unknown_model_is_404_and_adds_no_metric_series(serve: Callable[..., Served]) -> None:
    served = serve()
    response = served.predict(b"{", model="no_such_model")
    assert response.status_code == 404, response.text
    assert "no_such_model" not in served.metrics()


def test_unknown_model_is_404_and_a_model_without_champion_is_503(serve: Callable[..., Served]) -> None:
    served = serve(models=(MODEL, NO_CHAMPION))

    unknown = served.predict({"records": record()}, request_id="r-404", model="no_such_model")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "unknown model 'no_such_model'", "request_id": "r-404"}
    unreleased = served.predict({"records": record()}, request_id="r-503", model=NO_CHAMPION)
    assert unreleased.status_code == 503
    assert unreleased.json() == {
        "detail": f"model {NO_CHAMPION!r} has no servable champion yet",
        "request_id": "r-503",
    }
    ready = served.http.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert ready.json()["models"][NO_CHAMPION] == {
        "champion": None,
        "canary": None,
        "canary_percent": 0.0,
        "shadow": None,
        "error": None,
    }
    assert served.predict({"records": record()}).status_code == 200  # the other model still serves


# -- canary ---------------------------------------------------------------------------------------------


@pytest.mark.integration  # hundreds of requests through the gateway
def test_canary_takes_its_share_deterministically_by_request_id(serve: Callable[..., Served], reg: Registry) -> None:
    from airflow_mlops.serving.routing import canary_bucket

    reg.target.set_traffic(MODEL, reg.v3, 30, actor="test", reason="canary 30 %")
    served = serve()
    assert served.ready()["models"][MODEL]["canary"] == reg.v3
    assert served.ready()["models"][MODEL]["canary_percent"] == 30.0

    ids = [f"share-{i}" for i in range(1000)]
    roles: dict[str, str] = {}
    for request_id in ids:
        body = served.predict({"records": record()}, request_id=request_id).json()
        roles[request_id] = body["role"]
        assert body["model_version"] == (reg.v3 if body["role"] == "canary" else reg.v1)

    share = sum(role == "canary" for role in roles.values()) / len(ids) * 100
    assert 25.0 <= share <= 35.0, share
    key = served.gateway.settings.routing_key  # the split is keyed by the gateway's secret
    assert roles == {i: ("canary" if canary_bucket(i, key) < 30.0 else "champion") for i in ids}
    again = {i: served.predict({"records": record()}, request_id=i).json()["role"] for i in ids[:100]}
    assert again == {i: roles[i] for i in ids[:100]}


def _metric(text: str, line_prefix: str) -> float:
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_prefix + " ")]
    assert len(values) == 1, f"{line_prefix!r}: {values}"
    return float(values[0])


def test_an_unseen_category_for_a_strict_champion_is_a_422_naming_the_field_not_an_error(
    serve: Callable[..., Served], reg: Registry
) -> None:
    """v2 refuses categories it never saw (``unknown_categories: error``): as champion, that is the client's
    input (422 with the field, the value and what is known), never a 5xx nor the version's error."""
    reg.target.promote(MODEL, reg.v2, actor="test", reason="strict champion")
    served = serve()
    assert served.ready()["models"][MODEL]["champion"] == reg.v2

    response = served.predict({"records": record(UNSEEN)}, request_id="crafted-champion")

    assert response.status_code == 422, response.text
    known = "['electronics', 'fuel', 'grocery', 'online', 'restaurant', 'travel']"
    assert response.json() == {
        "detail": [
            {
                "loc": ["records", "merchant_category"],
                "msg": f"unknown category 'crypto': this model refuses categories it did not see in training; "
                f"expected one of {known}",
            }
        ],
        "request_id": "crafted-champion",
    }
    text = served.metrics()
    assert _metric(text, f'mlops_gateway_rejected_total{{model="{MODEL}",reason="unknown_category"}}') == 1
    assert f'mlops_gateway_errors_total{{model="{MODEL}",role="champion",version="{reg.v2}"}} ' not in text
    assert served.logged().empty
    assert served.predict({"records": record("travel")}, request_id="known-category").status_code == 200


def test_a_canary_that_raises_on_valid_input_counts_an_error_and_the_champion_answers(
    serve: Callable[..., Served], reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops.deploy.health import canary_stats
    from airflow_mlops.serving.models import LoadedModel

    original = LoadedModel.predict

    def broken_v3(self: Any, frame: Any) -> Any:
        if self.version == reg.v3:
            raise RuntimeError("model bug")
        return original(self, frame)

    monkeypatch.setattr(LoadedModel, "predict", broken_v3)
    reg.target.set_traffic(MODEL, reg.v3, 100, actor="test", reason="broken canary at 100 %")
    served = serve()

    response = served.predict({"records": record("travel")}, request_id="genuine-failure")

    assert response.status_code == 200 and response.json()["role"] == "champion"
    canary = f'model="{MODEL}",role="canary",version="{reg.v3}"'
    assert _metric(served.metrics(), f"mlops_gateway_errors_total{{{canary}}}") == 1
    stats = canary_stats(served.logged(), None, canary=reg.v3, champion=reg.v1, metric=None)
    assert (stats.requests, stats.errors) == (1, 1)


def test_failing_canary_is_answered_by_the_champion_counted_and_logged(
    serve: Callable[..., Served], reg: Registry
) -> None:
    reg.target.set_traffic(MODEL, reg.v2, 100, actor="test", reason="broken canary at 100 %")
    served = serve()
    assert served.ready()["models"][MODEL]["canary"] == reg.v2

    for i in range(4):
        ok = served.predict({"records": record("travel")}, request_id=f"fb-ok-{i}")
        assert ok.status_code == 200
        assert (ok.json()["role"], ok.json()["model_version"]) == ("canary", reg.v2)
    answers = {}
    for i in range(3):
        response = served.predict({"records": record(UNSEEN)}, request_id=f"fb-crypto-{i}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["role"], body["model_version"], body["request_id"]) == ("champion", reg.v1, f"fb-crypto-{i}")
        answers[f"fb-crypto-{i}"] = body["predictions"][0]

    text = served.metrics()
    assert _metric(text, f'mlops_gateway_canary_fallbacks_total{{model="{MODEL}",version="{reg.v2}"}}') == 3
    canary = f'model="{MODEL}",role="canary",version="{reg.v2}"'
    assert _metric(text, f"mlops_gateway_requests_total{{{canary}}}") == 7
    assert _metric(text, f"mlops_gateway_errors_total{{{canary}}}") == 3
    champion = f'model="{MODEL}",role="champion",version="{reg.v1}"'
    assert _metric(text, f"mlops_gateway_requests_total{{{champion}}}") == 3
    assert _metric(text, f"mlops_gateway_errors_total{{{champion}}}") == 0

    rows = served.logged()
    for request_id, answer in answers.items():
        mine = rows[rows["request_id"] == request_id]
        assert sorted(zip(mine["version"], mine["role"], strict=True)) == [(reg.v1, "champion"), (reg.v2, "canary")]
        failed = mine[mine["role"] == "canary"].iloc[0]
        assert failed["output"] is None
        assert failed["error"].startswith("UnknownCategoryError: ") and UNSEEN in failed["error"]
        answered = mine[mine["role"] == "champion"].iloc[0]
        assert answered["error"] is None and json.loads(answered["output"]) == answer
    ok_rows = rows[rows["request_id"].str.startswith("fb-ok-")]
    assert len(ok_rows) == 4 and set(ok_rows["role"]) == {"canary"} and ok_rows["error"].isna().all()


# -- shadow ---------------------------------------------------------------------------------------------


SHADOW_TRAFFIC = [record("grocery"), record(UNSEEN), record("travel", amount=3000.0), record(UNSEEN, hour=23)]


@pytest.mark.parametrize("shadow_mode", ["thread", "process"])
def test_shadow_never_changes_the_answer_and_its_rows_are_logged(
    serve: Callable[..., Served], reg: Registry, shadow_mode: str
) -> None:
    """Both shadow modes: a thread of the gateway, or its own process (a spawned child, its own writer)."""
    served = serve(shadow_mode=shadow_mode)
    baseline = [served.predict({"records": r}, request_id=f"plain-{i}").json() for i, r in enumerate(SHADOW_TRAFFIC)]

    reg.target.start_shadow(MODEL, reg.v2, actor="test", reason="broken shadow")
    wait_until(lambda: served.ready()["models"][MODEL]["shadow"] == reg.v2, what="shadow v2 on /ready")
    shadowed = []
    for i, r in enumerate(SHADOW_TRAFFIC):
        response = served.predict({"records": r}, request_id=f"shadow-{i}")
        assert response.status_code == 200, response.text
        shadowed.append(response.json())

    assert [(b["model_version"], b["role"]) for b in shadowed] == [(reg.v1, "champion")] * len(SHADOW_TRAFFIC)
    assert [b["predictions"] for b in shadowed] == [b["predictions"] for b in baseline]

    def shadow_rows() -> Any:
        rows = served.logged()
        rows = rows[rows["role"] == "shadow"]
        return rows if len(rows) == len(SHADOW_TRAFFIC) else None

    # the process starts (imports, loads v2) after the gateway: give it time on a loaded machine
    rows = wait_until(shadow_rows, timeout=120.0, what="shadow rows in the prediction log").set_index("request_id")
    assert sorted(rows.index) == [f"shadow-{i}" for i in range(len(SHADOW_TRAFFIC))]
    assert set(rows["version"]) == {reg.v2}
    for i, r in enumerate(SHADOW_TRAFFIC):
        row = rows.loc[f"shadow-{i}"]
        assert json.loads(row["inputs"]) == r
        if r["merchant_category"] == UNSEEN:
            assert row["output"] is None and UNSEEN in row["error"]
        else:  # same training data and seed as v1: the shadow agrees where it does not fail
            assert row["error"] is None and json.loads(row["output"]) == shadowed[i]["predictions"][0]
    shadow_series = f'model="{MODEL}",role="shadow",version="{reg.v2}"'
    # the shadow process reports its observations right after logging its rows

    def counted() -> str | None:
        text = served.metrics()
        return text if _metric(text, f"mlops_gateway_requests_total{{{shadow_series}}}") == 4 else None

    text = wait_until(counted, what="the shadow's requests in /metrics")
    assert _metric(text, f"mlops_gateway_errors_total{{{shadow_series}}}") == 2
    assert "mlops_gateway_canary_fallbacks_total{" not in text


def test_slow_shadow_does_not_slow_the_client(
    serve: Callable[..., Served], reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops.serving.models import LoadedModel

    original = LoadedModel.predict
    shadow_threads: set[str] = set()

    def slow_for_v3(self: Any, frame: Any) -> Any:
        if self.version == reg.v3:
            shadow_threads.add(threading.current_thread().name)
            time.sleep(0.2)
        return original(self, frame)

    monkeypatch.setattr(LoadedModel, "predict", slow_for_v3)
    served = serve()
    n = 10

    def timed(prefix: str) -> list[float]:
        latencies = []
        for i in range(n):
            started = time.perf_counter()
            response = served.predict({"records": record()}, request_id=f"{prefix}-{i}")
            latencies.append(time.perf_counter() - started)
            assert (response.status_code, response.json()["role"]) == (200, "champion")
        return latencies

    timed("warm")
    without = statistics.median(timed("no-shadow"))
    reg.target.start_shadow(MODEL, reg.v3, actor="test", reason="slow shadow")
    wait_until(lambda: served.ready()["models"][MODEL]["shadow"] == reg.v3, what="shadow v3 on /ready")
    with_shadow = statistics.median(timed("slow-shadow"))

    assert with_shadow < 0.2, (without, with_shadow)  # a synchronous shadow would add its 0.2 s to every request
    assert with_shadow < 5 * without + 0.05, (without, with_shadow)

    def slow_rows() -> Any:
        rows = served.logged()
        rows = rows[rows["role"] == "shadow"]
        return rows if len(rows) == n else None

    rows = wait_until(slow_rows, timeout=10.0, what="slow shadow rows")
    assert (rows["latency_ms"] >= 200.0).all() and rows["error"].isna().all()
    assert shadow_threads == {"mlops-shadow"}


# -- verified, loaded once, followed live ---------------------------------------------------------------------


def _tamper(path: Path) -> bytes:
    original = path.read_bytes()
    path.write_bytes(original + b"\n# tampered\n")
    return original


def test_tampered_artifacts_are_not_served(serve: Callable[..., Served], reg: Registry) -> None:

    conda = reg.artifacts(reg.v3) / "conda.yaml"
    expected = reg.client.get_model_version(MODEL, reg.v3).tags[Tag.MODEL_SHA256]
    served = serve()
    original = _tamper(conda)
    try:
        reg.target.promote(MODEL, reg.v3, actor="test", reason="promote a tampered version")
        failure = wait_until(lambda: served.gateway.cache.failure(MODEL, reg.v3), what="v3 load failure")
        time.sleep(0.5)  # a few more polls: the failure is final, the old champion stays
        assert served.ready()["models"][MODEL]["champion"] == reg.v1
        assert served.predict({"records": record()}).json()["model_version"] == reg.v1
    finally:
        conda.write_bytes(original)
    assert failure.startswith(f"{MODEL} v{reg.v3}: artifact checksum ")
    assert failure.endswith(f"does not match {expected} recorded at registration")
    assert served.gateway.cache.get(MODEL, reg.v3) is None


@pytest.mark.integration  # one more gateway start each
@pytest.mark.parametrize("tags", [{Tag.GATE: "failed"}, {Tag.REJECTED_REASON: "shadow disagreed"}])
def test_an_alias_moved_outside_airflow_mlops_does_not_bypass_the_gate(
    serve: Callable[..., Served], reg: Registry, tags: dict[str, str]
) -> None:
    """Anyone with MLflow write access can move ``champion``; the gateway still serves only gated versions."""
    served = serve()
    before = reg.client.get_model_version(MODEL, reg.v3).tags
    for key, value in tags.items():
        reg.client.set_model_version_tag(MODEL, reg.v3, key, value)
    try:
        reg.client.set_registered_model_alias(MODEL, "champion", reg.v3)  # not through Deployments
        polls = served.gateway.watcher.status.last_poll
        wait_until(lambda: served.gateway.watcher.status.last_poll >= polls + 1.0, what="a few polls")
        assert served.ready()["models"][MODEL]["champion"] == reg.v1
        assert served.predict({"records": record()}).json()["model_version"] == reg.v1
        assert served.gateway.cache.get(MODEL, reg.v3) is None
    finally:
        reg.client.set_registered_model_alias(MODEL, "champion", reg.v1)
        for key in tags:
            if key in before:
                reg.client.set_model_version_tag(MODEL, reg.v3, key, before[key])
            else:
                reg.client.delete_model_version_tag(MODEL, reg.v3, key)


def test_a_version_without_checksum_tag_is_refused(serve: Callable[..., Served], reg: Registry) -> None:
    from airflow_mlops.serving.models import ModelCache, ModelLoadError

    expected = reg.client.get_model_version(MODEL, reg.v3).tags[Tag.MODEL_SHA256]
    served = serve()
    reg.client.delete_model_version_tag(MODEL, reg.v3, Tag.MODEL_SHA256)
    try:
        with pytest.raises(ModelLoadError, match=rf"^{MODEL} v{reg.v3} has no {Tag.MODEL_SHA256} tag; refusing"):
            ModelCache(reg.client).load(MODEL, reg.v3)
        reg.target.promote(MODEL, reg.v3, actor="test", reason="promote an untagged version")
        failure = wait_until(lambda: served.gateway.cache.failure(MODEL, reg.v3), what="v3 load failure")
        assert served.ready()["models"][MODEL]["champion"] == reg.v1
        assert served.predict({"records": record()}).json()["model_version"] == reg.v1
    finally:
        reg.client.set_model_version_tag(MODEL, reg.v3, Tag.MODEL_SHA256, expected)
    assert failure == f"{MODEL} v{reg.v3} has no {Tag.MODEL_SHA256} tag; refusing an unverifiable model"


def test_each_version_is_loaded_once(
    serve: Callable[..., Served], reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.sklearn

    original = mlflow.sklearn.load_model
    loads: Counter[str] = Counter()

    def counting(model_uri: str, *args: Any, **kwargs: Any) -> Any:
        run_id = yaml.safe_load((Path(model_uri) / "MLmodel").read_text())["run_id"]
        loads[reg.run_versions[run_id]] += 1
        return original(model_uri, *args, **kwargs)

    monkeypatch.setattr(mlflow.sklearn, "load_model", counting)
    reg.target.set_traffic(MODEL, reg.v3, 50, actor="test", reason="canary")
    reg.target.start_shadow(MODEL, reg.v2, actor="test", reason="shadow")
    served = serve()
    assert loads == {reg.v1: 1, reg.v2: 1, reg.v3: 1}  # all loaded by the first poll, before any request

    roles = Counter()
    for i in range(40):
        body = served.predict({"records": [record(), record("fuel")]}, request_id=f"once-{i}").json()
        roles[(body["model_version"], body["role"])] += 1
    assert set(roles) == {(reg.v1, "champion"), (reg.v3, "canary")}
    polls = served.gateway.watcher.status.last_poll
    wait_until(lambda: served.gateway.watcher.status.last_poll >= polls + 0.6, what="three more polls")
    wait_until(lambda: len(served.logged().query("role == 'shadow'")) == 80, what="shadow rows")
    assert loads == {reg.v1: 1, reg.v2: 1, reg.v3: 1}


def test_registry_changes_take_effect_without_restart(serve: Callable[..., Served], reg: Registry) -> None:
    served = serve()
    assert served.predict({"records": record()}).json()["model_version"] == reg.v1

    reg.target.promote(MODEL, reg.v3, actor="test", reason="promote v3")
    promoted = time.monotonic()

    def switched() -> bool:
        champion = served.ready()["models"][MODEL]["champion"]
        answered = served.predict({"records": record()}, request_id=f"live-{time.monotonic()}").json()
        return champion == reg.v3 and answered["model_version"] == reg.v3 and answered["role"] == "champion"

    wait_until(switched, timeout=2.0, what="v3 on /ready and in responses")
    assert time.monotonic() - promoted < 2.0
    assert served.ready()["models"][MODEL] == {
        "champion": reg.v3,
        "canary": None,
        "canary_percent": 0.0,
        "shadow": None,
        "error": None,
    }

    reg.target.set_traffic(MODEL, reg.v1, 100, actor="test", reason="old champion as canary")
    # the alias moves before the percentage tag: wait for both (a poll in between sees the canary at 0 %)
    wait_until(
        lambda: (
            (served.ready()["models"][MODEL]["canary"], served.ready()["models"][MODEL]["canary_percent"])
            == (reg.v1, 100.0)
        ),
        timeout=2.0,
        what="canary v1 at 100 %",
    )
    body = served.predict({"records": record()}, request_id="after-canary").json()
    assert (body["model_version"], body["role"]) == (reg.v1, "canary")


# -- health, readiness, metrics, feedback -----------------------------------------------------------------


def test_health_ready_and_metrics(serve: Callable[..., Served], reg: Registry) -> None:
    from airflow_mlops.serving.routing import canary_bucket

    reg.target.set_traffic(MODEL, reg.v3, 30, actor="test", reason="canary 30 %")
    served = serve()

    health = served.http.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = served.http.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "models": {
            MODEL: {"champion": reg.v1, "canary": reg.v3, "canary_percent": 30.0, "shadow": None, "error": None}
        },
    }

    ids = [f"metrics-{i}" for i in range(30)]
    for request_id in ids:
        assert served.predict({"records": record()}, request_id=request_id).status_code == 200
    on_canary = sum(canary_bucket(i, served.gateway.settings.routing_key) < 30.0 for i in ids)
    assert 0 < on_canary < len(ids)
    served.predict({"records": record(amount="x")})
    served.predict({"records": record(amount="x")})
    served.predict(b"{")

    response = served.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    for version, role, count in ((reg.v1, "champion", len(ids) - on_canary), (reg.v3, "canary", on_canary)):
        labels = f'model="{MODEL}",role="{role}",version="{version}"'  # prometheus_client sorts labels
        assert _metric(text, f"mlops_gateway_requests_total{{{labels}}}") == count
        assert _metric(text, f"mlops_gateway_errors_total{{{labels}}}") == 0
        assert _metric(text, f'mlops_gateway_request_latency_seconds_bucket{{le="+Inf",{labels}}}') == count
        assert _metric(text, f"mlops_gateway_request_latency_seconds_count{{{labels}}}") == count
        assert 0 < _metric(text, f"mlops_gateway_request_latency_seconds_sum{{{labels}}}") < count
        buckets = [
            line
            for line in text.splitlines()
            if line.startswith("mlops_gateway_request_latency_seconds_bucket{le=") and f",{labels}}}" in line
        ]
        assert len(buckets) == 12
        counts = [float(line.rsplit(" ", 1)[1]) for line in buckets]
        assert counts == sorted(counts)  # cumulative
    assert _metric(text, f'mlops_gateway_rejected_total{{model="{MODEL}",reason="invalid_input"}}') == 2
    assert _metric(text, f'mlops_gateway_rejected_total{{model="{MODEL}",reason="invalid_json"}}') == 1
    for family, kind in (
        ("mlops_gateway_requests_total", "counter"),
        ("mlops_gateway_errors_total", "counter"),
        ("mlops_gateway_request_latency_seconds", "histogram"),
        ("mlops_gateway_rejected_total", "counter"),
        ("mlops_gateway_canary_fallbacks_total", "counter"),
    ):
        assert f"# TYPE {family} {kind}" in text.splitlines()


def test_feedback_is_validated_and_recorded(serve: Callable[..., Served]) -> None:
    from airflow_mlops.prediction_log import LocalStorage, read_feedback

    served = serve()
    url = f"/v1/models/{MODEL}/feedback"

    single = served.http.post(url, json={"request_id": "fb-1", "label": 1})
    assert (single.status_code, single.json()) == (200, {"recorded": 1})
    many = served.http.post(
        url, json={"feedback": [{"request_id": "fb-2", "label": 0}, {"request_id": "fb-3#1", "label": 1}]}
    )
    assert (many.status_code, many.json()) == (200, {"recorded": 2})

    # a label must be one of the champion's classes: anything else is refused, nothing of the batch is logged
    junk = [{"y": 1}, 7, 0.5, True, "1", None, [1]]
    refused = served.http.post(
        url, json={"feedback": [{"request_id": f"j{i}", "label": v} for i, v in enumerate(junk)]}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"] == [
        {"loc": ["feedback", i, "label"], "msg": f"expected one of the model's classes [0, 1], got {v!r}"}
        for i, v in enumerate(junk)
    ]
    # the first label of a request wins: a second one is refused (409 when nothing else is new) and counted
    again = served.http.post(url, json={"request_id": "fb-1", "label": 0})
    assert again.status_code == 409 and again.json()["duplicates"] == ["fb-1"] and again.json()["recorded"] == 0
    mixed = served.http.post(
        url, json={"feedback": [{"request_id": "fb-2", "label": 1}, {"request_id": "fb-5", "label": 1}]}
    )
    assert (mixed.status_code, mixed.json()["recorded"], mixed.json()["duplicates"]) == (200, 1, ["fb-2"])
    metrics = served.http.get("/metrics").text
    assert f'mlops_gateway_feedback_total{{model="{MODEL}",outcome="duplicate"}} 2.0' in metrics
    assert f'mlops_gateway_feedback_total{{model="{MODEL}",outcome="recorded"}} 4.0' in metrics
    assert f'mlops_gateway_feedback_total{{model="{MODEL}",outcome="invalid"}} 7.0' in metrics

    invalid = served.http.post(url, json={"feedback": [{"request_id": "", "label": 1}, {"request_id": "ok"}, 5]})
    assert invalid.status_code == 422
    assert invalid.json() == {
        "detail": [
            {"loc": ["feedback", 0, "request_id"], "msg": "expected a non-empty string"},
            {"loc": ["feedback", 1, "label"], "msg": "field required"},
            {"loc": ["feedback", 2, "request_id"], "msg": "expected a non-empty string"},
        ]
    }
    no_label = served.http.post(url, json={"request_id": "fb-4"})
    assert (no_label.status_code, no_label.json()["detail"][0]["loc"]) == (422, ["feedback", 0, "label"])
    for body in ({"feedback": []}, {"feedback": "x"}):
        empty = served.http.post(url, json=body)
        assert (empty.status_code, empty.json()["detail"][0]["loc"]) == (422, ["body"])
    bad_json = served.http.post(url, content=b"{oops", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and bad_json.json()["detail"][0]["loc"] == ["body"]

    served.gateway.plog.flush()
    rows = read_feedback(LocalStorage(served.log_root), MODEL).sort_values("request_id")
    assert list(rows["request_id"]) == ["fb-1", "fb-2", "fb-3#1", "fb-5"]
    assert [json.loads(label) for label in rows["label"]] == [1, 0, 1, 1]
    assert set(rows["model"]) == {MODEL}


def test_feedback_for_an_unknown_model_is_404(serve: Callable[..., Served]) -> None:
    served = serve()
    for model in ("no_such_model", "bad%20name"):
        response = served.http.post(f"/v1/models/{model}/feedback", json={"request_id": "x", "label": 1})
        assert response.status_code == 404, (model, response.status_code, response.text)


# -- a hostile client ------------------------------------------------------------------------------------------

KEY = "k3y-for-tests-0123456789abcdef"


def test_with_api_keys_on_predict_and_feedback_need_one(
    serve: Callable[..., Served], reg: Registry, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# gateway API keys\n{KEY}\n")
    served = serve(api_keys_file=str(keys))
    predict, feedback = f"/v1/models/{MODEL}/predict", f"/v1/models/{MODEL}/feedback"

    for headers in ({}, {"authorization": "Bearer wrong-key-0123456789"}, {"x-api-key": KEY[:-1]}):
        for url, body in ((predict, {"records": record()}), (feedback, {"request_id": "x", "label": 1})):
            refused = served.http.post(url, json=body, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", (url, headers)
    assert served.http.post(predict, json={"records": record()}, headers={"x-api-key": KEY}).status_code == 200
    ok = served.http.post(feedback, json={"request_id": "x", "label": 1}, headers={"authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    assert served.http.get("/health").status_code == 200  # probes stay open


@pytest.mark.integration  # one more gateway start each
def test_a_client_over_its_rate_gets_429_with_retry_after(serve: Callable[..., Served], reg: Registry) -> None:
    served = serve(rate_limit=0.5, rate_burst=3)
    statuses = [served.predict({"records": record()}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = served.predict({"records": record()})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


@pytest.mark.integration  # one more gateway start each
def test_bodies_are_checked_before_they_are_parsed(serve: Callable[..., Served], reg: Registry) -> None:
    served = serve(max_body_bytes=2048)
    url = f"/v1/models/{MODEL}/predict"
    form = served.http.post(url, content=json.dumps({"records": record()}), headers={"content-type": "text/plain"})
    assert form.status_code == 415 and "Content-Type must be application/json" in form.text
    big = {"records": [record() for _ in range(40)]}
    assert served.http.post(url, json=big).status_code == 413
    assert (
        served.http.post(url, json={"records": record()}, headers={"content-type": "application/json"}).status_code
        == 200
    )
    fb = served.http.post(f"/v1/models/{MODEL}/feedback", content=b'{"request_id": "a", "label": 1}')
    assert fb.status_code == 415


@pytest.mark.integration  # one more gateway start each
def test_a_client_cannot_choose_its_variant_through_the_request_id(serve: Callable[..., Served], reg: Registry) -> None:
    """Request ids that an unkeyed hash puts on the canary land there only as often as any other id."""
    from airflow_mlops.serving.routing import canary_bucket

    reg.target.set_traffic(MODEL, reg.v3, 5, actor="test", reason="canary 5 %")
    served = serve()
    chosen = [f"pick-{i}" for i in range(4000) if canary_bucket(f"pick-{i}") < 5.0][:60]
    roles = [served.predict({"records": record()}, request_id=rid).json()["role"] for rid in chosen]
    assert roles.count("canary") < 20  # an unkeyed split would send all 60 to the canary
