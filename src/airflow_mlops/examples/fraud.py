"""Seeded generator of synthetic card transactions with a fraud label, and knobs for drift.

``data_drift`` moves the feature distributions (bigger amounts, more online and travel
merchants, more card-not-present); ``concept_drift`` changes how features relate to fraud
(fraud moves from high amounts far from home to small, frequent online purchases). Both are in
[0, 1]; 0 is the reference world. The same arguments always give the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

MERCHANT_CATEGORIES: tuple[str, ...] = ("grocery", "restaurant", "fuel", "electronics", "travel", "online")
_BASE_MIX = (0.30, 0.20, 0.15, 0.12, 0.08, 0.15)
_DRIFT_MIX = (0.15, 0.12, 0.08, 0.20, 0.15, 0.30)
COLUMNS: tuple[str, ...] = (
    "amount",
    "hour",
    "distance_from_home_km",
    "txn_count_24h",
    "account_age_days",
    "card_present",
    "merchant_category",
    "is_fraud",
)


def generate_transactions(
    n_rows: int = 5000,
    *,
    seed: int = 0,
    data_drift: float = 0.0,
    concept_drift: float = 0.0,
) -> pd.DataFrame:
    """Return ``n_rows`` transactions; ``is_fraud`` is the 0/1 target (about 5-6 % positives)."""
    import numpy as np
    import pandas as pd

    if n_rows <= 0:
        raise ValueError(f"n_rows: got {n_rows}; expected a positive number of rows")
    for knob, value in (("data_drift", data_drift), ("concept_drift", concept_drift)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{knob}: got {value}; expected a number between 0 and 1")
    rng = np.random.default_rng(seed)
    mix = (1 - data_drift) * np.array(_BASE_MIX) + data_drift * np.array(_DRIFT_MIX)
    category = rng.choice(len(MERCHANT_CATEGORIES), size=n_rows, p=mix / mix.sum())
    amount = np.round(rng.lognormal(mean=3.4 + 0.6 * data_drift, sigma=1.0, size=n_rows), 2)
    hour = rng.integers(0, 24, size=n_rows)
    distance = np.round(rng.exponential(scale=15.0 * (1 + data_drift), size=n_rows), 2)
    txn_count = rng.poisson(lam=3.0 + 2.0 * data_drift, size=n_rows)
    account_age = rng.integers(1, 3650, size=n_rows)
    card_present = (rng.random(n_rows) < (0.7 - 0.3 * data_drift)).astype(int)

    night = ((hour < 6) | (hour >= 23)).astype(float)
    online = (category == MERCHANT_CATEGORIES.index("online")).astype(float)
    log_amount = np.log1p(amount)
    young = (account_age < 90).astype(float)
    # reference world: big purchases far from home, at night, card not present
    old_logit = (
        -5.4
        + 0.9 * (log_amount - 3.4)
        + 0.035 * distance
        + 1.2 * night
        + 1.3 * (1 - card_present)
        + 0.8 * young
        + 0.15 * txn_count
    )
    # drifted world: many small online purchases in a burst
    new_logit = -5.6 + 1.8 * online + 0.6 * txn_count - 0.5 * (log_amount - 3.4) + 1.0 * young
    logit = (1 - concept_drift) * old_logit + concept_drift * new_logit
    is_fraud = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)

    return pd.DataFrame(
        {
            "amount": amount,
            "hour": hour,
            "distance_from_home_km": distance,
            "txn_count_24h": txn_count,
            "account_age_days": account_age,
            "card_present": card_present,
            "merchant_category": np.array(MERCHANT_CATEGORIES)[category],
            "is_fraud": is_fraud,
        },
        columns=list(COLUMNS),
    )
