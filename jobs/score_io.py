"""Wiring for `score`: clients from settings, the model, the customer source, the sinks.

Every remote call here is bounded: MongoDB server selection and S3 connects time out in
seconds and are retried a few times with backoff, then fail with one line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

from churn import batch, sharding
from churn.errors import ConfigError
from churn.model_source import LoadedModel
from churn.risk_table import to_documents
from churn.schema import Schema
from churn.settings import Settings
from churn.validation import to_table

log = logging.getLogger("churn.score")
MONGO_TIMEOUT_MS = 5_000
S3_CONNECT_SECONDS = 5.0
S3_REQUEST_SECONDS = 30.0
# Dictionary-encode only the few-valued columns (ids and floats would be tried and given up
# on, at twice the write time); lz4 writes faster than snappy at the same size here.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": ["risk_band", "model_name", "model_version", "model_run_id", "reasons.list.element.feature"],
}


def mongo(settings: Settings) -> Any:
    """The database, after a ping: an unreachable server fails here, not mid-run."""
    from churn.adapters.mongo import _retry
    from churn_jobs import clients

    db = clients.mongo_database(settings, timeout_ms=MONGO_TIMEOUT_MS)
    _retry("reach the server", lambda: db.command("ping"))
    return db


def risk_store(settings: Settings) -> Any:
    import pyarrow.fs as pafs

    from churn.adapters.object_store import RiskStore, filesystem

    options: dict[str, Any] = {}
    if settings.risk_uri.startswith("s3://"):
        options = {
            "region": settings.aws_region,
            "connect_timeout": S3_CONNECT_SECONDS,
            "request_timeout": S3_REQUEST_SECONDS,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
        }
        if settings.s3_endpoint_url:
            endpoint = urlparse(settings.s3_endpoint_url)
            options.update(endpoint_override=endpoint.netloc or endpoint.path, scheme=endpoint.scheme or "https")
    fs, root = filesystem(settings.risk_uri, **options)
    return RiskStore(fs, root)


def resolve_model(settings: Settings) -> batch.ModelRef:
    """The model in the one order of churn.model_source.locate, loaded (and verified) once."""
    from churn_jobs import clients

    return _ref(clients.model_source(settings, settings.threads).load())


def _ref(loaded: LoadedModel) -> batch.ModelRef:
    return batch.ModelRef(loaded.compiled, loaded.name, str(loaded.version), loaded.run_id, loaded.reference_profile)


def chunks(settings: Settings, schema: Schema, source: str | None, chunk_rows: int, db: Any) -> Iterator[pa.Table]:
    """This shard's active customers, chunk by chunk, from MongoDB or a local file."""
    keep_shard = settings.shard_count > 1
    if source is None and settings.mongodb_uri:
        from churn.adapters.mongo import CustomerStore, sharded_batches

        query: dict[str, Any] = {schema.status_field: schema.active_status}
        if settings.customers_filter:
            try:
                query.update(json.loads(settings.customers_filter))
            except (json.JSONDecodeError, TypeError) as err:
                raise ConfigError(f"CUSTOMERS_FILTER={settings.customers_filter!r} is not a JSON object") from err

        def keep(ids: list[Any]) -> np.ndarray:
            as_text = pa.array(["" if i is None else str(i) for i in ids], pa.string())
            return sharding.in_shard(as_text, settings.shard_index, settings.shard_count)

        fields = [schema.id_field, *schema.feature_names]
        store = CustomerStore(db, settings.customers_collection)
        for docs in sharded_batches(store, query, fields, schema.id_field, chunk_rows, keep if keep_shard else None):
            yield to_table(docs, schema)
        return
    path = Path(source) if source else Path(settings.data_dir, "customers.parquet")
    for table in batch.file_chunks(path, schema, chunk_rows):
        if keep_shard:
            ids = table.column(schema.id_field)
            table = table.filter(
                pa.array(sharding.in_shard(ids.cast(pa.string()), settings.shard_index, settings.shard_count))
            )
        if table.num_rows:
            yield table


def publish(settings: Settings, run: batch.ShardRun, store: Any, db: Any) -> int:
    """Pass 2 into every sink, then commit: object store manifest, then the MongoDB run marker."""
    import pyarrow.parquet as pq

    from churn.adapters.mongo import RiskCollection
    from churn.risk_table import RISK_SCHEMA

    run_date = run.run.run_date
    shard = settings.shard_index
    risk = RiskCollection(db, settings.risk_collection, settings.quarantine_collection) if db is not None else None
    if risk is not None:
        risk.ensure_indexes()
        risk.uncommit(run_date.isoformat(), shard)
        risk.replace_quarantine(run_date.isoformat(), shard, run.quarantine_documents())
    part = run.staging / "part.parquet"
    writer = pq.ParquetWriter(str(part), RISK_SCHEMA, **PARQUET_OPTIONS) if store is not None else None
    written = 0
    for table in run.ranked():
        if writer is not None:
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
        if risk is not None:
            risk.upsert(to_documents(table))
        written += table.num_rows
    if writer is not None:
        writer.close()
    record = {**run.record(), "rows_written": written}
    if store is not None:
        manifest = store.publish(
            run_date, shard, settings.shard_count, part, run.quarantine_path if run.has_quarantine else None, record
        )
        log.info("risk table committed", extra={"part": manifest["part"]["path"], "rows": written})
    if risk is not None:
        risk.commit(run_date.isoformat(), shard, {**record, "shard_count": settings.shard_count})
    return written
