"""Hostile MongoDB documents (issue 14): one bad value costs one row, whatever its BSON type and
its place in a batch; Decimal128 money is accepted when a float says the same number; rejected
records keep their original id (extended JSON) and are capped; errors name allowed values and bounds."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from unknown_policy import rejecting

from churn.adapters.mongo import extended_json
from churn.params import load_params
from churn.schema import Schema
from churn.validation import validate

SCHEMA: Schema = load_params().schema
GOOD: dict[str, Any] = {
    "customer_id": "C0",
    "tenure": 12,
    "monthly_charges": 29.85,
    "total_charges": 358.2,
    "contract": "Month-to-month",
    "payment_method": "Electronic check",
    "internet_service": "DSL",
    "tech_support": "No",
    "online_security": "Yes",
    "support_calls": 1,
}
# Values no field accepts, whatever the field.
NEVER_VALID: dict[str, Any] = {
    "binary": b"Month-to-month",
    "binary_subtype_5": Binary(b"\x01\x02", 5),
    "uuid": Binary.from_uuid(uuid.UUID("12345678-1234-5678-1234-567812345678")),  # pymongo's default decoding
    "uuid_native": uuid.UUID("12345678-1234-5678-1234-567812345678"),  # with uuidRepresentation=standard
    "objectid": ObjectId("65a1b2c3d4e5f60718293a4b"),
    "datetime": dt.datetime(2024, 1, 31, 2, 0),
    "regex": Regex("^act", "i"),
    "compiled_regex": re.compile("x"),
    "list": ["Month-to-month"],
    "dict": {"value": "Month-to-month"},
    "minkey": MinKey(),
    "maxkey": MaxKey(),
    "timestamp": Timestamp(1_700_000_000, 1),
    "code": Code("function() {}"),
}
# Values that are fine somewhere: each must get the same verdict in a batch as alone.
SOMETIMES_VALID: dict[str, Any] = {
    "int64": Int64(7),
    "bool": True,
    "null": None,
    "decimal128": Decimal128("29.85"),
    "decimal128_too_precise": Decimal128("0.12345678901234567890123"),
    "nan": float("nan"),
    "infinity": float("inf"),
    "string": "Month-to-month",
    "int": 3,
}
FIELDS = [SCHEMA.id_field, *SCHEMA.feature_names]
POSITIONS = {"first": 0, "middle": 10, "last": 19}


def batch_with(field: str, value: Any, at: int, n: int = 20) -> list[dict[str, Any]]:
    """n good documents (as pymongo hands them over: through BSON) with `value` in one field of one."""
    docs = [{**GOOD, "customer_id": f"C{i}"} for i in range(n)]
    docs[at][field] = value
    standard = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)
    decode = standard if isinstance(value, uuid.UUID) else CodecOptions()
    return [bson.decode(bson.encode(doc, codec_options=standard), codec_options=decode) for doc in docs]


def verdict(docs: list[dict[str, Any]], row: int) -> tuple[str, ...]:
    result = validate(docs, SCHEMA, json_default=extended_json)
    rejected = {r["row"]: r for r in result.rejected.to_pylist()}
    if row not in rejected:
        return ("clean",)
    return tuple(p["reason"] for p in json.loads(rejected[row]["errors"]))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", NEVER_VALID)
@pytest.mark.parametrize("field", FIELDS)
def test_a_value_of_a_type_no_field_accepts_costs_exactly_its_own_row(field: str, kind: str, position: str) -> None:
    at = POSITIONS[position]
    docs = batch_with(field, NEVER_VALID[kind], at)

    result = validate(docs, SCHEMA, json_default=extended_json)

    assert result.rejected.column("row").to_pylist() == [at]
    assert result.clean.num_rows == len(docs) - 1
    assert verdict(docs, at) == ("wrong_type",)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", SOMETIMES_VALID)
@pytest.mark.parametrize("field", FIELDS)
def test_any_other_value_gets_the_same_verdict_in_a_batch_as_alone(field: str, kind: str, position: str) -> None:
    at = POSITIONS[position]
    docs = batch_with(field, SOMETIMES_VALID[kind], at)

    result = validate(docs, SCHEMA, json_default=extended_json)

    assert set(result.rejected.column("row").to_pylist()) <= {at}
    assert verdict(docs, at) == verdict([docs[at]], 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal128("29.85"), 29.85),
        (Decimal128("1E+2"), 100.0),
        (Decimal128("-0"), None),  # a negative zero is a number: the bound (>= 0) judges it
    ],
)
def test_decimal128_money_is_accepted_when_a_float_says_the_same_number(value: Decimal128, expected: Any) -> None:
    docs = batch_with("monthly_charges", value, 0)

    result = validate(docs, SCHEMA)

    assert result.rejected.num_rows == 0
    if expected is not None:
        assert result.clean.column("monthly_charges")[0].as_py() == expected


def test_decimal128_with_digits_a_float_cannot_carry_is_rejected_not_rounded() -> None:
    docs = batch_with("monthly_charges", Decimal128("29.850000000000000000001"), 5)

    assert verdict(docs, 5) == ("wrong_type",)


def test_decimal128_infinity_is_not_finite() -> None:
    assert verdict(batch_with("total_charges", Decimal128("Infinity"), 3), 3) == ("not_finite",)


@pytest.mark.parametrize(
    ("bad_id", "expected"),
    [
        (ObjectId("65a1b2c3d4e5f60718293a4b"), {"$oid": "65a1b2c3d4e5f60718293a4b"}),
        (["C1", "C2"], ["C1", "C2"]),
        ({"region": "eu", "n": 7}, {"region": "eu", "n": 7}),
        (Binary.from_uuid(uuid.UUID("12345678-1234-5678-1234-567812345678")), None),
    ],
)
def test_a_rejected_document_keeps_its_original_id_as_extended_json(bad_id: Any, expected: Any) -> None:
    docs = batch_with("customer_id", bad_id, 2)

    rejected = validate(docs, SCHEMA, json_default=extended_json).rejected.to_pylist()[0]

    kept = json.loads(rejected["customer_id"])
    assert "unreadable" not in rejected["customer_id"]
    assert kept == (expected if expected is not None else json.loads(bson.json_util.dumps(docs[2]["customer_id"])))
    assert json.loads(rejected["record"])["customer_id"] == kept


def test_a_15_megabyte_document_leaves_a_small_quarantine_record() -> None:
    huge = "x" * (5 << 20)
    doc = {**GOOD, "customer_id": "BIG", "contract": huge, "payment_method": huge, "notes": huge}

    rejected = validate([doc], rejecting(SCHEMA), json_default=extended_json).rejected.to_pylist()[0]

    assert rejected["reason"] == "unknown_category"
    assert len(rejected["record"]) < 25_000 and len(rejected["errors"]) < 25_000
    assert "more characters" in rejected["record"]
    assert len(bson.encode({k: v for k, v in rejected.items()})) < 100_000


def test_an_id_longer_than_any_key_is_rejected_not_copied_everywhere() -> None:
    docs = batch_with("customer_id", "C" * 10_000, 0)

    assert verdict(docs, 0) == ("out_of_bounds",)


def test_unknown_category_errors_name_the_allowed_values_and_bounds_errors_the_bounds() -> None:
    doc = {**GOOD, "contract": "Weekly", "tenure": -3}

    errors = json.loads(validate([doc], rejecting(SCHEMA)).rejected.column("errors")[0].as_py())

    by_field = {e["field"]: e for e in errors}
    assert by_field["contract"]["allowed"] == ["Month-to-month", "One year", "Two year"]
    assert (by_field["tenure"]["min"], by_field["tenure"]["max"]) == (0.0, 1200.0)


def test_a_long_list_of_allowed_values_is_truncated() -> None:
    raw = {"features": [{"name": "plan", "type": "category", "values": [f"p{i}" for i in range(40)],
                         "unknown": "reject"}]}
    schema = Schema.from_dict(raw)

    errors = json.loads(validate([{"customer_id": "C1", "plan": "gold"}], schema).rejected.column("errors")[0].as_py())

    assert errors[0]["allowed"] == [f"p{i}" for i in range(10)] + ["... 30 more"]


def test_a_15_megabyte_unseen_value_scored_as_missing_is_remembered_capped() -> None:
    huge = "x" * (5 << 20)
    result = validate([{**GOOD, "customer_id": "BIG", "contract": huge}], SCHEMA)

    assert result.clean.num_rows == 1 and result.clean.column("contract").to_pylist() == [None]
    (value,) = result.unseen_counts()["contract"]
    assert len(value) < 2_000 and "more characters" in value
