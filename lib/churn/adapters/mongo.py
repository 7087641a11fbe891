"""MongoDB: customer documents in, risk rows and quarantined records out.

Takes a pymongo `Database`; never opens connections itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
from pymongo import ReplaceOne, UpdateOne
from pymongo.database import Database

from churn.errors import UnavailableService

log = logging.getLogger(__name__)
T = TypeVar("T")


class CustomerStore:
    """The `customers` collection."""

    def __init__(self, db: Database, collection: str = "customers") -> None:
        self.collection = db[collection]

    def insert(self, batches: Iterable[list[dict[str, Any]]]) -> int:
        """Bulk insert batches of documents; returns how many were written."""
        written = 0
        for batch in batches:
            if batch:
                written += len(self.collection.insert_many(batch, ordered=False).inserted_ids)
        return written

    def replace(self, batches: Iterable[list[dict[str, Any]]], id_field: str) -> int:
        """Upsert by customer id, so loading the same data twice leaves one document each."""
        written = 0
        for batch in batches:
            if batch:
                ops = [ReplaceOne({id_field: doc[id_field]}, doc, upsert=True) for doc in batch]
                result = self.collection.bulk_write(ops, ordered=False)
                written += result.upserted_count + result.matched_count
        return written

    def ensure_index(self, id_field: str) -> None:
        self.collection.create_index(id_field, unique=True)

    def batches(
        self, query: dict[str, Any], fields: list[str], batch_size: int = 10_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Documents matching `query` with only `fields`, in lists of at most `batch_size`."""
        projection = {name: 1 for name in fields} | {"_id": 0}
        cursor = self.collection.find(query, projection, batch_size=batch_size).sort(fields[0], 1)
        batch: list[dict[str, Any]] = []
        for doc in cursor:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def upsert_rows(db: Database, collection: str, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> int:
    """Bulk upsert rows on the given key fields; reruns overwrite instead of duplicating."""
    if not rows:
        return 0
    ops = [UpdateOne({k: row[k] for k in keys}, {"$set": row}, upsert=True) for row in rows]
    result = db[collection].bulk_write(ops, ordered=False)
    return result.upserted_count + result.matched_count


# -- nightly scoring: sharded reads, the risk collection, the quarantine ---------------------

_TRANSIENT_ATTEMPTS = 3


def _retry(what: str, action: Callable[[], T], backoff: float = 0.5) -> T:
    """Retry lost connections with backoff (each try is bounded by the client's timeouts)."""
    from pymongo.errors import AutoReconnect

    for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
        try:
            return action()
        except AutoReconnect as err:  # includes ServerSelectionTimeoutError and NetworkTimeout
            if attempt == _TRANSIENT_ATTEMPTS:
                raise UnavailableService(f"MongoDB: could not {what}: {str(err).splitlines()[0][:200]}") from err
            wait = backoff * 2 ** (attempt - 1)
            log.warning("MongoDB error, retrying", extra={"what": what, "attempt": attempt, "wait_s": wait})
            time.sleep(wait)
    raise AssertionError("unreachable")


def sharded_batches(
    store: CustomerStore,
    query: dict[str, Any],
    fields: list[str],
    id_field: str,
    batch_size: int,
    keep: Callable[[list[Any]], np.ndarray] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Documents matching `query` (only `fields`), in lists of at most `batch_size`.

    With `keep` (a shard's membership test on ids) only the ids are scanned, and the
    shard's own documents are fetched with `$in`: each shard moves its own documents
    plus everybody's ids, not the whole collection.
    """
    from pymongo.errors import AutoReconnect

    projection = {name: 1 for name in fields} | {"_id": 0}
    try:
        if keep is None:
            yield from _chunks(store.collection.find(query, projection, batch_size=batch_size), batch_size)
            return
        id_cursor = store.collection.find(query, {id_field: 1, "_id": 0}, batch_size=batch_size)
        for id_docs in _chunks(id_cursor, batch_size):
            ids = [doc.get(id_field) for doc in id_docs]
            mine = [ids[i] for i in np.flatnonzero(keep(ids)).tolist()]
            if mine:
                own = {**query, id_field: {"$in": mine}}
                yield from _chunks(store.collection.find(own, projection, batch_size=batch_size), batch_size)
    except AutoReconnect as err:
        raise UnavailableService(f"MongoDB: lost the customer cursor: {str(err).splitlines()[0][:200]}") from err


def _chunks(cursor: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for doc in cursor:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class RiskCollection:
    """`churn_risk` (unique on customer_id + run_date), its run markers, and the quarantine.

    Upserts make reruns idempotent; the marker document per (run_date, shard), written after
    the shard's last row, is MongoDB's commit record, like the object store's manifest.
    """

    def __init__(self, db: Database, collection: str = "churn_risk", quarantine: str = "churn_quarantine") -> None:
        self.rows = db[collection]
        self.runs = db[f"{collection}_runs"]
        self.quarantine = db[quarantine]

    def ensure_indexes(self) -> None:
        _retry("create indexes", lambda: self.rows.create_index([("customer_id", 1), ("run_date", 1)], unique=True))
        _retry("create indexes", lambda: self.runs.create_index([("run_date", 1), ("shard", 1)], unique=True))
        quarantine_key = [("run_date", 1), ("shard", 1), ("source_row", 1)]
        _retry("create indexes", lambda: self.quarantine.create_index(quarantine_key))

    def uncommit(self, run_date: str, shard: int) -> None:
        _retry("remove the run marker", lambda: self.runs.delete_one({"run_date": run_date, "shard": shard}))

    def upsert(self, documents: list[dict[str, Any]]) -> int:
        """Insert or overwrite each risk row by (customer_id, run_date)."""
        if not documents:
            return 0
        ops = [UpdateOne({"customer_id": d["customer_id"], "run_date": d["run_date"]}, {"$set": d}, upsert=True)
               for d in documents]
        result = _retry("upsert risk rows", lambda: self.rows.bulk_write(ops, ordered=False))
        return int(result.upserted_count + result.matched_count)

    def replace_quarantine(self, run_date: str, shard: int, batches: Iterable[list[dict[str, Any]]]) -> int:
        """This shard's rejected records for the date, replacing any from an earlier attempt."""
        _retry("clear old quarantine", lambda: self.quarantine.delete_many({"run_date": run_date, "shard": shard}))
        written = 0
        for batch in batches:
            # Keyed on the record's place in the shard, so a retried batch overwrites itself.
            ops = [ReplaceOne({"run_date": run_date, "shard": shard, "source_row": d["source_row"]},
                              {**d, "shard": shard}, upsert=True) for d in batch]
            if ops:
                self._write_quarantine(ops)
                written += len(ops)
        return written

    def _write_quarantine(self, ops: list[ReplaceOne]) -> None:
        _retry("quarantine records", lambda: self.quarantine.bulk_write(ops, ordered=False))

    def commit(self, run_date: str, shard: int, record: dict[str, Any]) -> None:
        marker = {"run_date": run_date, "shard": shard, **record}
        key = {"run_date": run_date, "shard": shard}
        _retry("write the run marker", lambda: self.runs.replace_one(key, marker, upsert=True))

    def committed(self, run_date: str) -> list[dict[str, Any]]:
        return list(self.runs.find({"run_date": run_date}, {"_id": 0}).sort("shard", 1))

    def latest(self) -> str | None:
        """The newest run date whose every shard has a marker."""
        for run_date in sorted(self.runs.distinct("run_date"), reverse=True):
            markers = self.committed(run_date)
            if markers and len(markers) == markers[0].get("shard_count", 1):
                return str(run_date)
        return None

    def top(self, run_date: str, limit: int) -> list[dict[str, Any]]:
        """The riskiest rows of a date across shards (probability desc, customer_id asc)."""
        cursor = self.rows.find({"run_date": run_date}, {"_id": 0}).sort(
            [("churn_probability", -1), ("customer_id", 1)]).limit(limit)
        return list(cursor)
