"""MongoDB: customer documents in (the risk collection is in mongo_risk.py).

Takes a pymongo `Database`; never opens connections itself. Every call that can meet a lost
connection goes through the project's one retry policy (churn.retries).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
from pymongo import ReplaceOne
from pymongo.database import Database
from pymongo.errors import AutoReconnect

from churn.errors import UnavailableService
from churn.retries import RetryPolicy, one_line

log = logging.getLogger(__name__)
T = TypeVar("T")
WHERE = "MongoDB"


def transient(err: BaseException) -> bool:
    """Lost connections and server-selection timeouts: worth another try."""
    return isinstance(err, AutoReconnect)  # includes ServerSelectionTimeoutError and NetworkTimeout


def call(retry: RetryPolicy, what: str, action: Callable[[], T]) -> T:
    """One MongoDB operation under the retry policy ("MongoDB: could not ... after N attempts")."""
    return retry.call(WHERE, what, action, transient)


def ping(db: Database, retry: RetryPolicy = RetryPolicy()) -> None:
    """Reach the server before hours of work: an unreachable one fails here, not mid-run."""
    call(retry, "reach the server", lambda: db.command("ping"))


def extended_json(value: Any) -> Any:
    """`json.dumps(default=...)` for BSON values: ObjectId, Decimal128, Binary, UUID, dates as
    MongoDB extended JSON, so a quarantined document's id can be looked up again."""
    from bson import json_util
    from bson.binary import UuidRepresentation

    options = json_util.RELAXED_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD)
    try:
        return json_util.default(value, json_options=options)
    except (TypeError, ValueError):
        return {"$unknown": type(value).__name__, "text": str(value)[:200]}


def active_query(status_field: str, active_status: str) -> dict[str, Any]:
    """Documents whose status is the active one in any case, with or without surrounding spaces
    (`Active`, ` active `): the rule files and documents share (see the README)."""
    return {status_field: {"$regex": f"^\\s*{re.escape(active_status)}\\s*$", "$options": "i"}}


class CustomerStore:
    """The `customers` collection."""

    def __init__(self, db: Database, collection: str = "customers", retry: RetryPolicy = RetryPolicy()) -> None:
        self.collection = db[collection]
        self.retry = retry

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

    def find(self, id_field: str, customer_id: str, fields: list[str]) -> dict[str, Any] | None:
        """One customer's document by id (the text id, or the same number stored as an integer)."""
        ids: list[Any] = [customer_id]
        if customer_id.strip().lstrip("-").isdigit():
            ids.append(int(customer_id))
        projection = {name: 1 for name in fields} | {"_id": 0}
        found = call(
            self.retry,
            "read a customer",
            lambda: self.collection.find_one({id_field: {"$in": ids}}, projection, sort=[("_id", 1)]),
        )
        return dict(found) if found else None

    def batches(
        self, query: dict[str, Any], fields: list[str], batch_size: int = 10_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Documents matching `query` with only `fields`, in lists of at most `batch_size`."""
        projection = {name: 1 for name in fields} | {"_id": 0}
        cursor = self.collection.find(query, projection, batch_size=batch_size).sort(fields[0], 1)
        yield from _chunks(cursor, batch_size)


def sharded_batches(
    store: CustomerStore,
    query: dict[str, Any],
    fields: list[str],
    id_field: str,
    batch_size: int,
    keep: Callable[[list[Any]], np.ndarray] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Documents matching `query` (only `fields`), in `_id` order (oldest first: the order the
    duplicate-id rule keeps the first of), in lists of at most `batch_size`.

    With `keep` (a shard's membership test on ids) only `_id` and the customer id are
    scanned, and the shard's own documents are fetched by `_id` with `$in`: the `_id` index
    always exists, and two documents sharing a customer id are each read once.
    """
    projection = {name: 1 for name in fields} | {"_id": 0}
    try:
        if keep is None:
            cursor = store.collection.find(query, projection, batch_size=batch_size).sort("_id", 1)
            yield from _chunks(cursor, batch_size)
            return
        id_cursor = store.collection.find(query, {id_field: 1}, batch_size=batch_size).sort("_id", 1)
        for id_docs in _chunks(id_cursor, batch_size):
            ids = [doc.get(id_field) for doc in id_docs]
            mine = [id_docs[i]["_id"] for i in np.flatnonzero(keep(ids)).tolist()]
            if mine:
                own = {"_id": {"$in": mine}}
                yield from _chunks(
                    store.collection.find(own, projection, batch_size=batch_size).sort("_id", 1), batch_size
                )
    except AutoReconnect as err:
        raise UnavailableService(f"{WHERE}: lost the customer cursor: {one_line(err)}") from err


def _chunks(cursor: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for doc in cursor:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
