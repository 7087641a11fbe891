"""Active customers from local Parquet/CSV files, streamed in chunks: the nightly job's file source.

The active-status rule here is the same as MongoDB's query (adapters.mongo.active_query), so
a file and the database give a run the same customers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from churn import files
from churn.schema import Schema


def file_chunks(path: Path, schema: Schema, chunk_rows: int) -> Iterator[pa.Table]:
    """Active customers from a Parquet or CSV file (or a directory of them), streamed in chunks.

    Every file must have the id and every feature column (checked once, up front); a file
    without a status column is all active.
    """
    wanted = [schema.id_field, schema.status_field, *schema.feature_names]
    few_valued = [schema.status_field, *(spec.name for spec in schema.categorical)]
    for table in files.table_chunks(
        path,
        chunk_rows,
        schema=schema,
        columns=wanted,
        dictionary=few_valued,
        required=[schema.id_field, *schema.feature_names],
        what="source",
    ):
        if schema.status_field in table.column_names:
            table = table.filter(active_mask(table.column(schema.status_field), schema.active_status))
        if table.num_rows:
            yield table


def active_mask(status: pa.ChunkedArray | pa.Array, active: str) -> pa.Array:
    """Rows whose status is the active one in any case and without surrounding spaces
    (`Active`, ` ACTIVE `): the same rule as MongoDB's query (adapters.mongo.active_query)."""
    if isinstance(status, pa.ChunkedArray):
        if pa.types.is_dictionary(status.type):
            status = status.unify_dictionaries()
        status = status.combine_chunks()
    if pa.types.is_dictionary(status.type):
        # Judge each distinct status once, then spread the verdict over the rows.
        verdict = active_mask(status.dictionary, active)
        return pc.fill_null(verdict.take(status.indices), False)
    if not (pa.types.is_string(status.type) or pa.types.is_large_string(status.type)):
        status = status.cast(pa.string())
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(status))
    return pc.fill_null(pc.equal(folded, active.strip().lower()), False)
