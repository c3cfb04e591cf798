"""The gateway's door without a server: API keys, the per-client token bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.serving.guard import ApiKeys, RateLimiter


def test_a_token_bucket_refills_at_its_rate_per_client() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    assert [limiter.wait_for("a", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    assert limiter.wait_for("b", now=0.0) == 0.0  # another client has its own bucket
    assert limiter.wait_for("a", now=0.5) == 0.0  # one token back after 1 / rate seconds
    assert limiter.wait_for("a", now=0.5) == pytest.approx(0.5)
    for bad in ({"rate": 0, "burst": 1}, {"rate": float("nan"), "burst": 1}, {"rate": 1, "burst": 0.5}):
        with pytest.raises(ValueError, match="rate limit"):
            RateLimiter(**bad)


def test_api_keys_come_from_a_file_or_a_connection_and_must_be_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys"
    path.write_text("# comment\n\n  first-key-0123456789  \n")
    assert len(ApiKeys.from_file(path).digests) == 1
    path.write_text("short\n")
    with pytest.raises(ValueError, match="shorter than 16 characters"):
        ApiKeys.from_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no API key in the file"):
        ApiKeys.from_file(path)
    conn = {"conn_type": "generic", "password": "conn-key-0123456789", "extra": {"keys": ["rotated-key-0123456789"]}}
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_KEYS", json.dumps(conn))
    assert len(ApiKeys.from_connection("gateway_keys").digests) == 2
    assert not ApiKeys().enabled
