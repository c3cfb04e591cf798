"""The canary gets its configured share of traffic, deterministically per request id."""

from __future__ import annotations

import hashlib
import math
import random
import uuid

import pytest

from airflow_mlops.serving.routing import canary_bucket, choose_role

N_REQUESTS = 10_000


@pytest.fixture(scope="module")
def request_ids() -> list[str]:
    """10,000 uuid4 ids, seeded so the share checks cannot flake (a ±2-point miss at 50 % is a 4-sigma event)."""
    rng = random.Random(20240611)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N_REQUESTS)]


def test_share_also_holds_for_fresh_random_ids() -> None:
    ids = [str(uuid.uuid4()) for _ in range(N_REQUESTS)]
    share = 100.0 * sum(choose_role(rid, 25, True) == "canary" for rid in ids) / N_REQUESTS
    assert abs(share - 25) <= 2.0


@pytest.mark.parametrize("percent", [0, 1, 5, 25, 50, 100], ids=lambda p: f"{p}pct")
def test_canary_share_is_within_two_points_of_the_setting(request_ids: list[str], percent: float) -> None:
    roles = [choose_role(rid, percent, has_canary=True) for rid in request_ids]
    share = 100.0 * roles.count("canary") / len(roles)
    if percent in (0, 100):
        assert share == percent  # exactly none, exactly all
    else:
        assert abs(share - percent) <= 2.0, f"canary share {share:.2f} % for a setting of {percent} %"


def test_fractional_percent_is_honoured(request_ids: list[str]) -> None:
    share = 100.0 * sum(choose_role(rid, 12.5, True) == "canary" for rid in request_ids) / N_REQUESTS
    assert abs(share - 12.5) <= 2.0


def test_same_id_same_role_and_bucket() -> None:
    rid = "9b2f6d0e-req"
    assert {choose_role(rid, 30, True) for _ in range(100)} == {choose_role(rid, 30, True)}
    assert canary_bucket(rid) == canary_bucket(rid)


def test_bucket_is_a_fixed_function_of_the_id() -> None:
    """Pinned so a change of hash (which would reshuffle live traffic mid-rollout) is a visible decision."""
    assert canary_bucket("") == pytest.approx(89.31675160897387, abs=1e-12)
    digest = hashlib.blake2b(b"request-1", digest_size=8).digest()
    assert canary_bucket("request-1") == (int.from_bytes(digest, "big") >> 11) * 100.0 / 2**53
    assert canary_bucket("request-1") != canary_bucket("request-2")


def test_buckets_are_uniform_over_deciles(request_ids: list[str]) -> None:
    counts = [0] * 10
    for rid in request_ids:
        bucket = canary_bucket(rid)
        assert 0.0 <= bucket < 100.0
        counts[int(bucket // 10)] += 1
    assert all(abs(c - N_REQUESTS / 10) < 200 for c in counts), counts  # ~6 standard deviations


def test_raising_the_percent_only_moves_requests_onto_the_canary(request_ids: list[str]) -> None:
    on_canary_at_5 = {rid for rid in request_ids if choose_role(rid, 5, True) == "canary"}
    on_canary_at_25 = {rid for rid in request_ids if choose_role(rid, 25, True) == "canary"}
    assert on_canary_at_5 < on_canary_at_25


def test_without_a_canary_the_champion_always_answers(request_ids: list[str]) -> None:
    assert {choose_role(rid, 100, has_canary=False) for rid in request_ids[:1000]} == {"champion"}


def test_odd_request_ids_still_route() -> None:
    for rid in ("", "é", "\ud800", "x" * 10_000):
        assert choose_role(rid, 100, True) == "canary"


@pytest.mark.parametrize("percent", [-0.1, 100.5, math.nan, math.inf, True], ids=str)
def test_percent_outside_0_to_100_is_rejected(percent: float) -> None:
    with pytest.raises(ValueError) as info:
        choose_role("r", percent, has_canary=True)
    assert str(info.value) == f"canary_percent: got {percent!r}; expected a number between 0 and 100"
    with pytest.raises(ValueError):
        choose_role("r", percent, has_canary=False)  # a bad setting is a bug even while no canary is deployed
