"""Content fingerprints: the same bytes always give the same id, wherever they were read from.

A run records the fingerprint of the exact bytes it trained on, so a later run (or an auditor) can tell
whether the data changed, independent of object versions, ETags or modification times.
"""

from __future__ import annotations

import hashlib

__all__ = ["fingerprint"]


def fingerprint(data: bytes) -> str:
    """Return the SHA-256 hex digest of ``data`` (content-only, so local and remote copies match)."""
    return hashlib.sha256(data).hexdigest()
