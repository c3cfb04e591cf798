"""SageMaker data capture (JSON Lines) read as prediction-log rows: ``capture_rows``, ``CaptureRows.frame``,
``hour_prefixes`` and ``read_capture``.

The lines follow the shape of AWS's "Capture data from real-time endpoint" guide (``captureData`` with an
``endpointInput``/``endpointOutput`` each holding ``observedContentType``, ``mode``, ``data``, ``encoding``;
``eventMetadata`` with ``eventId``, the caller's optional ``inferenceId`` and ``inferenceTime``), wrapping the
bodies MLflow's scoring server takes (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``) and
answers (``{"predictions": [...]}``). Everything here is pure parsing: no network, no AWS.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest

from airflow_mlops.prediction_log import capture as capture_module
from airflow_mlops.prediction_log.capture import CaptureRows, capture_rows, hour_prefixes, read_capture
from airflow_mlops.prediction_log.records import PREDICTION_COLUMNS

WHEN = "2024-01-19T19:27:57Z"
WHEN_DT = datetime(2024, 1, 19, 19, 27, 57, tzinfo=UTC)
EVENT_ID = "b6a2c5b0-8c3e-4f8e-9d57-0a1f2e3d4c5b"
JSON = "application/json"
UNREADABLE = "input or output not readable"
ROWS_DIFFER = "input and output rows differ"


def part(data: Any, *, mode: str, content_type: str = JSON, encoding: str = "JSON") -> dict[str, Any]:
    """An ``endpointInput``/``endpointOutput``; a non-string ``data`` is sent as its JSON text."""
    text = data if isinstance(data, str) else json.dumps(data)
    if encoding == "BASE64":
        text = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def record(
    body: Any = None,
    answer: Any = None,
    *,
    inference_id: str | None = "req-1",
    event_id: str | None = EVENT_ID,
    time: Any = WHEN,
    content_type: str = JSON,
    encoding: str = "JSON",
) -> dict[str, Any]:
    """One capture record (as a dict) of one request and its answer."""
    body = {"dataframe_split": {"columns": ["amount", "country"], "data": [[12.5, "FR"]]}} if body is None else body
    answer = {"predictions": [1]} if answer is None else answer
    meta: dict[str, Any] = {}
    if event_id is not None:
        meta["eventId"] = event_id
    if inference_id is not None:
        meta["inferenceId"] = inference_id
    if time is not None:
        meta["inferenceTime"] = time
    return {
        "captureData": {
            "endpointInput": part(body, mode="INPUT", content_type=content_type, encoding=encoding),
            "endpointOutput": part(answer, mode="OUTPUT", content_type=content_type, encoding=encoding),
        },
        "eventMetadata": meta,
        "eventVersion": "0",
    }


def line(body: Any = None, answer: Any = None, **kwargs: Any) -> bytes:
    """One capture line, as ``read_capture`` yields it (bytes, no newline)."""
    return json.dumps(record(body, answer, **kwargs)).encode("utf-8")


def read(*lines: bytes | str, **kwargs: Any) -> CaptureRows:
    return capture_rows(lines, model="fraud", version="7", role="shadow", **kwargs)


# --- one request, its fields and the frame ----------------------------------------------------------------


def test_one_row_dataframe_split_becomes_one_row_with_every_field() -> None:
    found = read(line())

    assert found.skipped == {}
    assert len(found.rows) == 1
    row = found.rows[0]
    assert set(row) == set(PREDICTION_COLUMNS)
    assert row["request_id"] == "req-1"  # the caller's InferenceId, not SageMaker's eventId
    assert row["ts"] == WHEN_DT and row["ts"].utcoffset() == timedelta(0)
    assert (row["model"], row["version"], row["role"]) == ("fraud", "7", "shadow")
    assert json.loads(row["inputs"]) == {"amount": 12.5, "country": "FR"}
    assert json.loads(row["output"]) == {"prediction": 1}
    assert math.isnan(row["latency_ms"])
    assert row["error"] is None


def test_frame_has_the_prediction_columns_a_utc_ts_and_time_order() -> None:
    later = line(inference_id="late", time="2024-01-19T20:00:00Z")
    frame = read(later, line(inference_id="early")).frame()

    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert isinstance(frame["ts"].dtype, pd.DatetimeTZDtype)
    assert str(frame["ts"].dtype.tz) == "UTC"
    assert frame["latency_ms"].dtype == float
    assert list(frame["request_id"]) == ["early", "late"]
    assert frame["ts"].iloc[0] == pd.Timestamp(WHEN_DT)


def test_frame_of_nothing_still_has_the_columns_and_a_utc_ts() -> None:
    frame = CaptureRows().frame()

    assert frame.empty
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert isinstance(frame["ts"].dtype, pd.DatetimeTZDtype) and str(frame["ts"].dtype.tz) == "UTC"


def test_rows_of_a_request_are_numbered_and_event_id_stands_in_for_a_missing_inference_id() -> None:
    body = {"dataframe_records": [{"amount": 1.0}, {"amount": 2.0}, {"amount": 3.0}]}
    found = read(line(body, {"predictions": [0, 1, 0]}, inference_id=None))

    assert found.skipped == {}
    assert [r["request_id"] for r in found.rows] == [f"{EVENT_ID}#0", f"{EVENT_ID}#1", f"{EVENT_ID}#2"]
    assert [json.loads(r["inputs"]) for r in found.rows] == body["dataframe_records"]
    assert [json.loads(r["output"]) for r in found.rows] == [{"prediction": p} for p in (0, 1, 0)]


def test_an_empty_inference_id_falls_back_to_the_event_id() -> None:
    assert read(line(inference_id="")).rows[0]["request_id"] == EVENT_ID


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"dataframe_split": {"data": [[1, 2]]}}, {"0": 1, "1": 2}),
        ({"instances": [{"a": 1}]}, {"a": 1}),
        ({"instances": [[1, 2]]}, {"0": 1, "1": 2}),
        ({"inputs": [{"a": 1}]}, {"a": 1}),
        ({"inputs": [[1, 2]]}, {"0": 1, "1": 2}),
    ],
    ids=["split-without-columns", "instances-records", "instances-lists", "inputs-records", "inputs-lists"],
)
def test_the_other_scoring_server_input_formats(body: dict[str, Any], expected: dict[str, Any]) -> None:
    found = read(line(body))

    assert found.skipped == {}
    assert [json.loads(r["inputs"]) for r in found.rows] == [expected]


# --- encodings and answer shapes --------------------------------------------------------------------------


def test_base64_encoded_json_is_decoded() -> None:
    found = read(line(encoding="BASE64"))

    assert found.skipped == {}
    assert json.loads(found.rows[0]["inputs"]) == {"amount": 12.5, "country": "FR"}
    assert json.loads(found.rows[0]["output"]) == {"prediction": 1}


@pytest.mark.parametrize("encoding", ["CSV", "BASE64"])
def test_csv_input_rows_and_csv_output(encoding: str) -> None:
    found = read(line("12.5,FR\n3.0,DE\n", "1\n0\n", content_type="text/csv", encoding=encoding))

    assert found.skipped == {}
    assert [json.loads(r["inputs"]) for r in found.rows] == [{"0": "12.5", "1": "FR"}, {"0": "3.0", "1": "DE"}]
    assert [json.loads(r["output"]) for r in found.rows] == [{"prediction": "1"}, {"prediction": "0"}]
    assert [r["request_id"] for r in found.rows] == ["req-1#0", "req-1#1"]


def test_content_type_parameters_and_case_are_ignored() -> None:
    found = read(line("1,2\n", "0\n", content_type="Text/CSV; charset=utf-8", encoding="CSV"))

    assert found.skipped == {}
    assert json.loads(found.rows[0]["inputs"]) == {"0": "1", "1": "2"}


def test_invalid_base64_is_skipped_with_its_reason() -> None:
    good = record(encoding="BASE64")
    good["captureData"]["endpointInput"]["data"] = "not base64 !!!"
    not_utf8 = record(encoding="BASE64")
    not_utf8["captureData"]["endpointOutput"]["data"] = base64.b64encode(b"\xff\xfe").decode("ascii")
    stray = record(encoding="BASE64")  # decodes once the stray '*' is dropped: base64 is read strictly
    text = stray["captureData"]["endpointInput"]["data"]
    stray["captureData"]["endpointInput"]["data"] = text[:4] + "*" + text[4:]

    found = read(json.dumps(good).encode(), json.dumps(not_utf8).encode(), json.dumps(stray).encode())

    assert found.rows == []
    assert found.skipped == {UNREADABLE: 3}


@pytest.mark.parametrize(
    ("predictions", "expected"),
    [
        ([{"predicted_label": "fraud", "probability": 0.9}], {"prediction": "fraud"}),
        ([{"prediction": 1, "score": 0.8}], {"prediction": 1, "score": 0.8}),
        ([[1]], {"prediction": 1}),
        ([[0.2, 0.8]], {"prediction": [0.2, 0.8]}),
    ],
    ids=["predicted-label", "own-mapping", "single-element-list", "longer-list"],
)
def test_answer_shapes(predictions: list[Any], expected: dict[str, Any]) -> None:
    found = read(line(answer={"predictions": predictions}))

    assert found.skipped == {}
    assert json.loads(found.rows[0]["output"]) == expected


def test_a_bare_list_answer_is_read_as_the_predictions() -> None:
    assert json.loads(read(line(answer=[1])).rows[0]["output"]) == {"prediction": 1}


# --- lines that are not a capture record: counted, never guessed at ---------------------------------------


def _with(change: Any) -> bytes:
    rec = record()
    change(rec)
    return json.dumps(rec).encode()


def _set_encoding(rec: dict[str, Any]) -> None:
    rec["captureData"]["endpointInput"]["encoding"] = "GZIP"


def _drop_output(rec: dict[str, Any]) -> None:
    del rec["captureData"]["endpointOutput"]


def _data_not_text(rec: dict[str, Any]) -> None:
    rec["captureData"]["endpointInput"]["data"] = {"dataframe_records": [{"a": 1}]}


def _meta_not_object(rec: dict[str, Any]) -> None:
    rec["eventMetadata"] = ["req-1", WHEN]


HOSTILE = [
    pytest.param(b"this is not json", "not JSON", id="not-json"),
    pytest.param(b"\xff\xfe{", "not JSON", id="not-utf8"),
    pytest.param(b'{"captureData": ', "not JSON", id="truncated"),
    pytest.param(b"[1, 2, 3]", "not a capture record", id="json-list"),
    pytest.param(b'"a string"', "not a capture record", id="json-string"),
    pytest.param(line(time=None), "no inferenceTime", id="missing-time"),
    pytest.param(line(time="2024-01-19 19:27:57"), "no inferenceTime", id="time-no-T-Z"),
    pytest.param(line(time="2024-01-19T19:27:57+02:00"), "no inferenceTime", id="time-offset"),
    pytest.param(line(time="2024-02-30T00:00:00Z"), "no inferenceTime", id="time-impossible-date"),
    pytest.param(line(time=1705692477), "no inferenceTime", id="time-epoch-number"),
    pytest.param(_with(_meta_not_object), "no inferenceTime", id="metadata-not-object"),
    pytest.param(line(inference_id=None, event_id=None), "no request id", id="no-ids"),
    pytest.param(line(inference_id="x" * 257), "no request id", id="id-257-chars"),
    pytest.param(line(inference_id=None, event_id=12345), "no request id", id="id-not-text"),
    pytest.param(_with(_set_encoding), UNREADABLE, id="unknown-encoding"),
    pytest.param(_with(_drop_output), UNREADABLE, id="no-output"),
    pytest.param(_with(_data_not_text), UNREADABLE, id="data-not-text"),
    pytest.param(line({"columns": ["a"], "data": [[1]]}), UNREADABLE, id="no-known-input-key"),
    pytest.param(line({"dataframe_records": [{"a": 1}, [1]]}), UNREADABLE, id="mixed-record-shapes"),
    pytest.param(line({"dataframe_split": {"data": [1, 2]}}), UNREADABLE, id="split-rows-not-lists"),
    pytest.param(line(answer={"error_code": "BAD_REQUEST"}), UNREADABLE, id="error-answer"),
    pytest.param(line(answer="not json"), UNREADABLE, id="answer-not-json"),
    pytest.param(line(answer={"predictions": [1, 0]}), ROWS_DIFFER, id="more-answers-than-rows"),
    pytest.param(line({"dataframe_records": [{"a": 1}, {"a": 2}]}), ROWS_DIFFER, id="fewer-answers-than-rows"),
    pytest.param(line({"dataframe_records": []}, {"predictions": []}), ROWS_DIFFER, id="no-rows"),
    pytest.param(line({"dataframe_split": {"columns": ["a"], "data": [[math.nan]]}}), "not finite", id="nan-input"),
    pytest.param(line({"instances": [[math.inf]]}), "not finite", id="infinity-input"),
    pytest.param(line(answer={"predictions": [-math.inf]}), "not finite", id="infinite-answer"),
]


@pytest.mark.parametrize(("raw", "reason"), HOSTILE)
def test_a_line_that_is_not_a_capture_record_is_counted_under_its_reason(raw: bytes, reason: str) -> None:
    found = read(raw, line(inference_id="good"))

    assert found.skipped == {reason: 1}
    assert [r["request_id"] for r in found.rows] == ["good"]  # the lines around it are still read


def test_an_id_of_256_chars_is_kept() -> None:
    assert read(line(inference_id="x" * 256)).rows[0]["request_id"] == "x" * 256


def test_json_nan_literal_in_the_body_is_not_finite() -> None:
    """Python's ``json.loads`` takes the non-standard ``NaN`` literal, so the check must come after parsing."""
    rec = record()
    rec["captureData"]["endpointInput"]["data"] = '{"dataframe_split": {"columns": ["a"], "data": [[NaN]]}}'

    found = read(json.dumps(rec).encode())

    assert found.rows == []
    assert found.skipped == {"not finite": 1}


