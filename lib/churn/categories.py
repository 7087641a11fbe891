"""Category values learned from training rows, and tables recoded to a schema's values.

A category in params.yaml may leave out `values:`. Training then learns them from the
non-test rows: values that differ only in case or surrounding spaces are one value, spelt
as most rows spell it; the order is by row count, most first, then by name (so the same
rows always give the same list); at most `max_values` are kept and rarer ones are treated
as unseen (trained as missing, and at scoring time as the feature's `unknown` policy says).
A column whose kept values would cover less than MIN_COVERAGE of its rows is an
identifier, not a category: training refuses it (exit 3) naming the counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.coercion import check_feature
from churn.errors import InvalidInput
from churn.profile import category_codes
from churn.raw_columns import plain_array
from churn.schema import FeatureSpec, Schema

log = logging.getLogger(__name__)

# Kept values must cover at least this share of a learned column's non-missing rows.
MIN_COVERAGE = 0.5


@dataclass(frozen=True)
class Learned:
    """What learning one feature's values found: reported in train.json and MLflow."""

    feature: str
    distinct: int  # distinct values (case and surrounding spaces ignored)
    kept: int  # values kept (at most max_values)
    rows: int  # rows with a value
    rows_outside: int  # rows whose value was past the cap: trained as missing

    @property
    def coverage(self) -> float:
        return 1.0 - self.rows_outside / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"distinct": self.distinct, "kept": self.kept, "rows": self.rows, "rows_outside": self.rows_outside,
                "coverage": round(self.coverage, 6)}


def learn(schema: Schema, table: pa.Table) -> tuple[Schema, dict[str, Learned]]:
    """The schema with every category's missing `values` learned from `table` (the non-test
    rows, validated), and what was found per learned feature. InvalidInput (exit 3) for a
    feature with no value at all, or whose kept values cover too few rows."""
    if not schema.to_learn:
        return schema, {}
    specs, found = [], {}
    for spec in schema.features:
        if spec.to_learn:
            values, found[spec.name] = _learn_one(spec, table.column(spec.name))
            spec = replace(spec, values=values, learned=True)
        specs.append(spec)
    return replace(schema, features=tuple(specs)), found


def _learn_one(spec: FeatureSpec, column: pa.ChunkedArray | pa.Array) -> tuple[tuple[str, ...], Learned]:
    text = pc.utf8_trim_whitespace(plain_array(column))
    text = text.filter(pc.fill_null(pc.not_equal(text, ""), False))
    if len(text) == 0:
        raise InvalidInput(f"category {spec.name!r} has no value in the training rows to learn its values from; "
                           "list them under `values:` in params.yaml", feature=spec.name)
    counted = pc.value_counts(text)
    spellings = counted.field("values").to_pylist()
    counts = counted.field("counts").to_pylist()
    groups: dict[str, list[tuple[int, str]]] = {}
    for spelling, count in zip(spellings, counts):
        groups.setdefault(spelling.lower(), []).append((count, spelling))
    # One value per case-folded key, spelt as most rows spell it (ties: the smallest name).
    merged = [(sum(c for c, _ in group), min(group, key=lambda cs: (-cs[0], cs[1]))[1]) for group in groups.values()]
    merged.sort(key=lambda cv: (-cv[0], cv[1]))
    kept = merged[: spec.max_values]
    rows = len(text)
    outside = rows - sum(c for c, _ in kept)
    learned = Learned(spec.name, len(merged), len(kept), rows, outside)
    if outside:
        what = (f"category {spec.name!r}: {len(merged):,} distinct values in {rows:,} training rows; the "
                f"{len(kept):,} most frequent (max_values) cover {learned.coverage:.1%} of them")
        if learned.coverage < MIN_COVERAGE:
            raise InvalidInput(
                f"{what}: this looks like an identifier, not a category. List its values under `values:`, raise "
                f"`max_values`, or leave the column out of schema.features", feature=spec.name,
                distinct=len(merged), max_values=spec.max_values,
            )
        log.warning(f"{what}; the other {outside:,} rows are trained as missing and such values are unseen at "
                    f"scoring time (unknown: {spec.unknown})", extra={"feature": spec.name, **learned.to_dict()})
    return tuple(value for _, value in kept), learned


def recode(table: pa.Table, schema: Schema) -> pa.Table:
    """`table` with every category column coded to the schema's values (dictionary arrays over
    exactly `values`), read as the validator reads them: case and spaces folded, a value
    outside the list missing. Columns already coded so are left as they are."""
    for spec in schema.categorical:
        column = table.column(spec.name)
        if not _coded(column, spec):
            table = table.set_column(table.column_names.index(spec.name), spec.name, _recoded(column, spec))
    return table


def codes(column: pa.ChunkedArray | pa.Array, spec: FeatureSpec) -> np.ndarray:
    """A category column as float codes into `spec.values` (NaN: missing or not in the list)."""
    return category_codes(column if _coded(column, spec) else _recoded(column, spec))


def _recoded(column: pa.ChunkedArray | pa.Array, spec: FeatureSpec) -> pa.Array:
    array = plain_array(column, keep_dictionary=True)
    values, _ = check_feature(spec, array, len(array))
    return values


def _coded(column: pa.ChunkedArray | pa.Array, spec: FeatureSpec) -> bool:
    if not pa.types.is_dictionary(column.type):
        return False
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    expected = list(spec.values)
    return all(chunk.dictionary.to_pylist() == expected for chunk in chunks)
