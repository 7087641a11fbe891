"""MongoDB: customer documents in, risk rows and quarantined records out.

Takes a pymongo `Database`; never opens connections itself.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

from pymongo import ReplaceOne, UpdateOne
from pymongo.database import Database

log = logging.getLogger(__name__)


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
