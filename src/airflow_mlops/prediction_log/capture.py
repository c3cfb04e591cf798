"""SageMaker data capture read as prediction-log rows, so the same health checks judge a SageMaker endpoint.

With data capture on, SageMaker writes each request and answer of each variant as one JSON line under
``{DestinationS3Uri}/{EndpointName}/{VariantName}/yyyy/mm/dd/hh/*.jsonl`` (the hour of the invocation, UTC;
delivery takes a couple of minutes). A line is::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "...", "encoding": "JSON"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "...", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<the caller's>", "inferenceTime": "2026-12-07T10:00:00Z"},
     "eventVersion": "0"}

(AWS's "Capture data from real-time endpoint" guide; ``encoding`` is ``JSON``, ``CSV`` or ``BASE64``.) The
MLflow scoring server behind the endpoint takes ``dataframe_split``, ``dataframe_records``, ``instances`` or
``inputs`` and answers ``{"predictions": [...]}``: one row per input row, here each becomes one row of the
prediction log (``request_id`` ``<id>#<row>`` when a request holds more than one row).

A request is identified by the caller's ``InferenceId`` (the ``X-Amzn-SageMaker-Inference-Id`` header) when it
sent one, else by SageMaker's ``eventId``. A production request and its shadow copy can only be paired by the
``InferenceId``: AWS documents no other join. Lines that are not a capture record (malformed, hostile, or a
request the scoring server cannot have answered) are counted, never guessed at.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_mlops.prediction_log.records import PREDICTION_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CaptureRows", "capture_rows", "hour_prefixes", "read_capture"]

#: A capture line longer than this is not read (SageMaker's own payload limit is 6 MB).
MAX_LINE_BYTES = 8 * 1024 * 1024
#: Rows of one request beyond this are not read (a hostile body must not exhaust the triggerer's memory).
MAX_ROWS_PER_REQUEST = 10_000


@dataclass
class CaptureRows:
    """Prediction-log rows from capture lines, and how many lines were left out and why."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def frame(self) -> pd.DataFrame:
        """The rows with the prediction log's columns, in time order."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=list(PREDICTION_COLUMNS))
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame["latency_ms"] = frame["latency_ms"].astype(float)
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def _decoded(part: Any) -> tuple[str, str] | None:
    """``(content type, text)`` of an ``endpointInput``/``endpointOutput``; ``None`` if it cannot be read."""
    if not isinstance(part, dict) or not isinstance(part.get("data"), str):
        return None
    kind = str(part.get("observedContentType") or "").split(";")[0].strip().lower()
    encoding = part.get("encoding")
    text = part["data"]
    if encoding == "BASE64":
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    elif encoding not in ("JSON", "CSV"):
        return None
    return kind, text


def _loads(text: str | bytes) -> Any:
    """``json.loads``; nesting deeper than the parser's stack is a ``ValueError`` too, like any unreadable JSON."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _csv_rows(text: str) -> list[list[str]]:
    """The non-empty CSV rows; a field over ``csv.field_size_limit()`` is a ``ValueError``."""
    try:
        return [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise ValueError(f"CSV not readable: {exc}") from exc


def _input_records(kind: str, text: str) -> list[dict[str, Any]] | None:
    """The input rows of one request as ``{column: value}`` (columns ``0``, ``1``, ... when it names none)."""
    try:
        if kind == "text/csv":
            return [{str(i): v for i, v in enumerate(row)} for row in _csv_rows(text)]
        body = _loads(text)
    except ValueError:
        return None
    return _json_rows(body) if isinstance(body, dict) else None


def _json_rows(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Rows of an MLflow scoring-server body: ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``."""
    if isinstance(body.get("dataframe_split"), dict):
        split = body["dataframe_split"]
        columns, data = split.get("columns"), split.get("data")
        if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
            return None
        if not isinstance(columns, list):
            columns = list(range(len(data[0]) if data else 0))
        if any(len(row) != len(columns) for row in data):
            return None  # the scoring server would refuse it too; never guess which value is which column
        return [dict(zip(map(str, columns), row, strict=True)) for row in data]
    for key in ("dataframe_records", "instances", "inputs"):
        rows = body.get(key)
        if not isinstance(rows, list):
            continue
        if all(isinstance(row, dict) for row in rows):
            return [{str(k): v for k, v in row.items()} for row in rows]
        if all(isinstance(row, list) for row in rows):
            return [{str(i): v for i, v in enumerate(row)} for row in rows]
        return None
    return None


def _answers(kind: str, text: str) -> list[dict[str, Any]] | None:
    """One answer per row, shaped like the gateway's: ``{"prediction": ...}`` (or the model's own mapping)."""
    try:
        body = {"predictions": [row[0] for row in _csv_rows(text)]} if kind == "text/csv" else _loads(text)
    except ValueError:
        return None
    values = body.get("predictions") if isinstance(body, dict) else body
    if not isinstance(values, list):
        return None
    out = []
    for value in values:
        if isinstance(value, dict):
            out.append(value if "prediction" in value else {"prediction": value.get("predicted_label", value)})
        elif isinstance(value, list) and len(value) == 1:
            out.append({"prediction": value[0]})
        else:
            out.append({"prediction": value})
    return out


def _finite_json(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), default=str)
    except RecursionError as exc:  # a body the parser just managed can still be too deep to write back
        raise ValueError("JSON nested too deeply") from exc


def _head(record: dict[str, Any]) -> tuple[str, datetime] | str:
    """A record's request id and time, or why it has none."""
    meta: dict[str, Any] = record["eventMetadata"] if isinstance(record.get("eventMetadata"), dict) else {}
    request_id = meta.get("inferenceId") or meta.get("eventId")
    try:
        ts = datetime.strptime(str(meta.get("inferenceTime")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "no inferenceTime"
    if not isinstance(request_id, str) or not request_id or len(request_id) > 256:
        return "no request id"
    return request_id, ts


def _row_texts(data: dict[str, Any]) -> list[tuple[str, str]] | str:
    """Each row's input and answer as JSON text, or why the request cannot be read."""
    given, answered = _decoded(data.get("endpointInput")), _decoded(data.get("endpointOutput"))
    inputs = _input_records(*given) if given else None
    answers = _answers(*answered) if answered else None
    if inputs is None or answers is None:
        return "input or output not readable"
    if len(inputs) > MAX_ROWS_PER_REQUEST:
        return "too many rows"
    if len(inputs) != len(answers) or not inputs:
        return "input and output rows differ"
    try:
        return [(_finite_json(row), _finite_json(answer)) for row, answer in zip(inputs, answers, strict=True)]
    except ValueError:
        return "not finite"


def capture_rows(
    lines: Iterable[bytes | str],
    *,
    model: str,
    version: str,
    role: str,
    start: datetime | None = None,
    end: datetime | None = None,
    into: CaptureRows | None = None,
) -> CaptureRows:
    """Read capture lines of one variant (serving ``version`` in ``role``) into prediction-log rows.

    Only records whose ``inferenceTime`` is in ``[start, end)`` are kept. A line is skipped (and counted by
    reason) when it is too long, not JSON, not a capture record, has no time or id, or has an input and an
    output whose row counts differ.
    """
    found = into if into is not None else CaptureRows()
    for raw in lines:
        if len(raw) > MAX_LINE_BYTES:
            found.skip("line too long")
            continue
        try:
            record = _loads(raw)
        except (ValueError, UnicodeDecodeError):
            found.skip("not JSON")
            continue
        if not isinstance(record, dict):
            found.skip("not a capture record")
            continue
        head = _head(record)
        if isinstance(head, str):
            found.skip(head)
            continue
        request_id, ts = head
        data: dict[str, Any] = record["captureData"] if isinstance(record.get("captureData"), dict) else {}
        if (start is not None and ts < start) or (end is not None and ts >= end):
            continue
        texts = _row_texts(data)
        if isinstance(texts, str):
            found.skip(texts)
            continue
        found.rows.extend(
            {
                "request_id": request_id if len(texts) == 1 else f"{request_id}#{i}",
                "ts": ts,
                "model": model,
                "version": version,
                "role": role,
                "inputs": inputs_json,
                "output": output_json,
                "latency_ms": math.nan,  # not captured; CloudWatch's ModelLatency is the latency
                "error": None,
            }
            for i, (inputs_json, output_json) in enumerate(texts)
        )
    return found


def hour_prefixes(prefix: str, endpoint: str, variant: str, start: datetime, end: datetime) -> list[str]:
    """The S3 key prefixes (one per UTC hour) that can hold captures of ``[start, end)``."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < end:
        parts = [p for p in (prefix.strip("/"), endpoint, variant, hour.strftime("%Y/%m/%d/%H")) if p]
        out.append("/".join(parts) + "/")
        hour += timedelta(hours=1)
    return out


def read_capture(
    s3: Any, destination: str, endpoint: str, variant: str, start: datetime, end: datetime
) -> Iterator[bytes]:
    """Every capture line of ``variant`` in the hour folders overlapping ``[start, end)``, oldest file first.

    :param s3: A boto3 ``s3`` client.
    :param destination: The endpoint's ``DestinationS3Uri`` (``s3://bucket/prefix``).
    """
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    for hour_prefix in hour_prefixes(prefix, endpoint, variant, start, end):
        keys: list[str] = []
        token: str | None = None
        while True:
            page = s3.list_objects_v2(
                Bucket=bucket, Prefix=hour_prefix, **({"ContinuationToken": token} if token else {})
            )
            keys.extend(item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(".jsonl"))
            token = page.get("NextContinuationToken")
            if not token:
                break
        for key in sorted(keys):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            yield from (line for line in body.iter_lines() if line.strip())