def test_a_request_whose_later_row_is_not_finite_adds_no_row_at_all() -> None:
    body = {"dataframe_records": [{"a": 1.0}, {"a": 2.0}, {"a": math.nan}]}
    answer_late_nan = {"predictions": [0, 1, math.nan]}

    found = read(line(body, {"predictions": [0, 1, 0]}), line({"instances": [[1], [2], [3]]}, answer_late_nan))

    assert found.rows == []
    assert found.skipped == {"not finite": 2}


def test_a_line_longer_than_max_line_bytes_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    short = line(inference_id="a")
    monkeypatch.setattr(capture_module, "MAX_LINE_BYTES", len(short))

    found = read(short, line(inference_id="a-much-longer-request-id"))

    assert [r["request_id"] for r in found.rows] == ["a"]  # a line of exactly the limit is read
    assert found.skipped == {"line too long": 1}


def test_a_request_with_more_than_max_rows_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_module, "MAX_ROWS_PER_REQUEST", 2)
    two = line({"instances": [[1], [2]]}, {"predictions": [0, 1]}, inference_id="two")
    three = line({"instances": [[1], [2], [3]]}, {"predictions": [0, 1, 0]}, inference_id="three")

    found = read(three, two)

    assert [r["request_id"] for r in found.rows] == ["two#0", "two#1"]
    assert found.skipped == {"too many rows": 1}


