"""The fast single-record path: one JSON object straight to a feature row, no Arrow or pandas.

It accepts only values whose meaning under `churn.validation.validate` is beyond doubt
(exact category names, plain numbers in bounds) and answers None for anything else, so the
caller falls back to the validator, which then gives the authoritative verdict or rejection.
Tests prove: whenever this path accepts, the validator accepts with the same values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn.compiled import CompiledModel
from churn.schema import FeatureSpec

# ASCII only: Python's \d also matches other scripts' digits, which the validator rejects.
_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_EXACT_INT = 2**53  # beyond this an int does not survive the validator's float64 cast exactly
_INT64 = 2**63
_DOUBT = object()  # "let the validator decide"

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class EncodedRecord:
    """One clean record: its feature row (in `feature_order`) and its id, if it had one."""

    row: np.ndarray  # shape (1, n_features), float64
    customer_id: str | None


class RecordEncoder:
    """Precompiled per-feature converters for one model's schema and imputation values."""

    def __init__(self, compiled: CompiledModel) -> None:
        schema = compiled.schema
        self.id_field = schema.id_field
        fills = dict(zip([s.name for s in schema.numeric], compiled.fill.tolist()))
        self._fields: list[tuple[str, Converter]] = []
        for name in compiled.feature_order:
            spec = schema.by_name[name]
            converter = _number(spec, fills[name]) if spec.is_numeric else _category(spec)
            self._fields.append((name, converter))

    def encode(self, record: dict[str, Any]) -> EncodedRecord | None:
        """The feature row of a record the validator would surely accept, else None."""
        customer_id = _identifier(record.get(self.id_field))
        if customer_id is _DOUBT:
            return None
        values = []
        for name, convert in self._fields:
            value = convert(record.get(name))
            if value is _DOUBT:
                return None
            values.append(value)
        return EncodedRecord(np.array([values], dtype=np.float64), customer_id)


def _identifier(value: Any) -> Any:
    """A plain id as the validator would keep it; None when absent (the caller fills one)."""
    if value is None:
        return None
    if type(value) is str:
        # Printable ASCII at both ends: nothing the validator's Unicode trim could remove.
        if value and "!" <= value[0] <= "~" and "!" <= value[-1] <= "~":
            return value
        return _DOUBT
    if type(value) is int and -_INT64 <= value < _INT64:
        return str(value)
    return _DOUBT


def _number(spec: FeatureSpec, fill: float) -> Converter:
    lo = -math.inf if spec.min is None else spec.min
    hi = math.inf if spec.max is None else spec.max
    integral = spec.type == "int"

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is float:
            number = value
        elif kind is int:
            if not -_EXACT_INT <= value <= _EXACT_INT:
                return _DOUBT
            number = float(value)
        elif kind is str and _PLAIN_NUMBER.fullmatch(value):
            number = float(value)
        elif value is None:
            return fill if spec.nullable else _DOUBT
        else:
            return _DOUBT
        if math.isnan(number):  # the validator reads NaN as missing
            return fill if spec.nullable else _DOUBT
        if math.isinf(number) or not lo <= number <= hi:
            return _DOUBT
        if integral:
            if number != math.floor(number) or abs(number) > _EXACT_INT:
                return _DOUBT
            return float(int(number))  # the validator keeps ints as int64: -0.0 becomes 0
        return number

    return convert


def _category(spec: FeatureSpec) -> Converter:
    codes = {value: float(i) for i, value in enumerate(spec.values)}
    yes_no = "Yes" in codes and "No" in codes

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return codes.get(value, _DOUBT)
        if kind is bool and yes_no:
            return codes["Yes" if value else "No"]
        if value is None and spec.nullable:
            return math.nan
        return _DOUBT

    return convert
