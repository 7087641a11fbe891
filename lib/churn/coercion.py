"""How each field's raw Arrow column becomes a typed, checked column with an error code per row.

The validator (churn.validation) calls these per field, on the arrays churn.raw_columns built.
Typed columns cost a few vectorised passes; text is coerced when unambiguous (numbers with
spaces, categories in another case) and rejected when not.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.raw_columns import UNREADABLE, plain_array
from churn.schema import FeatureSpec

OK, MISSING, WRONG_TYPE, OUT_OF_BOUNDS, UNKNOWN_CATEGORY, NOT_FINITE = range(6)
# A category value the model never learned, under `unknown: missing`: the row stays clean and
# the value is scored as missing. Below OK so that `code > OK` is exactly "rejected".
UNSEEN = -1
REASONS = {
    MISSING: "missing",
    WRONG_TYPE: "wrong_type",
    OUT_OF_BOUNDS: "out_of_bounds",
    UNKNOWN_CATEGORY: "unknown_category",
    NOT_FINITE: "not_finite",
}
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_SPECIAL = r"^[+-]?inf(inity)?$"
_TRUE = ("true", "yes", "1", "1.0", "y", "t")
_FALSE = ("false", "no", "0", "0.0", "n", "f")
MAX_ID_CHARS = 256

# -- per-field checks -----------------------------------------------------------------------


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def check_id(array: pa.Array, n: int) -> tuple[pa.Array, np.ndarray]:
    codes = np.zeros(n, dtype=np.int8)
    if pa.types.is_string(array.type):
        codes[_np(pc.fill_null(pc.equal(array, UNREADABLE), False))] = WRONG_TYPE
        ids = pc.utf8_trim_whitespace(array)
        # An id is a key, not a document: a megabyte "id" would be copied into every sink and log.
        too_long = _np(pc.fill_null(pc.greater(pc.utf8_length(ids), MAX_ID_CHARS), False))
        codes[too_long & (codes == OK)] = OUT_OF_BOUNDS
        ids = pc.if_else(pa.array(too_long), pa.scalar(None, pa.string()), ids)
    elif pa.types.is_integer(array.type) or pa.types.is_null(array.type):
        ids = array.cast(pa.string())
    else:
        ids = pa.nulls(n, pa.string())
        codes[_np(array.is_valid())] = WRONG_TYPE
    empty = _np(pc.fill_null(pc.equal(ids, ""), True))
    codes[empty & (codes == OK)] = MISSING
    return ids, codes


def check_feature(spec: FeatureSpec, array: pa.Array, n: int) -> tuple[pa.Array, np.ndarray]:
    if spec.is_numeric:
        return _check_number(spec, array, n)
    return _check_category(spec, array, n)


def _check_number(spec: FeatureSpec, array: pa.Array, n: int) -> tuple[pa.Array, np.ndarray]:
    codes = np.zeros(n, dtype=np.int8)
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # Unsafe on purpose: integers beyond 2**53 lose precision, and the bounds judge them.
        values = array.cast(pa.float64(), safe=False)
    elif pa.types.is_string(kind):
        text = pc.utf8_trim_whitespace(array)
        is_number = pc.match_substring_regex(text, _NUMBER)
        is_blank = pc.equal(text, "")
        # "inf"/"nan" spelled out: a float the source could not represent, not a typo.
        is_special = pc.match_substring_regex(text, _SPECIAL, ignore_case=True)
        codes[_np(pc.fill_null(is_special, False))] = NOT_FINITE
        is_blank = pc.or_(is_blank, pc.match_substring_regex(text, "^[+-]?nan$", ignore_case=True))
        codes[_np(pc.fill_null(pc.invert(pc.or_(pc.or_(is_number, is_blank), is_special)), False))] = WRONG_TYPE
        values = pc.if_else(is_number, text, pa.scalar(None, pa.string())).cast(pa.float64())
    elif pa.types.is_null(kind):
        values = pa.nulls(n, pa.float64())
    else:  # booleans, timestamps, nested values: never a number
        codes[_np(array.is_valid())] = WRONG_TYPE
        values = pa.nulls(n, pa.float64())

    raw = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    null = np.isnan(raw)  # pandas NaN and Arrow nulls both arrive as NaN: both mean missing
    inf = np.isinf(raw)
    codes[inf & (codes == OK)] = NOT_FINITE
    if not spec.nullable:
        codes[null & (codes == OK)] = MISSING
    finite = ~null & ~inf
    if spec.type == "int":
        with np.errstate(invalid="ignore"):
            fractional = finite & (np.floor(raw) != raw)
        codes[fractional & (codes == OK)] = WRONG_TYPE
    with np.errstate(invalid="ignore"):
        out_of_bounds = np.zeros(n, dtype=bool)
        if spec.min is not None:
            out_of_bounds |= finite & (raw < spec.min)
        if spec.max is not None:
            out_of_bounds |= finite & (raw > spec.max)
    codes[out_of_bounds & (codes == OK)] = OUT_OF_BOUNDS

    clean = np.where(codes == OK, raw, np.nan)
    result = pa.array(clean, mask=np.isnan(clean))
    if spec.type == "int":
        result = pc.cast(result, pa.int64(), safe=False)
    return result, codes


def _check_category(spec: FeatureSpec, array: pa.Array, n: int) -> tuple[pa.Array, np.ndarray]:
    if spec.to_learn:
        return _check_to_learn(spec, array, n)
    if pa.types.is_dictionary(array.type):
        return _check_category_dictionary(spec, array, n)
    codes = np.zeros(n, dtype=np.int8)
    allowed = pa.array(spec.values, pa.string())
    kind = array.type
    if pa.types.is_boolean(kind) and "Yes" in spec.values and "No" in spec.values:
        text = pc.if_else(array, "Yes", "No")
    elif pa.types.is_string(kind):
        unreadable = pc.fill_null(pc.equal(array, UNREADABLE), False)
        codes[_np(unreadable)] = WRONG_TYPE
        text = pc.if_else(unreadable, pa.scalar(None, pa.string()), array)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        text = _number_text(array, codes)
    elif pa.types.is_null(kind):
        text = pa.nulls(n, pa.string())
    else:
        codes[_np(array.is_valid())] = WRONG_TYPE
        text = pa.nulls(n, pa.string())

    index = pc.index_in(text, value_set=allowed)
    missed = _np(pc.and_(pc.is_null(index), text.is_valid()))
    if missed.any():
        # Exact match failed for some: retry those ignoring case and surrounding spaces.
        folded = pc.utf8_lower(pc.utf8_trim_whitespace(text))
        if "Yes" in spec.values and "No" in spec.values:
            # "True"/"False" exported from a boolean column mean Yes/No unambiguously.
            folded = pc.replace_substring_regex(folded, "^true$", "yes")
            folded = pc.replace_substring_regex(folded, "^false$", "no")
        retry = pc.index_in(folded, value_set=pc.utf8_lower(allowed))
        index = pc.coalesce(index, retry)
        blank = _np(pc.fill_null(pc.equal(folded, ""), False))
        text = pc.if_else(pa.array(blank), pa.scalar(None, pa.string()), text)
    index_np = index.to_numpy(zero_copy_only=False)
    present = _np(text.is_valid())
    unknown = present & np.isnan(index_np.astype(np.float64))
    codes[unknown & (codes == OK)] = UNKNOWN_CATEGORY if spec.unknown == "reject" else UNSEEN
    if not spec.nullable:
        codes[~present & (codes == OK)] = MISSING
    ok = codes == OK
    code_type = np.int8 if len(spec.values) <= 127 else np.int32
    safe_index = np.where(ok & present, np.nan_to_num(index_np.astype(np.float64), nan=0), 0).astype(code_type)
    indices = pa.array(safe_index, mask=~(ok & present))
    return pa.DictionaryArray.from_arrays(indices, allowed), codes


def _check_category_dictionary(spec: FeatureSpec, array: pa.DictionaryArray, n: int) -> tuple[pa.Array, np.ndarray]:
    """Judge each distinct value once, then spread the verdicts over the rows by index.

    Parquet and MongoDB readers hand categories over dictionary-encoded; casting them back
    to one string per row costs more than the whole check.
    """
    dictionary = plain_array(array.dictionary)
    if len(dictionary) == 0:
        return _check_category(spec, pa.nulls(n, pa.string()), n)
    per_value, per_value_codes = _check_category(spec, dictionary, len(dictionary))
    null = _np(array.is_null())
    rows = np.where(null, 0, array.indices.to_numpy(zero_copy_only=False)).astype(np.int64)
    codes = per_value_codes[rows]
    codes[null] = OK if spec.nullable else MISSING
    entry_index = per_value.indices
    has_index = _np(entry_index.is_valid())[rows]
    value_codes = np.nan_to_num(entry_index.to_numpy(zero_copy_only=False).astype(np.float64), nan=0)[rows]
    keep = ~null & (codes == OK) & has_index
    code_type = np.int8 if len(spec.values) <= 127 else np.int32
    indices = pa.array(value_codes.astype(code_type), mask=~keep)
    return pa.DictionaryArray.from_arrays(indices, pa.array(spec.values, pa.string())), codes


def _number_text(array: pa.Array, codes: np.ndarray) -> pa.Array:
    """A category coded as numbers (an area code, a 0/1 flag) as the text CSV gives it: integers
    in decimal, integral floats as their integer (pandas writes int columns with gaps as floats);
    NaN is missing; any other float is wrong_type (marked in `codes`) and null here."""
    if pa.types.is_integer(array.type):
        return pc.cast(array, pa.string())
    values = np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)  # null -> NaN
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(values) & (values == np.trunc(values)) & (np.abs(values) < 2.0**53)
    codes[_np(array.is_valid()) & ~integral & ~np.isnan(values)] = WRONG_TYPE  # NaN: missing
    as_int = pa.array(np.where(integral, values, 0).astype(np.int64), mask=~integral)
    return pc.cast(as_int, pa.string())


def _check_to_learn(spec: FeatureSpec, array: pa.Array, n: int) -> tuple[pa.Array, np.ndarray]:
    """A category whose values training has yet to learn: any text is a value (trimmed; a blank
    one is missing), dictionary-encoded. Training maps it to the learned values afterwards."""
    codes = np.zeros(n, dtype=np.int8)
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        array = _number_text(array, codes)
    if pa.types.is_string(array.type):
        unreadable = pc.fill_null(pc.equal(array, UNREADABLE), False)
        codes[_np(unreadable)] = WRONG_TYPE
        text = pc.utf8_trim_whitespace(pc.if_else(unreadable, pa.scalar(None, pa.string()), array))
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    elif pa.types.is_null(array.type):
        text = pa.nulls(n, pa.string())
    else:
        codes[_np(array.is_valid())] = WRONG_TYPE
        text = pa.nulls(n, pa.string())
    if not spec.nullable:
        codes[_np(text.is_null()) & (codes == OK)] = MISSING
    text = pc.if_else(pa.array(codes == OK), text, pa.scalar(None, pa.string()))
    return pc.dictionary_encode(text), codes


def check_label(array: pa.Array, n: int) -> tuple[pa.Array, np.ndarray]:
    codes = np.zeros(n, dtype=np.int8)
    kind = array.type
    if pa.types.is_boolean(kind):
        labels = array
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        as_float = array.cast(pa.float64())
        valid = pc.fill_null(pc.is_in(as_float, value_set=pa.array([0.0, 1.0])), False)
        codes[_np(pc.and_(pc.invert(valid), as_float.is_valid()))] = WRONG_TYPE
        labels = pc.if_else(valid, pc.equal(as_float, 1.0), pa.scalar(None, pa.bool_()))
    elif pa.types.is_string(kind):
        # One trailing period is dropped: some exports write labels as "True." / "False.".
        folded = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_trim_whitespace(array)), r"\.$", "")
        is_true = pc.is_in(folded, value_set=pa.array(_TRUE))
        is_false = pc.is_in(folded, value_set=pa.array(_FALSE))
        blank = pc.equal(folded, "")
        known = pc.or_(is_true, is_false)
        codes[_np(pc.fill_null(pc.invert(pc.or_(known, blank)), False))] = WRONG_TYPE
        labels = pc.if_else(known, is_true, pa.scalar(None, pa.bool_()))
    elif pa.types.is_null(kind):
        labels = pa.nulls(n, pa.bool_())
    else:
        codes[_np(array.is_valid())] = WRONG_TYPE
        labels = pa.nulls(n, pa.bool_())
    codes[_np(labels.is_null()) & (codes == OK)] = MISSING
    return labels, codes
