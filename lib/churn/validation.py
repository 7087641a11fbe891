"""One validator for training, batch scoring and HTTP: split input into clean and rejected rows.

Input may be an Arrow table, a pandas DataFrame or a list of dicts. Each column is checked
with vectorised Arrow kernels, so typed columns cost a few passes; messy columns (numbers as
strings, mixed types from MongoDB or JSON) are coerced when unambiguous and rejected when
not. Every rejected row keeps its original record and the field and reason of each problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from churn.coercion import (
    OK,
    REASONS,
    UNREADABLE,
    check_feature,
    check_id,
    check_label,
    columns_of,
    to_table,
)
from churn.schema import Schema

__all__ = ["REJECTED_SCHEMA", "ValidationResult", "describe", "to_table", "validate"]

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
class ValidationResult:
    """Clean rows (typed, categories as dictionary codes) and rejected rows with reasons."""

    clean: pa.Table
    rejected: pa.Table
    clean_rows: np.ndarray  # positions of the clean rows in the input, in order

    @property
    def n_input(self) -> int:
        return self.clean.num_rows + self.rejected.num_rows


def validate(data: Data, schema: Schema, *, require_label: bool = False) -> ValidationResult:
    """Split `data` into clean and rejected rows under `schema`."""
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
        bad |= field_codes != OK
    keep = ~bad
    mask = pa.array(keep)
    clean = pa.table({name: arr.filter(mask) for name, arr in out.items()})
    clean_rows = np.flatnonzero(keep)
    rejected = _rejections(np.flatnonzero(bad), codes, columns, records, schema)
    return ValidationResult(clean=clean, rejected=rejected, clean_rows=clean_rows)


# -- rejections -----------------------------------------------------------------------------


def _rejections(
    rows: np.ndarray,
    codes: dict[str, np.ndarray],
    columns: dict[str, pa.Array],
    records: Any,
    schema: Schema,
) -> pa.Table:
    if rows.size == 0:
        return REJECTED_SCHEMA.empty_table()
    ids, firsts, reasons, errors, originals = [], [], [], [], []
    id_column = columns[schema.id_field]
    for row in rows.tolist():
        problems = []
        for name, field_codes in codes.items():
            code = int(field_codes[row])
            if code != OK:
                value = columns[name][row].as_py()
                problems.append({"field": name, "reason": REASONS[code], "value": _jsonable(value)})
        raw_id = id_column[row].as_py()
        ids.append(None if raw_id is None else str(raw_id))
        firsts.append(problems[0]["field"])
        reasons.append(problems[0]["reason"])
        errors.append(json.dumps(problems, default=str))
        originals.append(json.dumps(_original(records, row), default=str))
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

