"""MongoDB `churn_risk`: the nightly rows, their run markers, and the quarantine.

Rows are upserted on the unique (customer_id, run_date) index, so a rerun never duplicates.
A shard's publish is "replace my slice", like its Delta commit:
  1. remove the shard's marker (readers stop showing the slice: it is in flux);
  2. replace the shard's quarantine, upsert its rows, each tagged with this `attempt`;
  3. delete rows of the date that belong to the slice but not to this attempt (customers
     no longer active) and rows written under another shard count;
  4. write the marker (the commit point) and drop markers of another shard count.
Readers show only rows of committed attempts, and take the run's shard count from its newest
marker, so a killed publish is invisible and 3 shards rerun as 1 read as one complete run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DocumentTooLarge, WriteError

from churn.adapters.mongo import call
from churn.errors import InvalidInput
from churn.retries import RetryPolicy, one_line

log = logging.getLogger(__name__)
# Server codes for "this document is too big": retrying can never help (exit 3, not 1).
_TOO_LARGE = {10334, 17419, 17420, 2}


class RiskCollection:
    """`churn_risk` (unique on customer_id + run_date), `churn_risk_runs` markers, the quarantine."""

    def __init__(
        self,
        db: Database,
        collection: str = "churn_risk",
        quarantine: str = "churn_quarantine",
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.rows = db[collection]
        self.runs = db[f"{collection}_runs"]
        self.quarantine = db[quarantine]
        self.retry = retry

    def _call(self, what: str, action: Any) -> Any:
        return call(self.retry, what, action)

    # -- start-up ---------------------------------------------------------------------------
    def ensure_indexes(self) -> None:
        """Every index the job and its readers use; creating an existing index is a no-op."""
        wanted = [
            (self.rows, [("customer_id", ASCENDING), ("run_date", ASCENDING)], {"unique": True}),
            (self.rows, [("run_date", ASCENDING), ("shard", ASCENDING), ("attempt", ASCENDING)], {}),
            (self.rows, [("run_date", ASCENDING), ("churn_probability", DESCENDING), ("customer_id", ASCENDING)], {}),
            (self.runs, [("run_date", ASCENDING), ("shard", ASCENDING)], {"unique": True}),
            (self.quarantine, [("run_date", ASCENDING), ("shard", ASCENDING), ("source_row", ASCENDING)], {}),
        ]
        for collection, keys, options in wanted:
            self._call("create indexes", lambda c=collection, k=keys, o=options: c.create_index(k, **o))

    # -- publishing one shard ---------------------------------------------------------------
    def uncommit(self, run_date: str, shard: int) -> None:
        self._call("remove the run marker", lambda: self.runs.delete_one({"run_date": run_date, "shard": shard}))

    def replace_quarantine(
        self, run_date: str, shard: int, shard_count: int, batches: Iterable[list[dict[str, Any]]]
    ) -> int:
        """This shard's rejected records for the date, replacing any from an earlier attempt."""
        self._call("clear old quarantine", lambda: self.quarantine.delete_many({"run_date": run_date, "shard": shard}))
        written = 0
        for batch in batches:
            # Keyed on the record's place in the shard, so a retried batch overwrites itself.
            ops = [
                ReplaceOne(
                    {"run_date": run_date, "shard": shard, "source_row": d["source_row"]},
                    {**d, "shard": shard, "shard_count": shard_count},
                    upsert=True,
                )
                for d in batch
            ]
            if ops:
                self._bulk(self.quarantine, "quarantine records", ops)
                written += len(ops)
        return written

    def upsert(self, documents: list[dict[str, Any]], attempt: str) -> int:
        """Insert or overwrite each risk row by (customer_id, run_date), tagged with `attempt`."""
        if not documents:
            return 0
        ops = [
            UpdateOne(
                {"customer_id": d["customer_id"], "run_date": d["run_date"]},
                {"$set": {**d, "attempt": attempt}},
                upsert=True,
            )
            for d in documents
        ]
        result = self._bulk(self.rows, "upsert risk rows", ops)
        return int(result.upserted_count + result.matched_count)

    def remove_stale(self, run_date: str, shard: int, shard_count: int, attempt: str) -> int:
        """Rows of this date that this attempt did not write, in this shard's slice or from a
        run with another shard count: customers no longer active, shards that no longer exist."""
        stale = {
            "run_date": run_date,
            "attempt": {"$ne": attempt},
            "$or": [{"shard": shard}, {"shard_count": {"$ne": shard_count}}],
        }
        result = self._call("remove rows no longer in the run", lambda: self.rows.delete_many(stale))
        gone = {"run_date": run_date, "shard_count": {"$ne": shard_count}}
        self._call("remove quarantine of another shard count", lambda: self.quarantine.delete_many(gone))
        return int(result.deleted_count)

    def commit(self, run_date: str, shard: int, shard_count: int, attempt: str, record: dict[str, Any]) -> None:
        marker = {
            **record,
            "run_date": run_date,
            "shard": shard,
            "shard_count": shard_count,
            "attempt": attempt,
            "committed_at": dt.datetime.now(dt.UTC),
        }
        key = {"run_date": run_date, "shard": shard}
        self._call("write the run marker", lambda: self.runs.replace_one(key, marker, upsert=True))
        other = {"run_date": run_date, "shard_count": {"$ne": shard_count}}
        self._call("remove markers of another shard count", lambda: self.runs.delete_many(other))

    def _bulk(self, collection: Any, what: str, ops: list[Any]) -> Any:
        try:
            return self._call(what, lambda: collection.bulk_write(ops, ordered=False))
        except DocumentTooLarge as err:
            raise InvalidInput(f"MongoDB: could not {what}: a document is over 16 MB ({one_line(err)})") from err
        except (BulkWriteError, WriteError) as err:
            codes = {e.get("code") for e in getattr(err, "details", {}).get("writeErrors", [])} | {err.code}
            if codes & _TOO_LARGE:
                raise InvalidInput(f"MongoDB: could not {what}: a document is too large ({one_line(err)})") from err
            raise

    # -- reading ----------------------------------------------------------------------------
    def markers(self, run_date: str) -> list[dict[str, Any]]:
        """The committed shards of the date's newest run (markers of its shard count), by shard."""
        found = self._call("read run markers", lambda: list(self.runs.find({"run_date": run_date}, {"_id": 0})))
        if not found:
            return []
        newest = max(found, key=lambda m: (m.get("committed_at") or dt.datetime.min, m.get("shard", 0)))
        count = newest.get("shard_count", 1)
        return sorted((m for m in found if m.get("shard_count", 1) == count), key=lambda m: m["shard"])

    def is_complete(self, markers: list[dict[str, Any]]) -> bool:
        return bool(markers) and {m["shard"] for m in markers} == set(range(markers[0].get("shard_count", 1)))

    def latest(self) -> str | None:
        """The newest run date whose every shard is committed."""
        dates = self._call("list run dates", lambda: self.runs.distinct("run_date"))
        for run_date in sorted(dates, reverse=True):
            if self.is_complete(self.markers(run_date)):
                return str(run_date)
        return None

    def committed_filter(self, run_date: str) -> dict[str, Any] | None:
        """The query for the committed rows of a date, or None when no shard is committed."""
        markers = self.markers(run_date)
        if not markers:
            return None
        if any("attempt" not in m for m in markers):  # markers written before attempts existed
            return {"run_date": run_date, "shard": {"$in": [m["shard"] for m in markers]}}
        return {"run_date": run_date, "attempt": {"$in": [m["attempt"] for m in markers]}}

    def top(self, run_date: str, limit: int) -> list[dict[str, Any]]:
        """The riskiest committed rows of a date across shards (probability desc, customer_id asc)."""
        query = self.committed_filter(run_date)
        if query is None:
            return []
        order = [("churn_probability", -1), ("customer_id", 1)]
        return list(
            self._call(
                "read risk rows", lambda: list(self.rows.find(query, {"_id": 0, "attempt": 0}).sort(order).limit(limit))
            )
        )

    def read(self, run_date: str) -> list[dict[str, Any]]:
        """Every committed row of a date (for comparisons and small dates)."""
        query = self.committed_filter(run_date)
        if query is None:
            return []
        return list(self._call("read risk rows", lambda: list(self.rows.find(query, {"_id": 0, "attempt": 0}))))

    def customer(self, run_date: str, customer_id: str) -> dict[str, Any] | None:
        """One customer's committed row of a date (for `churn explain`), or None."""
        query = self.committed_filter(run_date)
        if query is None:
            return None
        wanted = {**query, "customer_id": customer_id}
        found = self._call("read a risk row", lambda: self.rows.find_one(wanted, {"_id": 0, "attempt": 0}))
        return dict(found) if found else None

    def quarantined(self, run_date: str, customer_id: str) -> list[dict[str, Any]]:
        """The customer's rejected records of a date (why they have no row)."""
        query = {"run_date": run_date, "customer_id": customer_id}
        return list(self._call("read the quarantine", lambda: list(self.quarantine.find(query, {"_id": 0}))))
