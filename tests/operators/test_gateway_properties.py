"""Property-based: hundreds of generated predict and feedback bodies never get a 5xx from the gateway.

The gateway's ASGI app runs in-process (Starlette ``TestClient``) over a real MLflow registry holding one
fraud version trained, registered and gated by the real operators. Bodies are any JSON (or not JSON at
all), and records built from the model's own columns with hostile values (NaN, infinities, huge integers,
strings where numbers go, unseen categories, nested objects, extra and missing fields). Every answer must
be a 2xx, or a 4xx whose ``detail`` names where the problem is (``loc``) and what is wrong (``msg``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import trained_registry

pytestmark = pytest.mark.integration  # a trained registry and ~1,100 requests: make test, not test-fast

MODEL = "fraud"
NUMERIC = ["amount", "hour", "distance_from_home_km", "txn_count_24h", "account_age_days", "card_present"]
CATEGORICAL = ["merchant_category"]
#: What a client may legitimately be told: bad body (413, 415, 422), duplicate label (409).
CLIENT_ERRORS = {409, 413, 415, 422}

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["grocery", "crypto", "", "NaN", "1e400", "-0"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=10,
)
GOOD = {
    "amount": st.floats(min_value=0, max_value=5000),
    "hour": st.integers(min_value=0, max_value=23),
    "distance_from_home_km": st.floats(min_value=0, max_value=500),
    "txn_count_24h": st.integers(min_value=0, max_value=40),
    "account_age_days": st.floats(min_value=0, max_value=4000),
    "card_present": st.sampled_from([0, 1]),
    "merchant_category": st.sampled_from(["grocery", "restaurant", "fuel", "electronics", "travel", "online"]),
}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A record of the model's columns, each value either plausible or hostile; sometimes a field missing or extra."""
    record = {name: draw(strategy if draw(st.integers(0, 3)) else JSON) for name, strategy in GOOD.items()}
    if draw(st.integers(0, 5)) == 0:
        record.pop(draw(st.sampled_from(sorted(record))))
    if draw(st.integers(0, 5)) == 0:
        record[draw(st.text(max_size=10))] = draw(JSON)
    return record


PREDICT_BODIES = st.one_of(
    st.builds(lambda r: {"records": r}, records()),
    st.builds(lambda rs: {"records": rs}, st.lists(records(), max_size=5)),
    st.builds(
        lambda r, extra: {"records": r, **extra}, records(), st.dictionaries(st.text(max_size=8), JSON, max_size=2)
    ),
    JSON,
)
FEEDBACK_ITEMS = st.fixed_dictionaries(
    {},
    optional={"request_id": st.one_of(st.text(max_size=20), JSON), "label": st.one_of(st.sampled_from([0, 1]), JSON)},
)
FEEDBACK_BODIES = st.one_of(
    FEEDBACK_ITEMS, st.builds(lambda items: {"feedback": items}, st.lists(FEEDBACK_ITEMS, max_size=4)), JSON
)
RAW_BODIES = st.one_of(
    st.binary(max_size=64), st.sampled_from([b"", b"{", b'{"records": [', b"\xff\xfe", b"NaN", b"[]"])
)


def _encode(body: Any) -> bytes:
    """JSON as a client would send it; Python's encoder writes NaN/Infinity, which is not JSON, on purpose."""
    return json.dumps(body, allow_nan=True).encode()


def _assert_answer(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code < 300:
        return
    assert response.status_code in CLIENT_ERRORS, (response.status_code, response.text[:500])
    detail = response.json()["detail"]
    if response.status_code == 409:
        assert response.json()["duplicates"], response.text
        return
    assert isinstance(detail, list) and detail, response.text[:500]
    for problem in detail:
        assert isinstance(problem["loc"], list) and problem["loc"], problem
        assert isinstance(problem["msg"], str) and problem["msg"], problem


@pytest.fixture(scope="module")
def http(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from airflow_mlops.serving.app import create_app
    from airflow_mlops.serving.server import ServeOptions, build_gateway

    root = tmp_path_factory.mktemp("gateway-properties")
    with trained_registry(request.config, root, [(None, "manual__properties")]) as trained:
        trained.target.promote(MODEL, trained.versions[0], actor="test", reason="property tests")
        tracking_uri = trained.tracking_uri
        gateway = build_gateway(
            ServeOptions(
                models=[MODEL],
                tracking_uri=tracking_uri,
                log_root=str(root / "plog"),
                poll_interval=0.2,
                flush_interval=0.2,
            )
        )
        gateway.start()
        try:
            with TestClient(create_app(gateway)) as client:
                ready = client.get("/ready")
                assert ready.status_code == 200, ready.text
                yield client
        finally:
            gateway.stop()


HYPOTHESIS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(body=PREDICT_BODIES)
def test_any_predict_body_is_answered_or_refused_with_its_field(http: Any, body: Any) -> None:
    response = http.post(
        f"/v1/models/{MODEL}/predict", content=_encode(body), headers={"content-type": "application/json"}
    )
    _assert_answer(response)
    if response.status_code == 200:
        for answer in response.json()["predictions"]:
            assert math.isfinite(answer["score"]), answer


@HYPOTHESIS
@given(body=FEEDBACK_BODIES)
def test_any_feedback_body_is_recorded_or_refused_with_its_field(http: Any, body: Any) -> None:
    response = http.post(
        f"/v1/models/{MODEL}/feedback", content=_encode(body), headers={"content-type": "application/json"}
    )
    _assert_answer(response)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=RAW_BODIES)
def test_bytes_that_are_not_json_are_refused_with_the_body_named(http: Any, raw: bytes) -> None:
    for path in ("predict", "feedback"):
        response = http.post(f"/v1/models/{MODEL}/{path}", content=raw, headers={"content-type": "application/json"})
        _assert_answer(response)