def test_skips_add_up_and_into_accumulates_across_calls() -> None:
    found = CaptureRows()
    capture_rows([b"nope", line(inference_id="a")], model="m", version="1", role="champion", into=found)
    same = capture_rows([b"[]", b"nope", line(inference_id="b")], model="m", version="2", role="shadow", into=found)

    assert same is found
    assert found.skipped == {"not JSON": 2, "not a capture record": 1}
    assert [(r["request_id"], r["version"], r["role"]) for r in found.rows] == [
        ("a", "1", "champion"),
        ("b", "2", "shadow"),
    ]


def test_text_lines_are_read_like_bytes() -> None:
    assert read(line().decode("utf-8")).rows[0]["request_id"] == "req-1"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_deeply_nested_body_is_skipped_not_raised() -> None:
    rec = record()
    rec["captureData"]["endpointInput"]["data"] = '{"instances": ' + _nested(100_000) + "}"

    found = read(json.dumps(rec).encode(), line(inference_id="good"))

    assert found.skipped == {UNREADABLE: 1}
    assert [r["request_id"] for r in found.rows] == ["good"]


def test_a_csv_field_over_the_csv_module_limit_is_skipped_not_raised() -> None:
    found = read(line("x" * 200_000 + "\n", "1\n", content_type="text/csv", encoding="CSV"), line(inference_id="ok"))

    assert found.skipped == {UNREADABLE: 1}
    assert [r["request_id"] for r in found.rows] == ["ok"]


