"""Request validation against real MLflow signatures: every rule, its exact 422 message, and the frame it builds.

Signatures come from ``mlflow.models.infer_signature`` on small frames and on the fraud features
exactly as training prepares them (``split_data``: numerics cast to float64, categoricals strings),
so a change in what MLflow infers shows up here.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature, infer_signature, validate_schema
from mlflow.types.schema import ColSpec, DataType, Schema

from airflow_mlops.config.loader import load_config
from airflow_mlops.examples.fraud import generate_transactions
from airflow_mlops.serving import signature as signature_module
from airflow_mlops.serving.signature import MAX_PROBLEMS, ColumnSpec, InputError, InputSchema
from airflow_mlops.training.trainer import fit_and_evaluate, split_data

REPO = Path(__file__).resolve().parents[2]
LONG_RANGE = "(-9223372036854775808..9223372036854775807)"
INT_RANGE = "(-2147483648..2147483647)"


def _infer(df: pd.DataFrame) -> ModelSignature:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint about integer columns and missing values
        return infer_signature(df)


@pytest.fixture(scope="module")
def mixed_signature() -> ModelSignature:
    return _infer(
        pd.DataFrame(
            {
                "x": [1.5, 2.5],
                "n": [1, 2],
                "s": ["a", "b"],
                "b": [True, False],
                "f32": np.array([1.0, 2.0], dtype="float32"),
                "i32": np.array([1, 2], dtype="int32"),
            }
        )
    )


@pytest.fixture(scope="module")
def mixed(mixed_signature: ModelSignature) -> InputSchema:
    return InputSchema.from_mlflow(mixed_signature)


@pytest.fixture(scope="module")
def fraud_signature() -> ModelSignature:
    config = load_config(REPO / "dags" / "configs" / "fraud.yaml").config
    split = split_data(generate_transactions(400, seed=3), config)
    return _infer(split.x_train)


@pytest.fixture(scope="module")
def fraud(fraud_signature: ModelSignature) -> InputSchema:
    return InputSchema.from_mlflow(fraud_signature)


def good_mixed(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"x": 1.25, "n": 7, "s": "hello", "b": True, "f32": 0.5, "i32": -3}
    record.update(changes)
    return record


def fraud_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "amount": 12.5,
        "hour": 3,
        "distance_from_home_km": 4.2,
        "txn_count_24h": 2,
        "account_age_days": 400,
        "card_present": 1,
        "merchant_category": "online",
    }
    record.update(changes)
    return record


def problems_of(schema: InputSchema, payload: Any, **kwargs: Any) -> list[dict[str, Any]]:
    with pytest.raises(InputError) as info:
        schema.validate(payload, **kwargs)
    json.dumps(info.value.problems)  # the gateway sends them as the 422 body
    return info.value.problems


# --- from_mlflow -------------------------------------------------------------------------------------------


def test_from_mlflow_maps_every_scalar_kind_in_signature_order(mixed: InputSchema) -> None:
    assert mixed.columns == (
        ColumnSpec("x", "double", True),
        ColumnSpec("n", "long", True),
        ColumnSpec("s", "string", True),
        ColumnSpec("b", "boolean", True),
        ColumnSpec("f32", "float", True),
        ColumnSpec("i32", "integer", True),
    )


def test_from_mlflow_on_the_fraud_features_as_training_prepares_them(fraud: InputSchema) -> None:
    numeric = ["amount", "hour", "distance_from_home_km", "txn_count_24h", "account_age_days", "card_present"]
    assert fraud.columns == (
        *(ColumnSpec(n, "double", True) for n in numeric),
        ColumnSpec("merchant_category", "string"),
    )


def test_from_mlflow_marks_columns_with_nulls_optional() -> None:
    schema = InputSchema.from_mlflow(_infer(pd.DataFrame({"x": [1.0, None], "s": ["a", None], "b": [True, None]})))
    assert schema.columns == (
        ColumnSpec("x", "double", False),
        ColumnSpec("s", "string", False),
        ColumnSpec("b", "boolean", False),
    )


def test_from_mlflow_rejects_a_tensor_signature() -> None:
    with pytest.raises(ValueError, match=r"^the model signature is tensor-based; the gateway needs a column-based"):
        InputSchema.from_mlflow(_infer(np.zeros((2, 3))))  # type: ignore[arg-type]


def test_from_mlflow_rejects_unsupported_column_types() -> None:
    signature = ModelSignature(inputs=Schema([ColSpec(DataType.double, "x"), ColSpec(DataType.datetime, "when")]))
    with pytest.raises(ValueError) as info:
        InputSchema.from_mlflow(signature)
    assert str(info.value) == (
        "column 'when': MLflow type 'datetime' is not supported; "
        "expected one of ['double', 'float', 'long', 'integer', 'boolean', 'string']"
    )


def test_from_mlflow_rejects_unnamed_columns() -> None:
    signature = ModelSignature(inputs=Schema([ColSpec(DataType.double), ColSpec(DataType.double)]))
    with pytest.raises(ValueError, match=r"^the model signature has unnamed columns"):
        InputSchema.from_mlflow(signature)


def test_schema_rejects_duplicate_names_and_unknown_kinds() -> None:
    with pytest.raises(ValueError, match=r"^column names must be unique; \['a'\] appear more than once$"):
        InputSchema((ColumnSpec("a", "double"), ColumnSpec("a", "string")))
    with pytest.raises(ValueError, match=r"^column 'a': kind 'decimal' is not supported"):
        ColumnSpec("a", "decimal")  # type: ignore[arg-type]


def test_schemas_compare_by_columns_only(mixed_signature: ModelSignature, mixed: InputSchema) -> None:
    """The gateway reuses the champion's frame for a canary whose schema compares equal."""
    assert InputSchema.from_mlflow(mixed_signature) == mixed
    assert InputSchema((ColumnSpec("x", "double"),)) != InputSchema((ColumnSpec("x", "double", False),))


