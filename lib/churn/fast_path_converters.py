"""The fast path's per-feature converters: one value or a whole column, each with the validator's verdict.

Kept apart from `churn.fast_path`'s encoder so the rules for numbers and categories, which must
agree with `churn.validation` value for value, read in one place. A converter answers DOUBT for
anything the validator might see otherwise (it then decides) and UNSEEN for a plainly unseen
category value under `unknown: missing`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.schema import FeatureSpec

# ASCII only: Python's \d also matches other scripts' digits, which the validator rejects.
# No two ways to match the same digits: `[0-9]+\.?[0-9]*` made a failing match quadratic
# (20,000 digits and an "x" held a request thread for 30 s).
_PLAIN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_PLAIN_NUMBER = re.compile(_PLAIN)
_PLAIN_CELL = f"^{_PLAIN}$"
_EXACT_INT = 2**53  # beyond this an int does not survive the validator's float64 cast exactly
_JSON_NUMBERS = {int, float, type(None)}
DOUBT = object()  # "let the validator decide"
UNSEEN = object()  # a category value outside the list, scored as missing (`unknown: missing`)

Converter = Callable[[Any], Any]
# A column's values (NaN: missing) and, for a category, which rows held an unseen value (or None).
Column = tuple[np.ndarray, "np.ndarray | None"]
ColumnConverter = Callable[[Any, bool], "Column | None"]


def number_value(spec: FeatureSpec, fill: float) -> Converter:
    """One numeric value as the validator would keep it (a missing one imputed with `fill`), else DOUBT."""
    lo = -math.inf if spec.min is None else spec.min
    hi = math.inf if spec.max is None else spec.max
    integral = spec.type == "int"

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is float:
            number = value
        elif kind is int:
            if not -_EXACT_INT <= value <= _EXACT_INT:
                return DOUBT
            number = float(value)
        elif kind is str and _PLAIN_NUMBER.fullmatch(value):
            number = float(value)
        elif value is None:
            return fill if spec.nullable else DOUBT
        else:
            return DOUBT
        if math.isnan(number):  # the validator reads NaN as missing
            return fill if spec.nullable else DOUBT
        if math.isinf(number) or not lo <= number <= hi:
            return DOUBT
        if integral:
            if number != math.floor(number) or abs(number) > _EXACT_INT:
                return DOUBT
            return float(int(number))  # the validator keeps ints as int64: -0.0 becomes 0
        return number

    return convert


def category_value(spec: FeatureSpec) -> Converter:
    """One category value as its code (NaN: missing), UNSEEN if plainly outside the list, else DOUBT."""
    codes = {value: float(i) for i, value in enumerate(spec.values)}
    yes_no = "Yes" in codes and "No" in codes
    folded = _folded_values(spec)
    as_missing = spec.unknown == "missing"

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            code = codes.get(value)
            if code is not None:
                return code
            return UNSEEN if as_missing and _plainly_unseen(value, folded) else DOUBT
        if kind is bool and yes_no:
            return codes["Yes" if value else "No"]
        if value is None and spec.nullable:
            return math.nan
        return DOUBT

    return convert


def number_column(spec: FeatureSpec, fill: float, one: Converter) -> ColumnConverter:
    """A whole numeric column at once, with the same verdicts as `one` on each value."""
    lo = -math.inf if spec.min is None else spec.min
    hi = math.inf if spec.max is None else spec.max
    integral = spec.type == "int"

    def convert(values: Any, text: bool) -> Column | None:
        found = _number_column(values, text)
        return None if found is None else (found, None)

    def _number_column(values: Any, text: bool) -> np.ndarray | None:
        if text:
            return checked(_plain_numbers(values, spec.nullable))
        kinds = set(map(type, values))
        if kinds <= _JSON_NUMBERS:
            try:
                raw = np.array(values, dtype=np.float64)  # None -> NaN
            except OverflowError:  # an int beyond any double
                return None
            if int in kinds and np.any(np.abs(raw) >= _EXACT_INT):
                return None  # ints the validator's float cast would round
        else:  # numbers as strings, booleans, ...: value by value
            converted = [one(v) for v in values]
            return None if any(v is DOUBT for v in converted) else np.array(converted, dtype=np.float64)
        return checked(raw)

    def checked(raw: np.ndarray | None) -> np.ndarray | None:
        """Numbers (NaN: missing) held to the field's rules, missing ones imputed; None if any fails."""
        if raw is None:
            return None
        missing = np.isnan(raw)
        has_missing = bool(missing.any())
        if has_missing and not spec.nullable:
            return None
        given = raw[~missing] if has_missing else raw
        if not np.all((given >= lo) & (given <= hi)) or np.isinf(given).any():
            return None
        if integral:
            if np.any(np.floor(given) != given) or np.any(np.abs(given) > _EXACT_INT):
                return None
            raw = raw + 0.0  # the validator keeps ints as int64: -0.0 becomes 0
        if has_missing:
            raw[missing] = fill
        return raw

    return convert