# --- the time window ---------------------------------------------------------------------------------------


def test_only_records_in_the_half_open_window_are_kept() -> None:
    start, end = datetime(2024, 1, 19, 19, 0, tzinfo=UTC), datetime(2024, 1, 19, 20, 0, tzinfo=UTC)
    lines = [
        line(inference_id="before", time="2024-01-19T18:59:59Z"),
        line(inference_id="at-start", time="2024-01-19T19:00:00Z"),
        line(inference_id="inside", time="2024-01-19T19:59:59Z"),
        line(inference_id="at-end", time="2024-01-19T20:00:00Z"),
        line(inference_id="after", time="2024-01-19T21:00:00Z"),
    ]

    found = read(*lines, start=start, end=end)

    assert [r["request_id"] for r in found.rows] == ["at-start", "inside"]
    assert found.skipped == {}  # outside the window is not a malformed line


def test_the_window_compares_instants_not_wall_clocks() -> None:
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2024, 1, 19, 21, 27, 57, tzinfo=plus_two)  # == WHEN in UTC

    assert [r["request_id"] for r in read(line(), start=start).rows] == ["req-1"]
    assert read(line(), end=start).rows == []


# --- S3 layout ------------------------------------------------------------------------------------------


def test_hour_prefixes_cross_a_day_boundary() -> None:
    start = datetime(2024, 12, 31, 22, 30, tzinfo=UTC)
    end = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)

    assert hour_prefixes("s3-prefix/capture/", "fraud-prod", "AllTraffic", start, end) == [
        "s3-prefix/capture/fraud-prod/AllTraffic/2024/12/31/22/",
        "s3-prefix/capture/fraud-prod/AllTraffic/2024/12/31/23/",
        "s3-prefix/capture/fraud-prod/AllTraffic/2025/01/01/00/",  # end on the hour: its own hour is out
    ]