# --- the frame ---------------------------------------------------------------------------------------------


def test_valid_batch_becomes_a_frame_with_mlflow_dtypes(mixed: InputSchema, mixed_signature: ModelSignature) -> None:
    frame = mixed.validate({"records": [good_mixed(), good_mixed(x=2, n=-1, b=False, s="")]})
    assert list(frame.columns) == ["x", "n", "s", "b", "f32", "i32"]
    assert frame.dtypes.astype(str).tolist() == ["float64", "int64", "object", "bool", "float32", "int32"]
    assert frame.to_dict("list") == {
        "x": [1.25, 2.0],
        "n": [7, -1],
        "s": ["hello", ""],
        "b": [True, False],
        "f32": [0.5, 0.5],
        "i32": [-3, -3],
    }
    assert list(frame.index) == [0, 1]
    validate_schema(frame, mixed_signature.inputs)  # MLflow's own enforcement accepts it as is


def test_fraud_record_as_a_client_sends_it(fraud: InputSchema, fraud_signature: ModelSignature) -> None:
    frame = fraud.validate({"records": fraud_record()})  # one object, ints where training had floats
    assert frame.dtypes.astype(str).tolist() == ["float64"] * 6 + ["object"]
    assert frame.iloc[0].tolist() == [12.5, 3.0, 4.2, 2.0, 400.0, 1.0, "online"]
    validate_schema(frame, fraud_signature.inputs)


def test_validated_frames_go_through_the_real_fraud_pipeline(fraud: InputSchema) -> None:
    """What validate lets through (ints for floats, nulls, unseen categories) the trained model can score."""
    config = load_config(REPO / "dags" / "configs" / "fraud.yaml").config
    outcome = fit_and_evaluate(generate_transactions(600, seed=5), config)
    records = [fraud_record(), fraud_record(amount=None, hour=float("nan"), merchant_category="casino")]
    scores = outcome.model.predict_proba(fraud.validate({"records": records}))[:, 1]
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_null_and_nan_are_missing_values_for_double_and_float(mixed: InputSchema) -> None:
    frame = mixed.validate({"records": [good_mixed(x=None, f32=float("nan"))]})
    assert math.isnan(frame["x"][0]) and math.isnan(frame["f32"][0])


def test_optional_columns_may_be_absent_or_null() -> None:
    schema = InputSchema(
        (ColumnSpec("x", "double", False), ColumnSpec("s", "string", False), ColumnSpec("n", "long", False))
    )
    frame = schema.validate({"records": [{}, {"x": None, "s": None, "n": None}, {"x": 1, "s": "a", "n": 2}]})
    assert frame.dtypes.astype(str).tolist() == ["float64", "object", "object"]
    assert frame["s"].tolist() == [None, None, "a"] and frame["n"].tolist() == [None, None, 2]
    assert [math.isnan(v) for v in frame["x"]] == [True, True, False]
    assert schema.validate({"records": [{"n": 5}]})["n"].dtype == np.int64  # no gaps: the exact dtype


