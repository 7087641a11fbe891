"""How the risk Delta tables are laid out: table properties, Parquet writer settings, schema checks.

Kept apart from the reads and writes (delta_lake.RiskTables) because these are the decisions a
reader of the files meets (which columns carry statistics, which are dictionary-encoded, how
often the log is checkpointed), not how a run commits.
"""

from __future__ import annotations

import pyarrow as pa
from deltalake import ColumnProperties, WriterProperties

# Table properties set at creation. Statistics only on the columns that prune or decide a
# conflict (the rest would cost write time for nothing); a checkpoint every 10 commits keeps
# loading the log to one Parquet checkpoint plus at most 9 JSON commits after years of nights.
TABLE_CONFIGURATION = {
    "delta.dataSkippingStatsColumns": "customer_id,churn_probability,rank,shard,shard_count",
    "delta.checkpointInterval": "10",
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 7 days",
}



def writer_properties() -> WriterProperties:
    """Snappy (every engine reads it); dictionaries only where few values repeat; Parquet
    statistics only on the columns the Delta log keeps them for (TABLE_CONFIGURATION): the
    others' min/max would cost a third of the write time for nothing."""
    stats = set(TABLE_CONFIGURATION["delta.dataSkippingStatsColumns"].split(","))
    unique = ["customer_id", "churn_probability", "rank", "revenue_at_risk", "source_row", "errors", "record"]
    names = {*stats, *unique}
    return WriterProperties(
        compression="SNAPPY",
        default_column_properties=ColumnProperties(statistics_enabled="NONE"),
        column_properties={
            name: ColumnProperties(
                dictionary_enabled=False if name in unique else None,
                statistics_enabled="PAGE" if name in stats else "NONE",
            )
            for name in names
        },
    )


def schema_differences(found: pa.Schema, wanted: pa.Schema) -> str:
    """'missing a, b; unexpected c; d is int64 not string' (empty when they agree)."""
    have = {f.name: f.type for f in found}
    want = {f.name: f.type for f in wanted}
    parts = []
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    changed = [f"{n} is {have[n]} not {want[n]}" for n in want if n in have and not have[n].equals(want[n])]
    if missing:
        parts.append("missing columns " + ", ".join(missing))
    if extra:
        parts.append("unexpected columns " + ", ".join(extra))
    parts.extend(changed)
    return "; ".join(parts)
