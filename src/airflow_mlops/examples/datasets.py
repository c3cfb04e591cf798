"""The example datasets shipped with ``dags/configs``: fraud batches, scikit-learn's diabetes data and support
tickets.

All come from code (seeded generators, a dataset bundled with scikit-learn), so nothing is downloaded and
``write_example_data`` reproduces the shipped files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FRAUD_ROWS = 6000
TICKETS_ROWS = 5000


def fraud_batch(batch: int, *, data_drift: float = 0.0, concept_drift: float = 0.0) -> pd.DataFrame:
    """Batch ``batch`` of fraud transactions (the seed is the batch number)."""
    from airflow_mlops.examples.fraud import generate_transactions

    return generate_transactions(FRAUD_ROWS, seed=batch, data_drift=data_drift, concept_drift=concept_drift)


def diabetes_frame() -> pd.DataFrame:
    """scikit-learn's bundled diabetes data in original units, plus categorical ``sex`` and ``age_band``."""
    import pandas as pd
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True, scaled=False)
    frame = bunch.frame.copy()
    frame["sex"] = frame["sex"].map({1.0: "sex_1", 2.0: "sex_2"})
    frame["age_band"] = pd.cut(frame["age"], bins=[0, 39, 59, 200], labels=["under_40", "40_to_59", "60_plus"]).astype(
        str
    )
    return frame.rename(columns={"target": "progression"})


def tickets_frame(seed: int = 1) -> pd.DataFrame:
    """Four months of support tickets routed to a queue (the shipped file is ``seed=1``)."""
    from airflow_mlops.examples.tickets import generate_tickets

    return generate_tickets(TICKETS_ROWS, seed=seed)


def write_example_data(data_dir: Path) -> list[Path]:
    """Write the example datasets under ``data_dir`` (what ``dags/data`` ships)."""
    written = []
    fraud = data_dir / "fraud" / "transactions_batch_001.csv"
    fraud.parent.mkdir(parents=True, exist_ok=True)
    fraud_batch(1).to_csv(fraud, index=False)
    written.append(fraud)
    diabetes = data_dir / "diabetes" / "diabetes.csv"
    diabetes.parent.mkdir(parents=True, exist_ok=True)
    diabetes_frame().to_csv(diabetes, index=False)
    written.append(diabetes)
    tickets = data_dir / "tickets" / "tickets.csv"
    tickets.parent.mkdir(parents=True, exist_ok=True)
    tickets_frame().to_csv(tickets, index=False)
    written.append(tickets)
    return written