def test_fast_and_public_frame_constructors_agree(mixed: InputSchema) -> None:
    arrays = [np.array([1.0, np.nan]), np.array(["a", "b"], dtype=object), np.array([1, 2], dtype="int32")]
    names, index = ["x", "s", "i"], pd.RangeIndex(2)
    fast = signature_module._frame_from_arrays(arrays, names, index, fast=True)
    public = signature_module._frame_from_arrays(arrays, names, index, fast=False)
    pd.testing.assert_frame_equal(fast, public)


# --- the body's shape ----------------------------------------------------------------------------------------

SHAPE = 'expected a JSON object {"records": [{...}, ...]} or {"records": {...}}'


@pytest.mark.parametrize(
    ("payload", "msg"),
    [
        ([{"x": 1}], f"{SHAPE}; got an array"),
        ("records", f"{SHAPE}; got a string"),
        (None, f"{SHAPE}; got null"),
        ({"inputs": [{"x": 1}]}, f"{SHAPE}; got an object with keys ['inputs']"),
        ({"records": [], "params": {}}, f"{SHAPE}; got unknown top-level keys ['params']"),
    ],
    ids=["array", "string", "null", "inputs-alias", "extra-key"],
)
def test_body_of_the_wrong_shape(mixed: InputSchema, payload: Any, msg: str) -> None:
    assert problems_of(mixed, payload) == [{"loc": ["body"], "msg": msg}]


@pytest.mark.parametrize(
    ("records", "msg"),
    [
        ("x", "expected an array of records or one record object, got a string"),
        (3, "expected an array of records or one record object, got a number"),
        ([], "expected at least one record, got an empty array"),
    ],
    ids=["string", "number", "empty"],
)
def test_records_of_the_wrong_shape(mixed: InputSchema, records: Any, msg: str) -> None:
    assert problems_of(mixed, {"records": records}) == [{"loc": ["records"], "msg": msg}]


def test_batch_over_the_limit(mixed: InputSchema) -> None:
    assert mixed.validate({"records": [good_mixed()] * 3}, max_batch=3).shape == (3, 6)
    assert problems_of(mixed, {"records": [good_mixed()] * 4}, max_batch=3) == [
        {"loc": ["records"], "msg": "batch of 4 records exceeds the limit of 3"}
    ]
    with pytest.raises(ValueError, match=r"^max_batch: got 0; expected at least 1$"):
        mixed.validate({"records": [good_mixed()]}, max_batch=0)


def test_record_that_is_not_an_object(mixed: InputSchema) -> None:
    assert problems_of(mixed, {"records": [good_mixed(), [1, 2], "x"]}) == [
        {"loc": ["records", 1], "msg": "expected an object of column values, got an array"},
        {"loc": ["records", 2], "msg": "expected an object of column values, got a string"},
    ]


# --- fields --------------------------------------------------------------------------------------------------


def test_missing_and_unknown_fields(mixed: InputSchema) -> None:
    record = good_mixed(amount=3, zz=1)
    del record["n"], record["s"]
    expected = "unknown field; expected one of ['x', 'n', 's', 'b', 'f32', 'i32']"
    assert problems_of(mixed, {"records": [good_mixed(), record]}) == [
        {"loc": ["records", 1, "amount"], "msg": expected},
        {"loc": ["records", 1, "zz"], "msg": expected},
        {"loc": ["records", 1, "n"], "msg": "field required"},
        {"loc": ["records", 1, "s"], "msg": "field required"},
    ]


def test_single_record_locs_name_the_field_directly(fraud: InputSchema) -> None:
    assert problems_of(fraud, {"records": fraud_record(amount="abc")}) == [
        {"loc": ["records", "amount"], "msg": "expected a number, got 'abc'"}
    ]


