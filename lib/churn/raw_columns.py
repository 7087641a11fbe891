"""How raw input (an Arrow table, a pandas DataFrame, a list of dicts) becomes one Arrow
array per schema field, before any field is judged.

Typed columns pass through. Python values of the field's plain kinds go through Arrow's
inference; any other type (BSON binary, UUID, ObjectId, Decimal128, dates, lists, dicts...)
sends the column through text, value by value, with a marker for values no field accepts, so
a value gets the same verdict whatever its neighbours are.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from churn.errors import InvalidInput
from churn.schema import Schema

UNREADABLE = "\x00unreadable"  # marks values of a type no field accepts (dicts, lists, binary...)



def to_table(records: Sequence[dict[str, Any]], schema: Schema, extra: Sequence[str] = ()) -> pa.Table:
    """Raw documents as an Arrow table without judging them: mixed columns become strings.

    Used to snapshot messy sources (MongoDB) to Parquet before validation.
    """
    names = [schema.id_field, *schema.feature_names, schema.label_field, *extra]
    return pa.table({name: _from_values([r.get(name) for r in records], _kind(name, schema)) for name in names})


def _kind(name: str, schema: Schema) -> str:
    """How loose Python values of this field turn into text when a column mixes types."""
    if name == schema.id_field:
        return "id"
    if name == schema.label_field:
        return "label"
    spec = schema.by_name.get(name)
    if spec is None or spec.is_numeric:
        return "number"
    return "yesno" if "Yes" in spec.values and "No" in spec.values else "category"


def columns_of(data: Any, schema: Schema, require_label: bool) -> tuple[dict[str, pa.Array], int, Any]:
    """Each field the schema needs as one Arrow array (all-null where the input lacks it)."""
    wanted = [schema.id_field, *schema.feature_names] + ([schema.label_field] if require_label else [])
    if isinstance(data, pa.Table):
        n = data.num_rows
        got = {
            name: plain_array(data.column(name), keep_dictionary=_kind(name, schema) in ("category", "yesno"))
            for name in wanted
            if name in data.column_names
        }
        records: Any = data
    elif hasattr(data, "columns") and hasattr(data, "iloc"):  # pandas DataFrame, duck-typed
        n = len(data)
        got = {}
        for name in wanted:
            if name in data.columns:
                column = data[name]
                values = column.tolist() if column.dtype == object else column
                got[name] = _from_values(values, _kind(name, schema))
        records = data
    elif isinstance(data, (list, tuple)):
        n = len(data)
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise InvalidInput(f"record {i} is a {type(item).__name__}, not an object", row=i)
        got = {name: _from_values([r.get(name) for r in data], _kind(name, schema)) for name in wanted}
        records = data
    else:
        raise InvalidInput(f"cannot validate a {type(data).__name__}: give a table, DataFrame or list of objects")
    columns = {name: got.get(name, pa.nulls(n)) for name in wanted}
    return columns, n, records


def plain_array(column: pa.ChunkedArray | pa.Array, keep_dictionary: bool = False) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if pa.types.is_dictionary(column.type):
            column = column.unify_dictionaries()  # chunks may each carry their own dictionary
        array = column.combine_chunks()
    else:
        array = column
    if pa.types.is_dictionary(array.type) and not keep_dictionary:
        array = array.cast(array.type.value_type)
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


# Python types a column of each kind may hold and still be built by Arrow's inference: any
# other type (bytes, UUID, ObjectId, Decimal128, datetime, lists, dicts, MinKey, a bool among
# numbers...) sends the column through `_as_text`, which judges each value alone. Otherwise one
# odd value could set the type of the whole column (a BSON binary among strings made Arrow
# build a binary column, and every row of the chunk was wrong_type).
_NONE = type(None)
_INFERABLE: dict[str, tuple[frozenset[type], ...]] = {
    "id": (frozenset({str, _NONE}), frozenset({int, _NONE})),
    "number": (frozenset({int, float, _NONE}),),
    "category": (frozenset({str, _NONE}),),
    "yesno": (frozenset({str, _NONE}), frozenset({bool, _NONE})),
    "label": (frozenset({str, _NONE}), frozenset({bool, _NONE}), frozenset({int, float, _NONE})),
}


def _from_values(values: Any, kind: str) -> pa.Array:
    """An Arrow array from Python values; anything but plain values of the field's kind goes
    through text, value by value, so one bad value costs one row."""
    if isinstance(values, list):
        found = {_base(t) for t in set(map(type, values))}
        if not any(found <= allowed for allowed in _INFERABLE[kind]):
            return pa.array([_as_text(v, kind) for v in values], pa.string())
    try:
        return plain_array(pa.array(values, from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([_as_text(v, kind) for v in values], pa.string())


def _base(kind: type) -> type:
    """int for int subclasses (BSON's Int64), float for float subclasses; bool stays bool."""
    if kind is not bool and issubclass(kind, int):
        return int
    if issubclass(kind, float):
        return float
    return kind


def id_text(value: Any) -> str | None:
    """A customer id as the validator reads it (a string trimmed, an integer in decimal), or
    None for anything else: sharding uses the same reading, so `12345`, `"12345"` and
    `" 12345 "` land in one shard, where the duplicate-id rule meets them."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, np.integer):
        return str(int(value))
    return None


def _as_text(value: Any, kind: str) -> str | None:
    """One loose value as text the field's check understands; unreadable values get a marker."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _as_text(value.item(), kind)
    if isinstance(value, bool):
        if kind == "yesno":
            return "Yes" if value else "No"
        return ("true" if value else "false") if kind == "label" else UNREADABLE
    if isinstance(value, str):
        if type(value) is not str:  # BSON JavaScript Code (a str subclass) is not text anyone typed
            return UNREADABLE
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from JSON: not text anyone meant
            return UNREADABLE
        return value
    if isinstance(value, int) and kind in ("id", "number", "label", "category"):
        return str(value)
    if isinstance(value, float) and kind in ("number", "label"):
        return repr(value)
    if isinstance(value, float) and kind == "category":
        # A category coded as numbers (an area code, a 0/1 flag) reads as CSV gives it: an
        # integral float is its integer's text (pandas writes int columns with gaps as floats).
        return str(int(value)) if value.is_integer() else UNREADABLE
    if kind == "number" and (isinstance(value, decimal.Decimal) or hasattr(value, "to_decimal")):
        return _decimal_text(value)
    return UNREADABLE


def _decimal_text(value: Any) -> str:
    """A decimal (MongoDB's Decimal128, money's recommended type) as a float's text when the
    float says exactly the same number (29.85 -> "29.85"); digits a float cannot carry are
    unreadable, not silently rounded."""
    number = value.to_decimal() if hasattr(value, "to_decimal") else value
    if not isinstance(number, decimal.Decimal):
        return UNREADABLE
    if number.is_nan():
        return "nan"
    if number.is_infinite():
        return "-inf" if number < 0 else "inf"
    as_float = float(number)
    if math.isinf(as_float) or decimal.Decimal(repr(as_float)) != number:
        return UNREADABLE
    return repr(as_float)
