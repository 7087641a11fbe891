"""Rejected rows: the quarantine table's schema and each row's problems, original record and id.

Kept apart from `churn.validation` (which decides what is clean) because writing a rejection is
its own job: every rejected row keeps its original record, capped (long strings and big
containers are cut, so a 15 MB document cannot make a 16 MB quarantine entry), and the field
and reason of each problem, with the allowed values or bounds where that is the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from churn.coercion import OK, REASONS
from churn.raw_columns import UNREADABLE
from churn.schema import FeatureSpec, Schema

JsonDefault = Callable[[Any], Any]  # json.dumps(default=...): how a source's own types are written
MAX_TEXT = 1_000  # characters of one string kept in a rejected record
MAX_ITEMS = 50  # items of one list or object kept
MAX_DEPTH = 4
MAX_RECORD = 20_000  # characters of a rejected record's JSON
MAX_ALLOWED = 10  # allowed values listed for unknown_category

REJECTED_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("customer_id", pa.string()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("errors", pa.string()),
        ("record", pa.string()),
    ]
)


def rejected_rows(
    rows: np.ndarray,
    codes: dict[str, np.ndarray],
    columns: dict[str, pa.Array],
    records: Any,
    schema: Schema,
    default: JsonDefault,
) -> pa.Table:
    """The rejected table (REJECTED_SCHEMA) of the input `rows` whose codes are above OK."""
    if rows.size == 0:
        return REJECTED_SCHEMA.empty_table()
    ids, firsts, reasons, errors, originals = [], [], [], [], []
    id_column = columns[schema.id_field]
    for row in rows.tolist():
        original = original_record(records, row)
        problems = []
        for name, field_codes in codes.items():
            code = int(field_codes[row])
            if code > OK:
                value = columns[name][row].as_py()
                if value == UNREADABLE and isinstance(original, dict):
                    value = original.get(name)  # the value as the source holds it, not our marker
                problem = {"field": name, "reason": REASONS[code], "value": capped(_jsonable(value))}
                problems.append({**problem, **_rule(schema.by_name.get(name), REASONS[code])})
        raw_id = id_column[row].as_py()
        if raw_id == UNREADABLE and isinstance(original, dict):
            # Keep the id the source holds (extended JSON for an ObjectId, a binary ...) so the
            # document can be found again.
            raw_id = json.dumps(original.get(schema.id_field), default=default)
        ids.append(None if raw_id is None else capped(str(raw_id)))
        firsts.append(problems[0]["field"])
        reasons.append(problems[0]["reason"])
        errors.append(json.dumps(problems, default=default))
        originals.append(record_json(original, default))
    return pa.table(
        {
            "row": pa.array(rows, pa.int64()),
            "customer_id": pa.array(ids, pa.string()),
            "field": pa.array(firsts, pa.string()),
            "reason": pa.array(reasons, pa.string()),
            "errors": pa.array(errors, pa.string()),
            "record": pa.array(originals, pa.string()),
        },
        schema=REJECTED_SCHEMA,
    )


def _rule(spec: FeatureSpec | None, reason: str) -> dict[str, Any]:
    """What the value should have been: the allowed values (the first few) or the bounds."""
    if spec is None:
        return {}
    if reason == "unknown_category":
        allowed: list[Any] = list(spec.values[:MAX_ALLOWED])
        if len(spec.values) > MAX_ALLOWED:
            allowed.append(f"... {len(spec.values) - MAX_ALLOWED} more")
        return {"allowed": allowed}
    if reason == "out_of_bounds":
        return {"min": spec.min, "max": spec.max}
    return {}


def record_json(record: Any, default: JsonDefault) -> str:
    """The original record as JSON, capped so a huge document stays a small quarantine entry."""
    text = json.dumps(capped(record), default=lambda v: capped(default(v)))
    if len(text) > MAX_RECORD:
        text = json.dumps({"truncated_json": text[:MAX_RECORD], "original_chars": len(text)})
    return text


def capped(value: Any, depth: int = 0) -> Any:
    """`value` with long strings, bytes and containers cut (and a note of how much was cut)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else f"{value[:MAX_TEXT]}...[{len(value) - MAX_TEXT} more characters]"
    if isinstance(value, (bytes, bytearray)) and len(value) > MAX_TEXT:
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return f"<object of {len(value)} fields>"
        items = list(value.items())
        out = {str(k)[:MAX_TEXT]: capped(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["..."] = f"{len(items) - MAX_ITEMS} more fields"
        return out
    if isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            return f"<list of {len(value)} items>"
        out_list = [capped(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out_list.append(f"... {len(value) - MAX_ITEMS} more items")
        return out_list
    return value


def as_text(value: Any) -> str:
    """The default way to write a value JSON does not know: as text."""
    return str(value)


def original_record(records: Any, row: int) -> Any:
    """Row `row` of the input as it came: an Arrow table's or a DataFrame's row as a dict, or the record."""
    if isinstance(records, pa.Table):
        return records.slice(row, 1).to_pylist()[0]
    if isinstance(records, (list, tuple)):
        return records[row]
    return {k: _jsonable(v) for k, v in records.iloc[row].to_dict().items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None  # pandas' NaN means missing, as null does in the other input shapes
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if value == UNREADABLE:
        return "<unreadable value>"
    return value


def describe(rejected: pa.Table, limit: int = 5) -> str:
    """A short human line about the first rejections, for logs and error messages."""
    parts = []
    for row in rejected.slice(0, limit).to_pylist():
        parts.append(f"row {row['row']} {row['field']}: {row['reason']}")
    more = rejected.num_rows - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