@pytest.mark.parametrize(
    ("column", "value", "msg"),
    [
        ("x", "abc", "expected a number, got 'abc'"),
        ("x", True, "expected a number, got True"),
        ("x", [1.0], "expected a number, got [1.0]"),
        ("x", float("inf"), "expected a finite number, got inf"),
        ("x", -(10**400), "number out of range, got -" + "1" + "0" * 55 + "..."),
        ("x", 10**5000, "number out of range, got <int>"),  # too many digits for repr: the message still renders
        ("f32", 1e39, "number out of range for float column, got 1e+39"),
        ("f32", "1.5", "expected a number, got '1.5'"),
        ("n", None, "missing values are not allowed for integer column"),
        ("n", float("nan"), "missing values are not allowed for integer column"),
        ("n", 2.0, "expected an integer, got 2.0"),
        ("n", 1.5, "expected an integer, got 1.5"),
        ("n", False, "expected an integer, got False"),
        ("n", "3", "expected an integer, got '3'"),
        ("n", 2**63, f"integer out of range for long column {LONG_RANGE}, got 9223372036854775808"),
        ("i32", 2**31, f"integer out of range for integer column {INT_RANGE}, got 2147483648"),
        ("i32", None, "missing values are not allowed for integer column"),
        ("b", 1, "expected a boolean, got 1"),
        ("b", "true", "expected a boolean, got 'true'"),
        ("b", None, "missing values are not allowed for boolean column"),
        ("s", None, "missing values are not allowed for string column"),
        ("s", 3, "expected a string, got 3"),
        ("s", {"a": "b"}, "expected a string, got {'a': 'b'}"),
    ],
    ids=lambda v: f"int-{v.bit_length()}-bits" if isinstance(v, int) and abs(v) > 2**64 else None,
)
def test_wrong_values(mixed: InputSchema, column: str, value: Any, msg: str) -> None:
    assert problems_of(mixed, {"records": [good_mixed(), good_mixed(**{column: value})]}) == [
        {"loc": ["records", 1, column], "msg": msg}
    ]


def test_long_reprs_are_shortened(mixed: InputSchema) -> None:
    (problem,) = problems_of(mixed, {"records": [good_mixed(x="z" * 200)]})
    assert problem["msg"] == "expected a number, got '" + "z" * 56 + "..."


def test_every_problem_in_the_batch_is_reported(fraud: InputSchema) -> None:
    records = [fraud_record(), fraud_record(hour="3"), fraud_record(merchant_category=None, amount=[]), {}]
    problems = problems_of(fraud, {"records": records})
    assert [(p["loc"][1], p["loc"][2], p["msg"]) for p in problems] == [
        (1, "hour", "expected a number, got '3'"),
        (2, "amount", "expected a number, got []"),
        (2, "merchant_category", "missing values are not allowed for string column"),
        *((3, name, "field required") for name in fraud.names),
    ]


def test_problems_are_capped(fraud: InputSchema) -> None:
    with pytest.raises(InputError) as info:
        fraud.validate({"records": [fraud_record(hour="x", amount="y")] * 40})
    assert len(info.value.problems) == MAX_PROBLEMS == 50
    assert info.value.truncated
    assert info.value.problems[-1] == {"loc": ["records", 24, "hour"], "msg": "expected a number, got 'x'"}
    assert str(info.value) == "records.0.amount: expected a number, got 'y' (+49 more, truncated)"


def test_exactly_the_cap_is_not_truncated(fraud: InputSchema) -> None:
    with pytest.raises(InputError) as info:
        fraud.validate({"records": [fraud_record(hour="x", amount="y")] * 25})
    assert len(info.value.problems) == 50 and not info.value.truncated


def test_junk_never_escapes_as_anything_but_input_error(mixed: InputSchema) -> None:
    """Bad input must be a 422, never a 5xx: every junk value in every column raises InputError only."""
    junk: list[Any] = [
        None,
        float("nan"),
        float("inf"),
        -float("inf"),
        10**30,
        -(10**400),
        1e300,
        "",
        "1",
        [],
        {},
        [None],
        {"x": 1},
        True,
        False,
        0,
        -1,
        0.5,
        2**31,
        2**63,
        -(2**63) - 1,
        object(),
        b"bytes",
        1j,
    ]
    for column in ("x", "n", "s", "b", "f32", "i32"):
        for value in junk:
            try:
                mixed.validate({"records": [good_mixed(**{column: value})]})
            except InputError:
                pass


# --- cost ----------------------------------------------------------------------------------------------------


def test_one_record_validates_fast(fraud: InputSchema) -> None:
    """Budget is 50 us per 7-column record (measured ~36 us); the bound here only catches per-row pandas."""
    payload = {"records": [fraud_record()]}
    for _ in range(50):
        fraud.validate(payload)
    timings = []
    for _ in range(300):
        started = time.perf_counter()
        fraud.validate(payload)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 500e-6
