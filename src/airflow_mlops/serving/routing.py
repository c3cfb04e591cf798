"""Champion/canary traffic split by a hash of the request id.

Hashing (not ``random``) makes the split deterministic: a retried request with the same id lands
on the same version, and because the canary takes the buckets below its percentage, a request id
that was on the canary at 5 % stays there at 25 %, 50 % and 100 %.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

from airflow_mlops.vocabulary import Role

ServedRole = Literal["champion", "canary"]

_SCALE = 100.0 / 2**53
_BELOW_100 = math.nextafter(100.0, 0.0)


def canary_bucket(request_id: str, key: bytes = b"") -> float:
    """Map ``request_id`` to a number in [0, 100), uniform over ids, the same for the same id and ``key``.

    ``key`` (up to 64 bytes, secret) keys the hash: without it a client could search for request ids
    that land on the canary, or off it.
    """
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8, key=key[:64]).digest()
    # 53 bits fill a float's mantissa exactly; the clamp guards the last rounding step against 100.0
    return min((int.from_bytes(digest, "big") >> 11) * _SCALE, _BELOW_100)


def choose_role(request_id: str, canary_percent: float, has_canary: bool, key: bytes = b"") -> ServedRole:
    """``"canary"`` for about ``canary_percent`` % of request ids when a canary is deployed, else ``"champion"``."""
    if isinstance(canary_percent, bool) or not 0.0 <= canary_percent <= 100.0:  # also rejects NaN
        raise ValueError(f"canary_percent: got {canary_percent!r}; expected a number between 0 and 100")
    if not has_canary or canary_percent == 0.0:
        return Role.CHAMPION
    return Role.CANARY if canary_bucket(request_id, key) < canary_percent else Role.CHAMPION
