"""Wiring for `score`: clients from settings, the model, the customer source, the sinks.

Every remote call here is bounded: MongoDB server selection and S3 requests time out in
seconds and are retried a few times with backoff (churn.retries), then fail with one line.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

from churn import active_customers, batch, sharding
from churn.model_source import LoadedModel
from churn.raw_columns import id_text
from churn.retries import RetryPolicy
from churn.risk_table import to_documents
from churn.schema import Schema
from churn.settings import Settings

log = logging.getLogger("churn.score")
MONGO_TIMEOUT_MS = 5_000
# S3: each request gives up after S3_REQUEST_SECONDS (a connect after S3_CONNECT_SECONDS),
# the client retries once, and the start-up check as a whole stops at S3_CHECK_SECONDS.
S3_CONNECT_SECONDS = 5
S3_REQUEST_SECONDS = 10
S3_CHECK_SECONDS = 30.0
RETRY = RetryPolicy(attempts=3, backoff=0.5, max_wait=8.0)


def mongo(settings: Settings) -> Any:
    """The database, after a ping: an unreachable server fails here, not mid-run."""
    from churn.adapters.mongo import ping
    from churn_jobs import clients

    db = clients.mongo_database(settings, timeout_ms=MONGO_TIMEOUT_MS)
    ping(db, RETRY)
    return db


def storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs storage options for RISK_TABLE_URI: the endpoint and bounded timeouts.
    Credentials come from the standard AWS chain (environment, IRSA web identity, profile)."""
    if not settings.risk_uri.startswith("s3://"):
        return {}
    options = {
        "AWS_REGION": settings.aws_region,
        "timeout": f"{S3_REQUEST_SECONDS}s",
        "connect_timeout": f"{S3_CONNECT_SECONDS}s",
        "max_retries": "1",
        "retry_timeout": f"{2 * S3_REQUEST_SECONDS}s",
    }
    if settings.s3_endpoint_url:
        options["AWS_ENDPOINT_URL"] = settings.s3_endpoint_url
        if settings.s3_endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options


def risk_tables(settings: Settings) -> Any:
    """The Delta risk table (and its quarantine) at RISK_TABLE_URI."""
    from churn.adapters.delta_lake import RiskTables
    from churn.adapters.manifest_era import filesystem

    filesystem(settings.risk_uri)  # refuses a URI scheme other than s3:// or a directory
    uri = settings.risk_uri if settings.risk_uri.startswith("s3://") else str(Path(settings.risk_uri).resolve())
    return RiskTables(uri, storage_options(settings), RETRY)


def manifest_era(settings: Settings) -> Any:
    """The manifest-era layout at RISK_TABLE_URI (to refuse it, or to migrate it)."""
    from churn.adapters.manifest_era import ManifestEra, filesystem

    fs, root = filesystem(settings.risk_uri, **arrow_s3_options(settings, settings.risk_uri, attempts=2))
    return ManifestEra(fs, root)


def arrow_s3_options(settings: Settings, uri: str, attempts: int) -> dict[str, Any]:
    """pyarrow S3FileSystem options for `uri` with score's bounded timeouts and `attempts`
    tries per request ({} for a directory): the endpoint from AWS_ENDPOINT_URL_S3."""
    import pyarrow.fs as pafs

    if not uri.startswith("s3://"):
        return {}
    options: dict[str, Any] = {
        "region": settings.aws_region,
        "connect_timeout": float(S3_CONNECT_SECONDS),
        "request_timeout": float(S3_REQUEST_SECONDS),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
    }
    if settings.s3_endpoint_url:
        endpoint = urlparse(settings.s3_endpoint_url)
        options.update(endpoint_override=endpoint.netloc or endpoint.path, scheme=endpoint.scheme or "https")
    return options


def check_risk_tables(settings: Settings, tables: Any) -> None:
    """Reach the table within S3_CHECK_SECONDS; refuse another schema or the old layout."""
    tables.check(deadline=S3_CHECK_SECONDS, legacy=lambda: manifest_era(settings).present())


def resolve_model(settings: Settings) -> batch.ModelRef:
    """The model in the one order of churn.model_source.locate, loaded (and verified) once."""
    from churn_jobs import clients

    return _ref(clients.model_source(settings, settings.threads).load())


