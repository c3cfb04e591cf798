"""Seeded generator of synthetic support tickets routed to a queue (a multiclass target with string labels).

Each ticket is routed to one of :data:`QUEUES`. The queue is drawn first, from a mix that drifts
linearly over the ticket's creation time (a mobile-app launch brings more ``technical`` tickets and
fewer ``billing`` ones as the months go by); the features are then drawn from distributions that
depend on the queue, with enough overlap that no feature decides it alone:

- ``channel``: billing tickets come by email, technical ones through the web form or chat, sales
  leads by phone;
- ``product``: technical tickets are about the API and the mobile app, sales leads about on-premises;
- ``customer_tier``: sales leads are mostly free-tier customers, billing questions paying ones;
- ``message_length`` (characters), ``attachments`` (screenshots, logs, invoices), ``hour`` (of
  ``created_at``; sales calls in office hours), ``prior_tickets`` in the last 90 days and
  ``account_age_days``.

``created_at`` (ISO timestamps, rows in time order) spans ``days`` days from ``start``, so a time
split trains on the older tickets and evaluates on the newest. ``mix_progress`` places the first and
the last day on the drift of the queue mix (0: :data:`MIX_START`, 1: :data:`MIX_END`; a later export
continues past 1). The same arguments always give the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

QUEUES: tuple[str, ...] = ("account", "billing", "sales", "technical")
CHANNELS: tuple[str, ...] = ("email", "chat", "phone", "web_form")
PRODUCTS: tuple[str, ...] = ("web_app", "mobile_app", "api", "on_prem")
TIERS: tuple[str, ...] = ("free", "standard", "premium")
COLUMNS: tuple[str, ...] = (
    "created_at",
    "channel",
    "product",
    "customer_tier",
    "message_length",
    "attachments",
    "hour",
    "prior_tickets",
    "account_age_days",
    "queue",
)

#: The queue mix (in :data:`QUEUES` order) at drift progress 0 and 1; linear in between and beyond.
MIX_START: tuple[float, ...] = (0.22, 0.36, 0.14, 0.28)
MIX_END: tuple[float, ...] = (0.18, 0.24, 0.16, 0.42)
#: The furthest drift progress allowed (every queue keeps a share of at least 0.10 up to there).
MAX_PROGRESS = 2.0

# P(category | queue): one row per queue, in QUEUES order; columns in the category tuple's order.
_CHANNEL = (
    (0.25, 0.25, 0.30, 0.20),  # account
    (0.50, 0.20, 0.15, 0.15),  # billing
    (0.15, 0.25, 0.45, 0.15),  # sales
    (0.15, 0.35, 0.10, 0.40),  # technical
)
_PRODUCT = (
    (0.40, 0.35, 0.10, 0.15),
    (0.45, 0.25, 0.15, 0.15),
    (0.25, 0.10, 0.25, 0.40),
    (0.20, 0.35, 0.35, 0.10),
)
_TIER = (
    (0.35, 0.40, 0.25),
    (0.15, 0.50, 0.35),
    (0.60, 0.30, 0.10),
    (0.30, 0.40, 0.30),
)
#: Per queue: median message length (characters), mean attachments, mean prior tickets, median account age.
_LENGTH = (350.0, 420.0, 260.0, 900.0)
_ATTACHMENTS = (0.3, 1.1, 0.2, 1.6)
_PRIOR = (2.5, 1.0, 0.3, 1.5)
_ACCOUNT_AGE = (900.0, 500.0, 60.0, 400.0)
#: Per queue: share of tickets created in office hours (9-17); the rest at any hour.
_OFFICE_HOURS = (0.60, 0.55, 0.90, 0.45)


def _mix(progress: np.ndarray) -> np.ndarray:
    """Per row, the queue probabilities at its point in time (``progress`` in [0, 1])."""
    import numpy as np

    start, end = np.array(MIX_START), np.array(MIX_END)
    mix = (1 - progress)[:, None] * start + progress[:, None] * end
    return np.asarray(mix / mix.sum(axis=1, keepdims=True))


def _draw(rng: np.random.Generator, queue: np.ndarray, table: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """One category index per row from the row's queue's distribution in ``table``."""
    import numpy as np

    cumulative = np.cumsum(np.array(table), axis=1)[queue]
    return np.asarray((rng.random(len(queue))[:, None] > cumulative).sum(axis=1).clip(0, len(table[0]) - 1))


def generate_tickets(
    n_rows: int = 5000,
    *,
    seed: int = 0,
    start: str = "2024-01-01",
    days: int = 120,
    mix_progress: tuple[float, float] = (0.0, 1.0),
) -> pd.DataFrame:
    """Return ``n_rows`` tickets in time order; ``queue`` is the string target (one of :data:`QUEUES`)."""
    import numpy as np
    import pandas as pd

    if n_rows <= 0:
        raise ValueError(f"n_rows: got {n_rows}; expected a positive number of rows")
    if days <= 0:
        raise ValueError(f"days: got {days}; expected a positive number of days")
    first, last = mix_progress
    if not (0.0 <= first <= MAX_PROGRESS and 0.0 <= last <= MAX_PROGRESS):
        raise ValueError(f"mix_progress: got {mix_progress}; expected two numbers between 0 and {MAX_PROGRESS}")
    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, days, size=n_rows))
    progress = first + (last - first) * day / max(days - 1, 1)
    cumulative = np.cumsum(_mix(progress), axis=1)
    queue = (rng.random(n_rows)[:, None] > cumulative).sum(axis=1).clip(0, len(QUEUES) - 1)

    channel = _draw(rng, queue, _CHANNEL)
    product = _draw(rng, queue, _PRODUCT)
    tier = _draw(rng, queue, _TIER)
    length = np.rint(rng.lognormal(np.log(np.array(_LENGTH)[queue]), 0.6)).astype(int).clip(20, 5000)
    attachments = rng.poisson(np.array(_ATTACHMENTS)[queue]).clip(0, 10)
    office = rng.random(n_rows) < np.array(_OFFICE_HOURS)[queue]
    hour = np.where(office, rng.integers(9, 18, size=n_rows), rng.integers(0, 24, size=n_rows))
    prior = rng.poisson(np.array(_PRIOR)[queue])
    age = np.rint(rng.lognormal(np.log(np.array(_ACCOUNT_AGE)[queue]), 0.9)).astype(int).clip(1, 3650)
    minute = rng.integers(0, 3600, size=n_rows)

    created = pd.Timestamp(start) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(hour * 3600 + minute, unit="s")
    frame = pd.DataFrame(
        {
            "created_at": created,
            "channel": np.array(CHANNELS)[channel],
            "product": np.array(PRODUCTS)[product],
            "customer_tier": np.array(TIERS)[tier],
            "message_length": length,
            "attachments": attachments,
            "hour": hour,
            "prior_tickets": prior,
            "account_age_days": age,
            "queue": np.array(QUEUES)[queue],
        },
        columns=list(COLUMNS),
    )
    frame = frame.sort_values("created_at", kind="stable").reset_index(drop=True)
    frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return frame
