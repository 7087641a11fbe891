"""The risk table and its quarantine as Delta Lake tables (delta-rs), on S3 or in a directory.

    RISK_TABLE_URI                 the risk table, partitioned by run_date
    RISK_TABLE_URI/_quarantine     the quarantine, the same way ('_' keeps it out of the risk
                                   table's files for every engine and for vacuum)

Each shard of a run commits ONE transaction per table that replaces its slice of the date
(risk_table.slice_predicate: its own rows, and rows of a run with another shard count), so a
killed shard is invisible to every engine (Athena, Spark, DuckDB, pandas) and a rerun replaces,
never duplicates. Concurrent shards commit optimistically: delta-rs writes the next log entry
with S3's put-if-absent (`If-None-Match: *`, no DynamoDB) and retries plain version races;
a real conflict (two shards both removing a run of another shard count) re-runs the write
under the project's retry policy.

The tables' layout (properties, writer settings, schema comparison) is in delta_format, the
operator's housekeeping in delta_housekeeping.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from churn.adapters import delta_housekeeping
from churn.adapters.delta_format import TABLE_CONFIGURATION, schema_differences, writer_properties
from churn.errors import ConfigError, UnavailableService
from churn.retries import RetryPolicy, one_line
from churn.risk_table import PARTITION_BY, QUARANTINE_SCHEMA, RISK_SCHEMA, slice_predicate

log = logging.getLogger(__name__)
T = TypeVar("T")
Tables = Callable[[], Iterator[pa.Table]]  # a fresh stream of a slice's rows per call (per attempt)
QUARANTINE = "_quarantine"
_CONFIG_ERRORS = {
    "nosuchbucket": "the bucket does not exist",
    "accessdenied": "access denied (check the IAM role or AWS credentials)",
    "invalidaccesskeyid": "the AWS access key is not valid",
    "signaturedoesnotmatch": "the AWS secret key does not match",
}


def transient(err: BaseException) -> bool:
    """Network and storage errors, and commit conflicts: worth another attempt."""
    if isinstance(err, CommitFailedError):
        return True
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
        return _config_problem(err) is None
    return False


def _config_problem(err: BaseException) -> str | None:
    text = one_line(err, 10_000).lower().replace(" ", "")
    return next((why for marker, why in _CONFIG_ERRORS.items() if marker in text), None)


class RiskTables:
    """The risk Delta table at `uri` and its quarantine table, through delta-rs."""

    def __init__(
        self,
        uri: str,
        storage_options: dict[str, str] | None = None,
        retry: RetryPolicy = RetryPolicy(),
        commit_retries: int = 30,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.quarantine_uri = f"{self.uri}/{QUARANTINE}"
        self.options = dict(storage_options or {})
        self.retry = retry
        self.commit_retries = commit_retries

    def call(self, what: str, action: Callable[[], T], uri: str | None = None) -> T:
        """`action()` under the retry policy; a store that refuses the configuration (no bucket,
        bad credentials) is a ConfigError naming the problem, not an outage."""
        try:
            return self.retry.call(f"risk table {uri or self.uri}", what, action, transient)
        except OSError as err:
            problem = _config_problem(err)
            if problem is None:
                raise
            raise ConfigError(f"risk table {uri or self.uri}: {problem} ({one_line(err)})") from err

    # -- start-up ---------------------------------------------------------------------------
    def check(self, deadline: float = 30.0, legacy: Callable[[], bool] | None = None) -> None:
        """Before hours of scoring: reach the store, refuse a table with another schema (exit 3
        naming the columns) or a manifest-era prefix, create the tables if new.

        Bounded by `deadline` seconds plus at most one request timeout, whatever the endpoint
        does: an endpoint that accepts connections and never answers costs one request timeout
        per attempt (no client-side retries inside an attempt), and attempts stop at the deadline.
        A thread cannot bound it instead: delta-rs keeps the GIL while it waits.
        """
        checking = RiskTables(
            self.uri,
            {**self.options, "max_retries": "0"} if self.options else {},
            replace(self.retry, deadline=deadline),
            self.commit_retries,
        )
        started = time.monotonic()
        try:
            for uri, schema in ((self.uri, RISK_SCHEMA), (self.quarantine_uri, QUARANTINE_SCHEMA)):
                checking._ensure(uri, schema, legacy if uri == self.uri else None)
        except UnavailableService as err:
            raise UnavailableService(
                f"risk table {self.uri}: the object store failed to answer within {time.monotonic() - started:.0f} s "
                f"(start-up check bounded at {deadline:.0f} s, {self.options.get('timeout', '?')} per request; check "
                f"AWS_ENDPOINT_URL_S3 and the network): {err.message}"
            ) from err

    def _ensure(self, uri: str, schema: pa.Schema, legacy: Callable[[], bool] | None) -> None:
        if not self.call("look for the table", lambda: DeltaTable.is_deltatable(uri, self.options), uri):
            if legacy is not None and legacy():
                raise ConfigError(
                    f"{uri} holds a risk table of the old layout (Parquet parts with _manifest-*.json): convert it "
                    f"once with `churn risk migrate --risk-uri {uri}`, or point RISK_TABLE_URI at a new prefix"
                )
            self.call(
                "create the table",
                lambda: DeltaTable.create(
                    uri,
                    schema,
                    mode="ignore",
                    partition_by=list(PARTITION_BY),
                    configuration=TABLE_CONFIGURATION,
                    storage_options=self.options,
                ),
                uri,
            )
            log.info("created Delta table", extra={"uri": uri})
            return
        found = pa.schema(self.open(uri).schema().to_arrow())
        differences = schema_differences(found, schema)
        if differences:
            raise ConfigError(f"{uri} is a Delta table with another schema: {differences}")

    def open(self, uri: str | None = None) -> DeltaTable:
        """The Delta table at `uri` (the risk table by default), opened under the retry policy."""
        target = uri or self.uri
        return self.call("open the table", lambda: DeltaTable(target, storage_options=self.options), target)

    # -- writing ----------------------------------------------------------------------------
    def publish(self, run_date: dt.date, shard: int, shard_count: int, tables: Tables, metadata: dict[str, Any]) -> int:
        """Replace this shard's slice of the date with `tables()` in one commit; the version."""
        return self._replace(self.uri, RISK_SCHEMA, run_date, shard, shard_count, tables, metadata)

    def publish_quarantine(
        self, run_date: dt.date, shard: int, shard_count: int, tables: Tables, metadata: dict[str, Any]
    ) -> int:
        """The same for the shard's rejected records (an empty slice clears an earlier attempt's)."""
        return self._replace(self.quarantine_uri, QUARANTINE_SCHEMA, run_date, shard, shard_count, tables, metadata)

    def _replace(
        self, uri: str, schema: pa.Schema, run_date: dt.date, shard: int, shard_count: int,
        tables: Tables, metadata: dict[str, Any],
    ) -> int:
        predicate = slice_predicate(run_date, shard, shard_count)
        commit = CommitProperties(
            custom_metadata={
                "churn.run_date": run_date.isoformat(),
                "churn.shard": str(shard),
                "churn.shard_count": str(shard_count),
                **{f"churn.{k}": str(v) for k, v in metadata.items()},
            },
            max_commit_retries=self.commit_retries,
        )

        def write() -> int:
            # A fresh stream per attempt: a failed attempt has consumed the last one.
            raised: list[BaseException] = []

            def batches() -> Iterator[pa.RecordBatch]:
                try:
                    for table in tables():
                        yield from table.cast(schema).to_batches()
                except GeneratorExit:
                    raise
                except BaseException as err:  # delta-rs would wrap it in a DeltaError: keep ours
                    raised.append(err)
                    raise

            try:
                self._write(uri, schema, batches(), predicate, commit)
            except Exception as err:
                if raised:
                    raise raised[0] from err
                raise
            return DeltaTable(uri, storage_options=self.options).version()

        return self.call(f"commit shard {shard} of {run_date.isoformat()}", write, uri)

    def _write(
        self, uri: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], predicate: str, commit: CommitProperties
    ) -> None:
        write_deltalake(
            uri,
            pa.RecordBatchReader.from_batches(schema, batches),
            mode="overwrite",
            predicate=predicate,
            partition_by=list(PARTITION_BY),
            storage_options=self.options,
            writer_properties=writer_properties(),
            commit_properties=commit,
            post_commithook_properties=PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=True),
        )

    # -- reading ----------------------------------------------------------------------------
    def read(self, run_date: dt.date, columns: list[str] | None = None) -> pa.Table:
        """The committed rows of `run_date` (every shard that has committed)."""
        return self._read(self.uri, run_date, columns)

    def read_quarantine(self, run_date: dt.date, columns: list[str] | None = None) -> pa.Table:
        return self._read(self.quarantine_uri, run_date, columns)

    def _read(self, uri: str, run_date: dt.date, columns: list[str] | None) -> pa.Table:
        table = self.open(uri)
        return self.call(
            "read the table",
            lambda: table.to_pyarrow_table(filters=[("run_date", "=", run_date)], columns=columns),
            uri,
        )

    def customer(self, run_date: dt.date, customer_id: str, quarantine: bool = False) -> pa.Table:
        """One customer's committed rows of a date (the quarantine's with `quarantine`); files are
        skipped by their customer_id statistics, so this reads little of a big date."""
        uri = self.quarantine_uri if quarantine else self.uri
        table = self.open(uri)
        filters = [("run_date", "=", run_date), ("customer_id", "=", customer_id)]
        return self.call("read a customer's rows", lambda: table.to_pyarrow_table(filters=filters), uri)

    def run_dates(self) -> list[dt.date]:
        """Dates with committed rows, newest first (from the log: no listing of objects)."""
        return self._dates(self.uri)

    def quarantine_dates(self) -> list[dt.date]:
        return self._dates(self.quarantine_uri)

    def _dates(self, uri: str) -> list[dt.date]:
        table = self.open(uri)
        found = self.call("list run dates", table.partitions, uri)
        return sorted({dt.date.fromisoformat(p["run_date"]) for p in found}, reverse=True)

    def shards(self, run_date: dt.date) -> tuple[int, list[int]]:
        """(shard count of the date's run, the shards that have rows)."""
        table = self.read(run_date, columns=["shard", "shard_count"])
        if table.num_rows == 0:
            return 0, []
        count = int(pc.max(table.column("shard_count")).as_py())
        present = pc.unique(table.filter(pc.equal(table.column("shard_count"), count)).column("shard"))
        return count, sorted(int(s) for s in present.to_pylist())

    def latest(self) -> dt.date | None:
        """The newest date whose every shard has committed rows (a date with a missing shard,
        killed and not rerun yet, is skipped with a warning)."""
        for run_date in self.run_dates():
            count, present = self.shards(run_date)
            if count and present == list(range(count)):
                return run_date
            log.warning(
                "risk table date incomplete: skipped",
                extra={"run_date": run_date.isoformat(), "shard_count": count, "shards_with_rows": present},
            )
        return None

    # -- housekeeping -----------------------------------------------------------------------
    def housekeeping(self, keep_days: int, today: dt.date, retention_hours: int, dry_run: bool) -> dict[str, Any]:
        """Delete dates older than `keep_days`, compact, vacuum, checkpoint (delta_housekeeping)."""
        return delta_housekeeping.housekeeping(self, keep_days, today, retention_hours, dry_run)