def _ref(loaded: LoadedModel) -> batch.ModelRef:
    return batch.ModelRef(loaded.compiled, loaded.name, str(loaded.version), loaded.run_id, loaded.reference_profile)


def chunks(settings: Settings, schema: Schema, source: str | None, chunk_rows: int, db: Any) -> Iterator[Any]:
    """This shard's active customers, chunk by chunk: lists of MongoDB documents (the validator
    keeps each rejected one as it was) or Arrow tables from a local file."""
    keep_shard = settings.shard_count > 1
    if source is None and settings.mongodb_uri:
        from churn.adapters.mongo import CustomerStore, active_query, sharded_batches

        query = active_query(schema.status_field, schema.active_status)
        query.update(settings.customers_query)

        def keep(ids: list[Any]) -> np.ndarray:
            as_text = pa.array([id_text(i) or "" for i in ids], pa.string())
            return sharding.in_shard(as_text, settings.shard_index, settings.shard_count)

        fields = [schema.id_field, *schema.feature_names]
        store = CustomerStore(db, settings.customers_collection, RETRY)
        yield from sharded_batches(store, query, fields, schema.id_field, chunk_rows, keep if keep_shard else None)
        return
    path = Path(source) if source else Path(settings.data_dir, "customers.parquet")
    for table in active_customers.file_chunks(path, schema, chunk_rows):
        if keep_shard:
            table = table.filter(
                pa.array(
                    sharding.in_shard(
                        _id_texts(table.column(schema.id_field)), settings.shard_index, settings.shard_count
                    )
                )
            )
        if table.num_rows:
            yield table


def _id_texts(ids: pa.ChunkedArray) -> pa.Array:
    """Ids as the validator reads them (trimmed text), so sharding agrees with the duplicate rule."""
    import pyarrow.compute as pc

    flat = ids.combine_chunks()
    if pa.types.is_dictionary(flat.type):
        flat = flat.cast(flat.type.value_type)
    if pa.types.is_string(flat.type) or pa.types.is_large_string(flat.type):
        return pc.utf8_trim_whitespace(flat.cast(pa.string()))
    if pa.types.is_integer(flat.type):
        return flat.cast(pa.string())
    return pa.nulls(len(flat), pa.string())


def new_attempt() -> str:
    """This publish attempt's id: MongoDB rows carry it, the marker names it (see mongo_risk)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def publish_quarantine(settings: Settings, run: batch.ShardRun, tables: Any, risk: Any) -> int:
    """The shard's rejected records into every sink (also when the run then fails on them)."""
    run_date, shard, count = run.run.run_date, settings.shard_index, settings.shard_count
    written = 0
    if tables is not None:
        tables.publish_quarantine(run_date, shard, count, run.quarantine_tables, {"rows": run.tally.rejected})
    if risk is not None:
        written = risk.replace_quarantine(run_date.isoformat(), shard, count, run.quarantine_documents())
    return written or run.tally.rejected


def publish(settings: Settings, run: batch.ShardRun, tables: Any, risk: Any) -> int:
    """Quarantine, then the risk rows: one Delta commit per table, then MongoDB's slice and marker."""
    run_date, shard, count = run.run.run_date, settings.shard_index, settings.shard_count
    day = run_date.isoformat()
    attempt = new_attempt()
    record = run.record()
    if risk is not None:
        risk.uncommit(day, shard)
    publish_quarantine(settings, run, tables, risk)
    written = run.tally.scored
    if tables is not None:
        version = tables.publish(run_date, shard, count, run.ranked, {"rows": written, "attempt": attempt})
        log.info("risk table committed", extra={"uri": tables.uri, "version": version, "rows": written})
    if risk is not None:
        upserted = sum(risk.upsert(to_documents(table), attempt) for table in run.ranked())
        removed = risk.remove_stale(day, shard, count, attempt)
        risk.commit(day, shard, count, attempt, {**record, "rows_written": upserted})
        log.info("MongoDB risk rows committed", extra={"rows": upserted, "removed_stale": removed})
        written = upserted
    return written
