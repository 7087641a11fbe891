"""One validator for training, batch scoring and HTTP: split input into clean and rejected rows.

Input may be an Arrow table, a pandas DataFrame or a list of dicts. Each column is checked
with vectorised Arrow kernels, so typed columns cost a few passes; messy columns (numbers as
strings, mixed types from MongoDB or JSON) are coerced when unambiguous and rejected when
not. Every rejected row keeps its original record and the field and reason of each problem
(written by `churn.rejections`).

A category value outside the schema's list is either a rejection (`unknown: reject`) or, by
default (`unknown: missing`), kept as a missing value; either way the result lists it in
`unseen`, so callers count how often each feature holds a value the model never learned.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from churn.coercion import OK, UNKNOWN_CATEGORY, UNSEEN, check_feature, check_id, check_label
from churn.raw_columns import columns_of, to_table
from churn.rejections import (
    REJECTED_SCHEMA,
    JsonDefault,
    as_text,
    capped,
    describe,
    original_record,
    record_json,
    rejected_rows,
)
from churn.schema import Schema

__all__ = [
    "REJECTED_SCHEMA",
    "JsonDefault",
    "Unseen",
    "ValidationResult",
    "describe",
    "move_to_rejected",
    "to_table",
    "validate",
]

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
    rejected = rejected_rows(np.flatnonzero(bad), codes, columns, records, schema, json_default or as_text)
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
            found[spec.name] = Unseen(rows, [str(capped(v)) for v in values])
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
    default = json_default or as_text
    input_rows = result.clean_rows[clean_positions]
    ids = result.clean.column(field).take(pa.array(clean_positions)).to_pylist()
    errors = [
        json.dumps([{"field": field, "reason": reason, "value": capped(i), **d}], default=default)
        for i, d in zip(ids, details)
    ]
    moved = pa.table(
        {
            "row": pa.array(input_rows, pa.int64()),
            "customer_id": pa.array(ids, pa.string()),
            "field": pa.array([field] * len(ids), pa.string()),
            "reason": pa.array([reason] * len(ids), pa.string()),
            "errors": pa.array(errors, pa.string()),
            "record": pa.array([record_json(original_record(data, int(r)), default) for r in input_rows], pa.string()),
        },
        schema=REJECTED_SCHEMA,
    )
    keep = np.ones(result.clean.num_rows, dtype=bool)
    keep[clean_positions] = False
    rejected = pa.concat_tables([result.rejected, moved]).sort_by("row")
    return replace(
        result, clean=result.clean.filter(pa.array(keep)), rejected=rejected, clean_rows=result.clean_rows[keep]
    )
