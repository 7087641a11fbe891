"""One shard of a nightly run, in two streaming passes over local staging files.

Pass 1 validates and scores each chunk and stages the risk rows (Arrow IPC: a memcpy to
write, column-selective to read) and the rejected records (Parquet), keeping nothing per
row but the duplicate-id rule's hashes. Then the reject share is checked, and ranks come
from the staged (probability, id) columns alone. Pass 2 streams the staged rows back with
their ranks for the sinks (as often as each sink needs). Memory is a few chunks plus, while
ranking, about 30 bytes a customer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from churn import scoring
from churn.compiled import CompiledModel
from churn.duplicates import FirstSeen
from churn.errors import TooManyRejects
from churn.prefetch import prefetch
from churn.profile import ProfileCounter
from churn.risk_table import QUARANTINE_SCHEMA, RISK_SCHEMA, constant
from churn.validation import JsonDefault, ValidationResult, move_to_rejected, validate

log = logging.getLogger(__name__)
pool = pa.default_memory_pool()
KEY_SCHEMA = pa.schema([RISK_SCHEMA.field("customer_id"), RISK_SCHEMA.field("churn_probability")])
DUPLICATE_ID = "duplicate_id"


@dataclass(frozen=True)
class ModelRef:
    """The model a run scores with and where it came from."""

    compiled: CompiledModel
    name: str
    version: str
    run_id: str
    reference_profile: dict[str, Any]


class ShardRun:
    """Validate, score, stage (pass 1); rank; stream ranked rows back (pass 2)."""

    def __init__(
        self,
        model: ModelRef,
        config: scoring.ScoringConfig,
        run_date: dt.date,
        staging: Path,
        reasons: bool = True,
        progress: Callable[[scoring.Tally], None] | None = None,
        shard: int = 0,
        shard_count: int = 1,
        json_default: JsonDefault | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.reasons = reasons
        self.staging = staging
        self.progress = progress
        self.json_default = json_default
        self.run = scoring.RunInfo(
            run_date,
            dt.datetime.now(dt.UTC).replace(microsecond=0),
            model.name,
            model.version,
            model.run_id,
            shard,
            shard_count,
        )
        schema = model.compiled.schema
        profile = ProfileCounter(schema, model.reference_profile) if model.reference_profile else None
        self.tally = scoring.Tally(config, schema, profile)
        self.duplicates = 0
        self.rows_path = staging / "risk.arrow"
        self.keys_path = staging / "rank-keys.arrow"  # (customer_id, churn_probability): what ranking reads
        self.quarantine_path = staging / "quarantine.parquet"
        self.started = time.monotonic()
        self._ranks: np.ndarray | None = None

    def score_all(self, chunks: Iterable[Any]) -> None:
        """Pass 1: every chunk validated, de-duplicated, scored and staged. Raises TooManyRejects
        (after the quarantine is staged, so it can still be published) over the limit."""
        quarantine: pq.ParquetWriter | None = None
        with (
            pa.OSFile(str(self.rows_path), "wb") as sink,
            ipc.new_file(sink, RISK_SCHEMA) as rows,
            pa.OSFile(str(self.keys_path), "wb") as key_sink,
            ipc.new_file(key_sink, KEY_SCHEMA) as keys,
        ):
            for result, offset in prefetch(self._validated(chunks)):
                scored = scoring.score(result.clean, self.model.compiled, self.config, self.run, self.reasons)
                rows.write_table(scored.table)
                keys.write_table(scored.table.select(list(KEY_SCHEMA.names)))
                if result.rejected.num_rows:
                    quarantine = quarantine or pq.ParquetWriter(str(self.quarantine_path), QUARANTINE_SCHEMA)
                    quarantine.write_table(self._quarantine_rows(result.rejected, offset))
                self.tally.add(scored, result.clean, result.rejected.num_rows, result.unseen_counts())
                pool.release_unused()  # hand freed chunk memory back, so RSS tracks the live chunk
                if self.progress:
                    self.progress(self.tally)
        if quarantine is not None:
            quarantine.close()
        self.check_rejects()

    def _validated(self, chunks: Iterable[Any]) -> Iterator[tuple[ValidationResult, int]]:
        """Each chunk validated, with later records of an id already kept moved to the rejected
        rows (`duplicate_id`), and the shard-wide row offset of its first record. Runs in the
        prefetch thread, in chunk order (the duplicate rule's "first" is read order)."""
        schema = self.model.compiled.schema
        seen = FirstSeen()
        offset = 0
        for chunk in chunks:
            result = validate(chunk, schema, json_default=self.json_default)
            ids = result.clean.column(schema.id_field)
            repeated, kept = seen.repeats(ids, result.clean_rows + offset)
            if repeated.size:
                self.duplicates += int(repeated.size)
                details = [{"kept_source_row": int(row)} for row in kept.tolist()]
                result = move_to_rejected(
                    result, chunk, repeated, DUPLICATE_ID, schema.id_field, details, self.json_default
                )
            yield result, offset
            offset += result.n_input

    def check_rejects(self) -> None:
        share = self.tally.reject_share
        if share > self.config.max_reject_share:
            raise TooManyRejects(
                f"{self.tally.rejected} of {self.tally.read} customers ({share:.1%}) failed validation, over the "
                f"limit of {self.config.max_reject_share:.1%}: not publishing the risk table (the quarantine "
                f"holds them); most common: {self._top_reasons()}"
            )

    def _top_reasons(self, k: int = 3) -> str:
        """The most frequent (field, reason) pairs among the rejected rows, for the one-line error."""
        table = pq.read_table(self.quarantine_path, columns=["field", "reason"])
        counts = (
            table.group_by(["field", "reason"]).aggregate([("field", "count")]).sort_by([("field_count", "descending")])
        )
        return ", ".join(f"{r['field']} {r['reason']} x{r['field_count']}" for r in counts.slice(0, k).to_pylist())

    def _quarantine_rows(self, rejected: pa.Table, offset: int) -> pa.Table:
        n = rejected.num_rows
        return pa.table(
            {
                "customer_id": rejected.column("customer_id"),
                "run_date": constant(self.run.run_date, n, pa.date32()),
                "source_row": pc.add(rejected.column("row"), offset),
                "field": rejected.column("field"),
                "reason": rejected.column("reason"),
                "errors": rejected.column("errors"),
                "record": rejected.column("record"),
                "quarantined_at": constant(self.run.scored_at, n, pa.timestamp("us", tz="UTC")),
                "shard": constant(self.run.shard, n, pa.int32()),
                "shard_count": constant(self.run.shard_count, n, pa.int32()),
            },
            schema=QUARANTINE_SCHEMA,
        )

    @property
    def has_quarantine(self) -> bool:
        return self.quarantine_path.exists()

    def ranked(self) -> Iterator[pa.Table]:
        """Pass 2: the staged rows, chunk by chunk, with their ranks across the whole shard.
        Each call streams them again (ranks are computed once)."""
        if self._ranks is None:
            self._ranks = scoring.ranks(self._keys, self.tally.scored)
        ranks = self._ranks
        # Plain reads, not a memory map: mapped pages would stay resident and grow with the run.
        with pa.OSFile(str(self.rows_path)) as source:
            reader = ipc.open_file(source)
            offset = 0
            for i in range(reader.num_record_batches):
                batch = pa.Table.from_batches([reader.get_batch(i)])
                yield scoring.with_rank(batch, ranks[offset : offset + batch.num_rows])
                offset += batch.num_rows
                pool.release_unused()

    def _keys(self) -> Iterator[tuple[np.ndarray, pa.Array]]:
        """The staged (probability, id) of every row, chunk by chunk, for the external rank."""
        with pa.OSFile(str(self.keys_path)) as source:
            reader = ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                yield batch.column(1).to_numpy(), batch.column(0)

    def quarantine_tables(self, rows: int = 50_000) -> Iterator[pa.Table]:
        """The staged rejected records (QUARANTINE_SCHEMA), in batches."""
        if not self.has_quarantine:
            return
        for batch in pq.ParquetFile(self.quarantine_path).iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch], schema=QUARANTINE_SCHEMA)

    def quarantine_documents(self, limit: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        """Rejected records as MongoDB documents (errors parsed back from JSON)."""
        for table in self.quarantine_tables(limit):
            docs = table.to_pylist()
            for doc in docs:
                doc["run_date"] = doc["run_date"].isoformat()
                doc["errors"] = json.loads(doc["errors"])  # the record stays JSON text: its keys are untrusted
            yield docs

    def record(self) -> dict[str, Any]:
        """What the commits (Delta commit metadata, MongoDB marker) say about this shard's run."""
        return {
            "rows": self.tally.scored,
            "rows_read": self.tally.read,
            "rows_rejected": self.tally.rejected,
            "rows_duplicate": self.duplicates,
            "model": {"name": self.model.name, "version": self.model.version, "run_id": self.model.run_id},
            "scored_at": self.run.scored_at.isoformat(),
        }

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def bucket_counts(tally: scoring.Tally) -> list[tuple[float, int]]:
    bounds = [*scoring.SCORE_BUCKETS, float("inf")]
    return list(zip(bounds, tally.buckets.tolist()))