@pytest.mark.parametrize("prefix", ["", "/"])
def test_hour_prefixes_with_an_empty_prefix(prefix: str) -> None:
    start = datetime(2024, 1, 19, 19, 27, tzinfo=UTC)

    assert hour_prefixes(prefix, "ep", "v1", start, start + timedelta(minutes=1)) == ["ep/v1/2024/01/19/19/"]


def test_hour_prefixes_are_utc_hours_and_none_for_an_end_before_start() -> None:
    start = datetime(2024, 1, 20, 1, 15, tzinfo=timezone(timedelta(hours=5)))  # 2024-01-19T20:15Z

    assert hour_prefixes("p", "ep", "v", start, start + timedelta(minutes=50)) == [
        "p/ep/v/2024/01/19/20/",
        "p/ep/v/2024/01/19/21/",
    ]
    assert hour_prefixes("p", "ep", "v", start, start - timedelta(hours=2)) == []


def test_hour_prefixes_step_one_hour_over_days() -> None:
    start = datetime(2024, 2, 28, 0, 0, tzinfo=UTC)  # a leap day in between

    got = hour_prefixes("p", "ep", "v", start, start + timedelta(days=3))

    assert got == [f"p/ep/v/{start + timedelta(hours=h):%Y/%m/%d/%H}/" for h in range(72)]
    assert "p/ep/v/2024/02/29/23/" in got


class FakeBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def iter_lines(self) -> Iterator[bytes]:  # like botocore's StreamingBody.iter_lines: no line ends
        yield from self.data.splitlines()


class FakeS3:
    """Just ``list_objects_v2`` (prefix match, ``page_size`` keys a page, ``NextContinuationToken``) and
    ``get_object``; keys come back in the order they were put, so the reader's own sort is what is tested."""

    def __init__(self, objects: dict[str, bytes], page_size: int = 2) -> None:
        self.objects, self.page_size = objects, page_size
        self.listed: list[dict[str, Any]] = []
        self.got: list[str] = []

    def list_objects_v2(self, *, Bucket: str, Prefix: str, ContinuationToken: str | None = None) -> dict[str, Any]:
        assert Bucket == "capture-bucket"
        self.listed.append({"Prefix": Prefix, "ContinuationToken": ContinuationToken})
        keys = [key for key in self.objects if key.startswith(Prefix)]
        first = int(ContinuationToken) if ContinuationToken else 0
        page: dict[str, Any] = {"KeyCount": len(keys[first : first + self.page_size])}
        if keys[first : first + self.page_size]:
            page["Contents"] = [
                {"Key": key, "Size": len(self.objects[key])} for key in keys[first : first + self.page_size]
            ]
        if first + self.page_size < len(keys):
            page["NextContinuationToken"] = str(first + self.page_size)
        return page

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        assert Bucket == "capture-bucket"
        self.got.append(Key)
        return {"Body": FakeBody(self.objects[Key])}


