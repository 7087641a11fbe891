"""Dirty records: the messy mutations a validator must reject or coerce.

``apply_dirt`` gives a share of a block's rows exactly one mutation from
``DIRTY_KINDS`` and names it in ``dirty_kind``; ``to_documents`` turns rows back
into MongoDB documents with native clean values and messy-typed dirty ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.population import _NO_SERVICE, _YES, BLOCK_ROWS, CONTRACTS, FEATURES

__all__ = ["DIRTY_KINDS", "STRING_WHEN_DIRTY", "DirtyKind", "apply_dirt", "to_documents"]


@dataclass(frozen=True)
class DirtyKind:
    """One messy mutation: the column it touches and the validator outcome."""

    name: str  # full dirty_kind value, "reject:..." or "coerce:..."
    column: str
    description: str

    @property
    def outcome(self) -> str:
        """'reject' or 'coerce'."""
        return self.name.split(":", 1)[0]


DIRTY_KINDS: tuple[DirtyKind, ...] = (
    DirtyKind("reject:negative_tenure", "tenure", "negative integer, e.g. -5"),
    DirtyKind("reject:non_numeric_text", "monthly_charges", 'text such as "abc"'),
    DirtyKind("reject:unknown_contract", "contract", '"Month to month", "Monthly", "Three year"'),
    DirtyKind("reject:unknown_internet_service", "internet_service", '"Satellite", "Cable", "5G"'),
    DirtyKind("reject:missing_field", "payment_method", "null; field absent from documents"),
    DirtyKind("reject:negative_charges", "monthly_charges", "negative amount, e.g. -29.85"),
    DirtyKind("reject:non_finite", "total_charges", '"inf" (float inf in documents)'),
    DirtyKind("coerce:padded_number", "monthly_charges", 'number with spaces, e.g. " 29.85 "'),
    DirtyKind("coerce:integer_as_float", "tenure", 'integer written as "12.0"'),
    DirtyKind("coerce:blank_as_missing", "total_charges", '" " meaning missing'),
    DirtyKind("coerce:category_case", "contract", 'case/whitespace variant, e.g. " month-to-month"'),
    DirtyKind("coerce:boolean_yes_no", "tech_support", '"True"/"False" (bool in documents) for Yes/No'),
)
_KIND_INDEX = {k.name: i for i, k in enumerate(DIRTY_KINDS)}
# Numeric columns that may hold messy strings: emitted as strings when dirty_rate > 0.
STRING_WHEN_DIRTY = ("tenure", "monthly_charges", "total_charges")
_JUNK_TEXT = ("abc", "#VALUE!", "twenty")
_UNKNOWN_CONTRACT = ("Month to month", "Monthly", "Three year")
_UNKNOWN_INTERNET = ("Satellite", "Cable", "5G")


def _replace(column: pa.Array, rows: np.ndarray, values: list[Any]) -> pa.Array:
    """Replace the given rows of a string column with new (possibly null) values."""
    if rows.size == 0:
        return column
    mask = np.zeros(len(column), dtype=bool)
    mask[rows] = True
    # replace_with_mask consumes replacements in row order.
    order = np.argsort(rows, kind="stable")
    replacement = pa.array([values[i] for i in order], pa.string())
    return pc.replace_with_mask(column, pa.array(mask), replacement)


def _case_variant(value: str, variant: int) -> str:
    """Same category in another case/whitespace: never equal to the canonical string."""
    return (" " + value.lower(), value.upper(), value.lower() + "  ")[variant]


def _messy_strings(
    name: str, rows: np.ndarray, d: dict[str, np.ndarray], variant: np.ndarray
) -> list[Any]:
    """The messy values of one dirty kind for the given rows (as the table stores them)."""
    v = variant[rows]
    if name == "reject:negative_tenure":
        return [str(-int(m)) for m in d["magnitude"][rows]]
    if name == "coerce:integer_as_float":
        return [f"{int(t)}.0" for t in d["tenure"][rows]]
    if name == "reject:non_numeric_text":
        return [_JUNK_TEXT[i] for i in v]
    if name == "reject:negative_charges":
        return [f"-{m:.2f}" for m in d["monthly"][rows]]
    if name == "coerce:padded_number":
        return [
            (" {} ", "{}  ", "  {}")[i].format(f"{m:.2f}")
            for i, m in zip(v, d["monthly"][rows])
        ]
    if name == "reject:non_finite":
        return ["inf"] * rows.size
    if name == "coerce:blank_as_missing":
        return [" "] * rows.size
    if name == "reject:unknown_contract":
        return [_UNKNOWN_CONTRACT[i] for i in v]
    if name == "coerce:category_case":
        return [_case_variant(CONTRACTS[c], i) for i, c in zip(v, d["contract"][rows])]
    if name == "reject:unknown_internet_service":
        return [_UNKNOWN_INTERNET[i] for i in v]
    if name == "reject:missing_field":
        return [None] * rows.size
    if name == "coerce:boolean_yes_no":
        return [str(t == _YES) for t in d["tech"][rows]]
    raise AssertionError(f"no mutation for {name}")


def apply_dirt(
    seed: int,
    block: int,
    rate: float,
    d: dict[str, np.ndarray],
    cols: dict[str, pa.Array],
) -> pa.Array:
    """Mutate a share ``rate`` of rows in ``cols`` in place; return the dirty_kind column."""
    n = BLOCK_ROWS
    # A separate stream: dirt never shifts the clean draws, and rows dirty at a
    # lower rate stay dirty (with the same mutation) at a higher one.
    rng = np.random.default_rng([seed, block, 1])
    dirty = rng.random(n) < rate
    kind = rng.integers(0, len(DIRTY_KINDS), n)
    variant = rng.integers(0, 3, n)
    d = {**d, "magnitude": rng.integers(1, 25, n)}
    # Booleans only stand for Yes/No; customers without internet get a case variant instead.
    bool_kind, case_kind = (
        _KIND_INDEX["coerce:boolean_yes_no"],
        _KIND_INDEX["coerce:category_case"],
    )
    kind = np.where((kind == bool_kind) & (d["tech"] == _NO_SERVICE), case_kind, kind)
    by_column: dict[str, tuple[list[np.ndarray], list[Any]]] = {}
    for index, spec in enumerate(DIRTY_KINDS):
        rows = np.flatnonzero(dirty & (kind == index))
        row_list, values = by_column.setdefault(spec.column, ([], []))
        row_list.append(rows)
        values.extend(_messy_strings(spec.name, rows, d, variant))
    # One replace per column: each Arrow call costs more than building the values.
    for column, (row_list, values) in by_column.items():
        cols[column] = _replace(cols[column], np.concatenate(row_list), values)
    # A null index takes a null name: clean rows have no dirty_kind.
    names = pa.array([k.name for k in DIRTY_KINDS], pa.string())
    return names.take(pa.array(kind, pa.int64(), mask=~dirty))


_DOCUMENT_FIELDS = ("customer_id", "status", *FEATURES, "churned", "updated_at")
_INT_FIELDS = {"tenure", "support_calls"}
_FLOAT_FIELDS = {"monthly_charges", "total_charges"}


def _messy_value(kind: str, raw: str | None) -> Any:
    """The Python value a real messy document would hold for this mutation."""
    if kind == "reject:negative_tenure" and raw is not None:
        return int(raw)
    if kind in ("reject:negative_charges", "reject:non_finite") and raw is not None:
        return float(raw)
    if kind == "coerce:boolean_yes_no" and raw is not None:
        return raw == "True"
    return raw


def to_documents(table: pa.Table, include_truth: bool = False) -> list[dict[str, Any]]:
    """Chunk to MongoDB-ready dicts: clean values native, dirty ones messy, unknown churned dropped.

    ``include_truth`` keeps ``true_probability`` and ``dirty_kind`` (for tests).
    """
    kinds = table.column("dirty_kind")
    by_name = {k.name: k for k in DIRTY_KINDS}
    columns: dict[str, list[Any]] = {}
    raw: dict[str, list[Any]] = {}
    for field in _DOCUMENT_FIELDS + (
        ("true_probability", "dirty_kind") if include_truth else ()
    ):
        col = table.column(field)
        if field in _INT_FIELDS | _FLOAT_FIELDS and pa.types.is_string(col.type):
            # Parse clean rows in Arrow; rows dirtied in this column keep their raw text.
            touched = pc.is_in(
                kinds,
                value_set=pa.array([k.name for k in DIRTY_KINDS if k.column == field]),
            )
            touched = pc.fill_null(touched, False)
            target = pa.int64() if field in _INT_FIELDS else pa.float64()
            columns[field] = pc.cast(
                pc.if_else(touched, pa.scalar(None, pa.string()), col), target
            ).to_pylist()
            raw[field] = col.to_pylist()
        else:
            columns[field] = col.to_pylist()
    kind_list = kinds.to_pylist()
    names = list(columns)
    docs: list[dict[str, Any]] = []
    for i, kind in enumerate(kind_list):
        doc = {name: columns[name][i] for name in names}
        if doc["churned"] is None:
            del doc["churned"]
        if kind is not None:
            field = by_name[kind].column
            if kind == "reject:missing_field":
                del doc[field]
            else:
                source = raw[field][i] if field in raw else columns[field][i]
                doc[field] = _messy_value(kind, source)
        docs.append(doc)
    return docs