def _plain_numbers(cells: pa.Array, nullable: bool) -> np.ndarray | None:
    """CSV cells that are all plain numbers (or empty or absent, if the field may be missing) as floats.

    Arrow matches (RE2) and parses them: the validator parses with the same cast.
    """
    if nullable:
        cells = pc.if_else(pc.equal(cells, ""), pa.scalar(None, pa.string()), cells)
    elif cells.null_count:
        return None
    plain = pc.match_substring_regex(cells, _PLAIN_CELL)
    if not pc.all(pc.fill_null(plain, True)).as_py():
        return None
    return np.asarray(cells.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def category_column(spec: FeatureSpec, one: Converter) -> ColumnConverter:
    """A whole category column at once: exact names take a dict lookup each, anything else `one`."""
    codes = {value: float(i) for i, value in enumerate(spec.values)}
    allowed = pa.array(spec.values, pa.string())
    folded = pa.array(sorted(_folded_values(spec)), pa.string())

    def convert(values: Any, text: bool) -> Column | None:
        if text:
            return _text_column(values)
        if set(map(type, values)) == {str}:
            try:
                return np.fromiter(map(codes.__getitem__, values), dtype=np.float64, count=len(values)), None
            except KeyError:  # another case, spaces, unseen: value by value below
                pass
        converted = [one(v) for v in values]
        if any(v is DOUBT for v in converted):
            return None
        unseen = np.fromiter((v is UNSEEN for v in converted), dtype=bool, count=len(converted))
        column = np.array([math.nan if v is UNSEEN else v for v in converted], dtype=np.float64)
        return column, unseen if unseen.any() else None

    def _text_column(cells: pa.Array) -> Column | None:
        """Exact names; plainly unseen values under `unknown: missing`; an empty cell is left to
        the validator, an absent field is missing."""
        index = pc.index_in(cells, value_set=allowed)
        if cells.null_count and not spec.nullable:
            return None
        column = np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.float64)  # null -> NaN
        if index.null_count == cells.null_count:
            return column, None
        if spec.unknown != "missing":
            return None
        unmatched = pc.and_(pc.is_null(index), pc.is_valid(cells))
        others = cells.filter(unmatched)
        if not pc.all(pc.match_substring_regex(others, _PRINTABLE_CELL)).as_py():
            return None  # text the validator's Unicode folding might match: it decides
        keys = pc.utf8_lower(pc.utf8_trim(others, " "))
        if pc.any(pc.equal(keys, "")).as_py() or pc.any(pc.is_in(keys, value_set=folded)).as_py():
            return None  # blank, or another case or spacing of a value: the validator coerces it
        return column, np.asarray(unmatched.to_numpy(zero_copy_only=False), dtype=bool)

    return convert


# Printable ASCII: the only whitespace is " ", and lower-casing is the same in Python and Arrow.
_PRINTABLE_CELL = r"^[ -~]*$"


def _folded_values(spec: FeatureSpec) -> set[str]:
    """Every value as the validator folds it (case, surrounding spaces), plus what it maps to Yes/No."""
    folded = {value.strip().lower() for value in spec.values}
    if "Yes" in spec.values and "No" in spec.values:
        folded |= {"true", "false"}
    return folded


def _plainly_unseen(value: str, folded: set[str]) -> bool:
    """A value the validator surely finds in no case or spacing of the list (so, unseen)."""
    if not (value.isascii() and value.isprintable()):
        return False
    key = value.strip(" ").lower()
    return bool(key) and key not in folded
