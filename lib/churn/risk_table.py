"""The nightly risk table and its quarantine: Arrow schemas and the shapes other sinks need.

One schema for every sink: the Delta table stores it as is (partitioned by `run_date`);
MongoDB documents are its rows with `run_date` as an ISO string (BSON has no date-only type)
so the unique index on (`customer_id`, `run_date`) matches what readers query.

`shard` and `shard_count` (added with the Delta table) say which slice of a run wrote a row:
a shard's rerun replaces exactly the rows of its slice (`slice_predicate`), and any rows
written by a run with another shard count, so no customer is ever listed twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

REASON_TYPE = pa.struct([("feature", pa.string()), ("contribution", pa.float64())])

RISK_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("run_date", pa.date32()),
        ("churn_probability", pa.float64()),
        ("churn_prediction", pa.bool_()),
        ("risk_band", pa.string()),
        # 1 = riskiest; order: churn_probability desc, customer_id asc. Within one shard of a
        # sharded run (see scoring.ranks); readers rank across shards by the same order.
        ("rank", pa.int64()),
        ("revenue_at_risk", pa.float64()),
        # Top reasons (largest |TreeSHAP contribution| first) for customers at or above the
        # reason threshold; null below it.
        ("reasons", pa.list_(REASON_TYPE)),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("model_run_id", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),
        ("shard", pa.int32()),  # this row's slice of the run: shard of shard_count
        ("shard_count", pa.int32()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("run_date", pa.date32()),
        ("source_row", pa.int64()),  # position of the record in this shard's read order
        ("field", pa.string()),  # first failing field
        ("reason", pa.string()),  # its reason (missing, wrong_type, out_of_bounds, ...)
        ("errors", pa.string()),  # JSON list of every failing field with reason and value
        ("record", pa.string()),  # JSON of the record as read
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
        ("shard", pa.int32()),
        ("shard_count", pa.int32()),
    ]
)
PARTITION_BY = ("run_date",)

RISK_KEYS = ("customer_id", "run_date")


def constant(value: Any, n: int, kind: pa.DataType) -> pa.Array:
    """`value` repeated `n` times (one shared buffer entry, gathered: no Python list of n)."""
    return pa.array([value], kind).take(pa.array(np.zeros(n, dtype=np.int32)))


def slice_predicate(run_date: dt.date, shard: int, shard_count: int) -> str:
    """The rows one shard's commit replaces: its own slice of the date, plus any row of that
    date written under another shard count (a rerun with fewer or more shards)."""
    return (
        f"run_date = '{run_date.isoformat()}' AND (shard = {int(shard)} OR shard_count <> {int(shard_count)})"
    )


def parse_date(text: str) -> dt.date:
    """A run date from YYYY-MM-DD, with a message naming the value when it is not one."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as err:
        raise ValueError(f"run date {text!r} is not YYYY-MM-DD") from err


def to_documents(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as MongoDB documents: dates as ISO strings, timestamps as datetimes."""
    rows = table.to_pylist()
    for row in rows:
        if isinstance(row.get("run_date"), dt.date):
            row["run_date"] = row["run_date"].isoformat()
    return rows


def flat_reasons(reasons: list[dict[str, Any]] | None, k: int) -> dict[str, Any]:
    """reason_1, reason_1_contribution, ... for CSV and terminals (empty past the list)."""
    out: dict[str, Any] = {}
    items = reasons or []
    for i in range(k):
        item = items[i] if i < len(items) else None
        out[f"reason_{i + 1}"] = item["feature"] if item else ""
        out[f"reason_{i + 1}_contribution"] = round(item["contribution"], 6) if item else ""
    return out
