"""What one row of the prediction log is: the record types, their columns and Arrow schemas, and validation.

A record is checked when it is appended (:func:`check_prediction`, :func:`check_feedback`), while the caller
can still see the error: a bad model name (it becomes a path segment) or a naive timestamp would otherwise
poison a whole flush later. Role names are the serving roles of :mod:`airflow_mlops.vocabulary`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_mlops.vocabulary import ROLES

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FEEDBACK_COLUMNS",
    "KINDS",
    "PREDICTION_COLUMNS",
    "ROW_ID",
    "FeedbackRecord",
    "Kind",
    "PredictionRecord",
    "check_feedback",
    "check_model",
    "check_prediction",
    "columns",
    "finite_number",
    "hour_of",
    "logged_answer",
    "schema",
]

Kind = Literal["predictions", "feedback"]
KINDS: tuple[Kind, ...] = ("predictions", "feedback")
PREDICTION_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    "model",
    "version",
    "role",
    "inputs",
    "output",
    "latency_ms",
    "error",
)
FEEDBACK_COLUMNS: tuple[str, ...] = ("request_id", "ts", "model", "label")
ROW_ID = "row_id"
"""Unique per logged row; readers drop repeats (a recovery may write a row twice)."""

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class PredictionRecord:
    """One input row of one request, as served by one model version in one role."""

    request_id: str
    ts: datetime  # timezone-aware; stored as UTC
    model: str
    version: str
    role: str  # one of vocabulary.ROLES ("champion" | "canary" | "shadow")
    inputs: str  # JSON text of the input record (one record per row)
    output: str | None  # JSON text of the model output for that record (None on error)
    latency_ms: float
    error: str | None


@dataclass(frozen=True)
class FeedbackRecord:
    """A label that arrived after the prediction, joined to it later by ``request_id``."""

    request_id: str
    ts: datetime  # timezone-aware; stored as UTC
    model: str
    label: str  # JSON text


def columns(kind: Kind) -> tuple[str, ...]:
    """The columns readers return for ``kind`` (``row_id`` is stored but not returned)."""
    return PREDICTION_COLUMNS if kind == "predictions" else FEEDBACK_COLUMNS


def hour_of(ts: datetime) -> datetime:
    """The UTC hour a record's partition is named after."""
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --- validation -----------------------------------------------------------------------------------------


def check_model(model: str, what: str) -> None:
    """Refuse a model name that is not a safe path segment; ``what`` starts the message."""
    if not _MODEL_NAME.fullmatch(model):
        raise ValueError(
            f"{what}: model name {model!r} is not a safe path segment "
            "(letters, digits, '.', '_', '-'; starting with a letter or digit)"
        )


def _check_ts(ts: datetime, request_id: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"Cannot log request {request_id!r}: ts {ts!r} is naive; pass a timezone-aware datetime")


def check_prediction(record: PredictionRecord) -> PredictionRecord:
    """Reject what would poison a whole flush later (bad path segment, naive time, unknown role)."""
    check_model(record.model, f"Cannot log request {record.request_id!r}")
    _check_ts(record.ts, record.request_id)
    if record.role not in ROLES:
        raise ValueError(
            f"Cannot log request {record.request_id!r}: role {record.role!r} is not one of {sorted(ROLES)}"
        )
    return record


def check_feedback(record: FeedbackRecord) -> FeedbackRecord:
    """Reject a label whose model name or timestamp would poison a flush."""
    check_model(record.model, f"Cannot log request {record.request_id!r}")
    _check_ts(record.ts, record.request_id)
    return record


# --- Arrow schemas ----------------------------------------------------------------------------------------


def schema(kind: Kind) -> pa.Schema:
    """The Parquet schema of a part file of ``kind``: the record's columns plus ``row_id``."""
    import pyarrow as pa

    string, ts = pa.string(), pa.timestamp("us", tz="UTC")
    if kind == "predictions":
        return pa.schema(
            [
                pa.field("request_id", string, nullable=False),
                pa.field("ts", ts, nullable=False),
                pa.field("model", string, nullable=False),
                pa.field("version", string, nullable=False),
                pa.field("role", string, nullable=False),
                pa.field("inputs", string, nullable=False),
                pa.field("output", string),
                pa.field("latency_ms", pa.float64(), nullable=False),
                pa.field("error", string),
                pa.field(ROW_ID, string, nullable=False),
            ]
        )
    return pa.schema(
        [
            pa.field("request_id", string, nullable=False),
            pa.field("ts", ts, nullable=False),
            pa.field("model", string, nullable=False),
            pa.field("label", string, nullable=False),
            pa.field(ROW_ID, string, nullable=False),
        ]
    )


def logged_answer(output: Any) -> dict[str, Any]:
    """A row's ``output`` (the answer's JSON) as a mapping; ``{}`` for none, or for text that is not a JSON object.

    Readers judge answers from the log; one they cannot read is no answer (their checks then count or fail it),
    never an exception that ends the check.
    """
    try:
        parsed = json.loads(output)
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def finite_number(value: Any) -> float | None:
    """A finite number from an answer (a probability, a regressor's value); ``None`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