def test_read_capture_reads_the_hour_folders_in_key_order() -> None:
    """A fake S3 client, because this is a pure parsing test (which keys, in which order, which lines); the
    real S3 path (boto3 against an S3 API) is exercised in tests/system."""
    base = "capture/fraud-prod/AllTraffic/2024/01/19"
    objects = {
        f"{base}/20/05-00-000-c.jsonl": b"h20-a\n",
        f"{base}/19/59-00-000-b.jsonl": b"h19-b1\n\n   \nh19-b2\n",
        f"{base}/19/10-00-000-a.jsonl": b"h19-a1\nh19-a2",
        f"{base}/19/30-00-000-x.json": b"not capture",
        f"{base}/19/_SUCCESS": b"",
        f"{base}/21/00-00-000-d.jsonl": b"after the window\n",
        f"{base}/18/59-00-000-e.jsonl": b"before the window\n",
        "capture/fraud-prod/Shadow/2024/01/19/19/00-00-000-s.jsonl": b"other variant\n",
    }
    s3 = FakeS3(objects, page_size=2)
    start, end = datetime(2024, 1, 19, 19, 30, tzinfo=UTC), datetime(2024, 1, 19, 20, 30, tzinfo=UTC)

    got = list(read_capture(s3, "s3://capture-bucket/capture/", "fraud-prod", "AllTraffic", start, end))

    assert got == [b"h19-a1", b"h19-a2", b"h19-b1", b"h19-b2", b"h20-a"]
    assert s3.got == [f"{base}/19/10-00-000-a.jsonl", f"{base}/19/59-00-000-b.jsonl", f"{base}/20/05-00-000-c.jsonl"]
    assert s3.listed == [  # hour 19 holds 4 keys: two pages of 2
        {"Prefix": f"{base}/19/", "ContinuationToken": None},
        {"Prefix": f"{base}/19/", "ContinuationToken": "2"},
        {"Prefix": f"{base}/20/", "ContinuationToken": None},
    ]


def test_read_capture_with_a_bucket_only_destination_and_an_empty_hour() -> None:
    """The same fake S3 client (pure parsing test; the real S3 path is exercised in tests/system)."""
    s3 = FakeS3({"ep/v/2024/01/19/20/00-00-000-a.jsonl": b"x\n"}, page_size=1)
    start = datetime(2024, 1, 19, 19, 0, tzinfo=UTC)

    got = list(read_capture(s3, "s3://capture-bucket", "ep", "v", start, start + timedelta(hours=2)))

    assert got == [b"x"]
    assert [call["Prefix"] for call in s3.listed] == ["ep/v/2024/01/19/19/", "ep/v/2024/01/19/20/"]


def test_read_capture_lines_feed_capture_rows() -> None:
    """The fake S3 client again (pure parsing test; the real S3 path is exercised in tests/system)."""
    key = "cap/ep/AllTraffic/2024/01/19/19/27-57-000-a.jsonl"
    s3 = FakeS3({key: line(inference_id="a") + b"\n" + b"garbage\n" + line(inference_id="b") + b"\n"})
    start = datetime(2024, 1, 19, 19, 0, tzinfo=UTC)

    lines = read_capture(s3, "s3://capture-bucket/cap", "ep", "AllTraffic", start, start + timedelta(hours=1))
    found = capture_rows(lines, model="fraud", version="3", role="champion", start=start)

    assert [r["request_id"] for r in found.rows] == ["a", "b"]
    assert found.skipped == {"not JSON": 1}


def test_a_split_row_of_another_length_than_its_columns_is_not_guessed_at() -> None:
    ragged = {"dataframe_split": {"columns": ["amount", "hour"], "data": [[1.0, 2], [3.0]]}}
    found = read(line(ragged, {"predictions": [0, 1]}, inference_id="ragged"))

    assert found.rows == []
    assert found.skipped == {"input or output not readable": 1}
