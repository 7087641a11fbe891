"""One validator for training, batch scoring and HTTP: split input into clean and rejected rows.

Input may be an Arrow table, a pandas DataFrame or a list of dicts. Each column is checked
with vectorised Arrow kernels, so typed columns cost a few passes; messy columns (numbers as
strings, mixed types from MongoDB or JSON) are coerced when unambiguous and rejected when
not. Every rejected row keeps its original record (capped: long strings and big containers
are cut, so a 15 MB document cannot make a 16 MB quarantine entry) and the field and reason
of each problem, with the allowed values or bounds where that is the reason.

A category value outside the schema's list is either a rejection (`unknown: reject`) or, by
default (`unknown: missing`), kept as a missing value; either way the result lists it in
`unseen`, so callers count how often each feature holds a value the model never learned.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from churn.coercion import OK, REASONS, UNKNOWN_CATEGORY, UNSEEN, check_feature, check_id, check_label
from churn.raw_columns import UNREADABLE, columns_of, to_table
from churn.schema import FeatureSpec, Schema

__all__ = ["REJECTED_SCHEMA", "Unseen", "ValidationResult", "describe", "move_to_rejected", "to_table", "validate"]

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

Data = Any  # an Arrow table, a pandas DataFrame (not imported here) or a list of dicts


@dataclass(frozen=True)
class Unseen:
    """The input rows of one category feature holding a value outside its list, and those values."""

    rows: np.ndarray  # positions in the input, ascending
    values: list[str]  # the value each row held (as text, capped)


@dataclass(frozen=True)
class ValidationResult:
    """Clean rows (typed, categories as dictionary codes) and rejected rows with reasons."""

    clean: pa.Table
    rejected: pa.Table
    clean_rows: np.ndarray  # positions of the clean rows in the input, in order
    # Per category feature with any: rows whose value is not in its list, rejected
    # (`unknown: reject`) or clean with the value missing (`unknown: missing`).
    unseen: dict[str, Unseen] = field(default_factory=dict)

    @property
    def n_input(self) -> int:
        return self.clean.num_rows + self.rejected.num_rows

    def unseen_counts(self, clean_only: bool = False) -> dict[str, dict[str, int]]:
        """Per feature, each unseen value and how many rows held it (all input rows, or the clean ones)."""
        out: dict[str, dict[str, int]] = {}
        for name, found in self.unseen.items():
            values = found.values
            if clean_only:
                kept = np.isin(found.rows, self.clean_rows)
                values = [v for v, k in zip(values, kept.tolist()) if k]
            if values:
                out[name] = dict(Counter(values).most_common())
        return out

    def unseen_in_clean(self) -> dict[str, np.ndarray]:
        """Per feature with any, which clean rows (a mask in clean order) hold a value scored as missing."""
        out = {}
        for name, found in self.unseen.items():
            mask = np.isin(self.clean_rows, found.rows)
            if mask.any():
                out[name] = mask
        return out


def validate(
    data: Data, schema: Schema, *, require_label: bool = False, json_default: JsonDefault | None = None
) -> ValidationResult:
    """Split `data` into clean and rejected rows under `schema`.

    `json_default` writes a source's own value types into rejected records (MongoDB's
    ObjectId, Decimal128, binary ... as extended JSON); without it they are written as text.
    """
    columns, n_rows, records = columns_of(data, schema, require_label)
    codes: dict[str, np.ndarray] = {}
    out: dict[str, pa.Array] = {}

    ids, codes[schema.id_field] = check_id(columns[schema.id_field], n_rows)
    out[schema.id_field] = ids
    for spec in schema.features:
        values, codes[spec.name] = check_feature(spec, columns[spec.name], n_rows)
        out[spec.name] = values
    if require_label:
        labels, codes[schema.label_field] = check_label(columns[schema.label_field], n_rows)
        out[schema.label_field] = labels

    bad = np.zeros(n_rows, dtype=bool)
    for field_codes in codes.values():
        bad |= field_codes > OK  # UNSEEN (below OK) keeps the row
    keep = ~bad
    mask = pa.array(keep)
    clean = pa.table({name: arr.filter(mask) for name, arr in out.items()})
    clean_rows = np.flatnonzero(keep)
    rejected = _rejections(np.flatnonzero(bad), codes, columns, records, schema, json_default or _text)
    return ValidationResult(clean=clean, rejected=rejected, clean_rows=clean_rows,
                            unseen=_unseen(schema, codes, columns))


def _unseen(schema: Schema, codes: dict[str, np.ndarray], columns: dict[str, pa.Array]) -> dict[str, Unseen]:
    """Rows of each category feature whose value is outside its list, with the values they held."""
    found = {}
    for spec in schema.categorical:
        field_codes = codes[spec.name]
        rows = np.flatnonzero((field_codes == UNSEEN) | (field_codes == UNKNOWN_CATEGORY))
        if rows.size:
            values = columns[spec.name].take(pa.array(rows)).to_pylist()
            found[spec.name] = Unseen(rows, [str(_capped(v)) for v in values])
    return found


def move_to_rejected(
    result: ValidationResult,
    data: Data,
    clean_positions: np.ndarray,
    reason: str,
    field: str,
    details: list[dict[str, Any]],
    json_default: JsonDefault | None = None,
) -> ValidationResult:
    """The result with some clean rows (positions in `result.clean`) rejected for `reason`
    on `field`, each with its `details` (merged into its error) and its original record."""
    if clean_positions.size == 0:
        return result
    default = json_default or _text
    input_rows = result.clean_rows[clean_positions]
    ids = result.clean.column(field).take(pa.array(clean_positions)).to_pylist()
    errors = [
        json.dumps([{"field": field, "reason": reason, "value": _capped(i), **d}], default=default)
        for i, d in zip(ids, details)
    ]
    moved = pa.table(
        {
            "row": pa.array(input_rows, pa.int64()),
            "customer_id": pa.array(ids, pa.string()),
            "field": pa.array([field] * len(ids), pa.string()),
            "reason": pa.array([reason] * len(ids), pa.string()),
            "errors": pa.array(errors, pa.string()),
            "record": pa.array([_record_json(_original(data, int(r)), default) for r in input_rows], pa.string()),
        },
        schema=REJECTED_SCHEMA,
    )
    keep = np.ones(result.clean.num_rows, dtype=bool)
    keep[clean_positions] = False
    rejected = pa.concat_tables([result.rejected, moved]).sort_by("row")
    return replace(
        result, clean=result.clean.filter(pa.array(keep)), rejected=rejected, clean_rows=result.clean_rows[keep]
    )


# -- rejections -----------------------------------------------------------------------------


def _rejections(
    rows: np.ndarray,
    codes: dict[str, np.ndarray],
    columns: dict[str, pa.Array],
    records: Any,
    schema: Schema,
    default: JsonDefault,
) -> pa.Table:
    if rows.size == 0:
        return REJECTED_SCHEMA.empty_table()
    ids, firsts, reasons, errors, originals = [], [], [], [], []
    id_column = columns[schema.id_field]
    for row in rows.tolist():
        original = _original(records, row)
        problems = []
        for name, field_codes in codes.items():
            code = int(field_codes[row])
            if code > OK:
                value = columns[name][row].as_py()
                if value == UNREADABLE and isinstance(original, dict):
                    value = original.get(name)  # the value as the source holds it, not our marker
                problem = {"field": name, "reason": REASONS[code], "value": _capped(_jsonable(value))}
                problems.append({**problem, **_rule(schema.by_name.get(name), REASONS[code])})
        raw_id = id_column[row].as_py()
        if raw_id == UNREADABLE and isinstance(original, dict):
            # Keep the id the source holds (extended JSON for an ObjectId, a binary ...) so the
            # document can be found again.
            raw_id = json.dumps(original.get(schema.id_field), default=default)
        ids.append(None if raw_id is None else _capped(str(raw_id)))
        firsts.append(problems[0]["field"])
        reasons.append(problems[0]["reason"])
        errors.append(json.dumps(problems, default=default))
        originals.append(_record_json(original, default))
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


def _record_json(record: Any, default: JsonDefault) -> str:
    """The original record as JSON, capped so a huge document stays a small quarantine entry."""
    text = json.dumps(_capped(record), default=lambda v: _capped(default(v)))
    if len(text) > MAX_RECORD:
        text = json.dumps({"truncated_json": text[:MAX_RECORD], "original_chars": len(text)})
    return text


def _capped(value: Any, depth: int = 0) -> Any:
    """`value` with long strings, bytes and containers cut (and a note of how much was cut)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else f"{value[:MAX_TEXT]}...[{len(value) - MAX_TEXT} more characters]"
    if isinstance(value, (bytes, bytearray)) and len(value) > MAX_TEXT:
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return f"<object of {len(value)} fields>"
        items = list(value.items())
        out = {str(k)[:MAX_TEXT]: _capped(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["..."] = f"{len(items) - MAX_ITEMS} more fields"
        return out
    if isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            return f"<list of {len(value)} items>"
        out_list = [_capped(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out_list.append(f"... {len(value) - MAX_ITEMS} more items")
        return out_list
    return value


def _text(value: Any) -> str:
    return str(value)


def _original(records: Any, row: int) -> Any:
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

