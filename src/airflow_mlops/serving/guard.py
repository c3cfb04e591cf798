"""Who may call the gateway, how much, and with what: API keys, per-client rate limits, bounded JSON bodies.

Everything a client sends is hostile until checked, and checked before it costs anything:

- **API keys** (optional; on as soon as one key is configured): ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>`` on ``/predict`` and ``/feedback`` (feedback decides rollouts, so it is never open
  while keys are on). Keys come from a secrets file (one per line, ``#`` comments) or an Airflow
  connection (its password, or ``extra.keys``); only their SHA-256 digests are kept and compared in
  constant time.
- **Rate limit** (optional): a token bucket per client (its key when keys are on, else its address):
  ``rate`` requests per second with bursts of ``burst``; beyond that ``429`` with ``Retry-After``.
- **Body**: ``Content-Type`` must be JSON (``415``); the body is read up to ``max_bytes`` and refused
  with ``413`` beyond, before it is parsed (a declared ``Content-Length`` over the cap is refused before
  reading anything); a large body is parsed on a worker thread, not on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["Admission", "ApiKeys", "BodyLimit", "RateLimiter", "read_json"]

#: Bodies up to this size are parsed inline; larger ones on a worker thread (the hop costs more than parsing).
_INLINE_PARSE_BYTES: Final = 64 * 1024
#: Clients remembered by the rate limiter (least recently seen forgotten first).
_MAX_CLIENTS: Final = 100_000


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The accepted API keys, as digests; empty = authentication off."""

    digests: frozenset[bytes] = frozenset()

    @classmethod
    def of(cls, keys: Iterable[str]) -> ApiKeys:
        cleaned = [key.strip() for key in keys if key and key.strip()]
        short = [key for key in cleaned if len(key) < 16]
        if short:
            raise ValueError(f"{len(short)} API key(s) shorter than 16 characters; use long random keys")
        return cls(frozenset(_digest(key) for key in cleaned))

    @classmethod
    def from_file(cls, path: str | Path) -> ApiKeys:
        """One key per line; blank lines and ``#`` comments are ignored."""
        lines = Path(path).read_text().splitlines()
        keys = cls.of(line for line in lines if not line.lstrip().startswith("#"))
        if not keys.enabled:
            raise ValueError(f"{path}: no API key in the file")
        return keys

    @classmethod
    def from_connection(cls, conn_id: str) -> ApiKeys:
        """An Airflow connection's password, or its ``extra.keys`` (a list), as the accepted keys."""
        from airflow.sdk.bases.hook import BaseHook

        conn = BaseHook.get_connection(conn_id)
        extra = conn.extra_dejson or {}
        listed = extra.get("keys") or []
        if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
            raise ValueError(f"connection {conn_id!r}: extra.keys must be a list of strings")
        keys = cls.of([*(listed), *([conn.password] if conn.password else [])])
        if not keys.enabled:
            raise ValueError(f"connection {conn_id!r}: no API key (set its password or extra.keys)")
        return keys

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def client_of(self, request: Request) -> str | None:
        """The presented key's identity (a short digest) when it is accepted; ``None`` otherwise."""
        presented = request.headers.get("x-api-key")
        if presented is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else None
        if not presented:
            return None
        digest = _digest(presented)
        accepted = False
        for known in self.digests:  # every digest compared: the time does not say which key was close
            accepted |= hmac.compare_digest(digest, known)
        return digest.hex()[:16] if accepted else None


@dataclass
class RateLimiter:
    """A token bucket per client: ``rate`` requests per second, bursts up to ``burst``."""

    rate: float
    burst: float
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)) or not self.burst >= 1:
            raise ValueError(f"rate limit: got rate={self.rate}, burst={self.burst}; expected rate > 0, burst >= 1")

    def wait_for(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may go now (a token is taken), else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self._buckets) > _MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


@dataclass
class Admission:
    """The door of ``/predict`` and ``/feedback``: the API key (when keys are on), then the rate limit."""

    api_keys: ApiKeys
    rate_limit: RateLimiter | None = None

    def refuse(self, request: Request) -> Response | None:
        """``None`` when the request may go on; else the 401 or 429 to answer, before anything is read."""
        client = request.client.host if request.client else "unknown"
        if self.api_keys.enabled:
            known = self.api_keys.client_of(request)
            if known is None:
                return JSONResponse(
                    {"detail": "missing or invalid API key (Authorization: Bearer <key>, or X-API-Key)"},
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
            client = known
        if self.rate_limit is not None:
            wait = self.rate_limit.wait_for(client)
            if wait > 0:
                return JSONResponse(
                    {"detail": "rate limit exceeded"},
                    status_code=429,
                    headers={"retry-after": str(max(1, math.ceil(wait)))},
                )
        return None


@dataclass(frozen=True)
class BodyLimit:
    max_bytes: int = 1 << 20


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body"], "msg": message}]}, status_code=status, headers=headers)


async def read_json(request: Request, limit: BodyLimit) -> tuple[Any, Response | None]:
    """The request's JSON body, or the response refusing it (415 not JSON, 413 too large, 422 invalid)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return None, _problem(415, f"Content-Type must be application/json, got {media or 'none'!r}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit.max_bytes):
        return None, _problem(413, f"body larger than {limit.max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit.max_bytes:
            return None, _problem(413, f"body larger than {limit.max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        parsed = json.loads(body) if size <= _INLINE_PARSE_BYTES else await asyncio.to_thread(json.loads, body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        return None, _problem(422, f"body is not valid JSON: {exc}")
    return parsed, None
