"""The risk table's first layout, kept only to recognise it and convert it once to Delta.

Under the prefix, through `pyarrow.fs` (S3 or a local directory):
    run_date=YYYY-MM-DD/part-SSSSS.parquet          one part per shard
    run_date=YYYY-MM-DD/_manifest-SSSSS.json        the shard's commit record, written last
    _quarantine/run_date=YYYY-MM-DD/part-SSSSS.parquet
A part counted only with its manifest (and the size the manifest records), and only the
newest shard count of a date. `churn risk migrate` commits exactly those rows to the Delta
tables, shard by shard, then deletes the old files; until then `score` refuses the prefix.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from churn.adapters.delta_lake import RiskTables
from churn.errors import ConfigError
from churn.risk_table import QUARANTINE_SCHEMA, RISK_SCHEMA, constant

log = logging.getLogger(__name__)
_OLD_FILE = re.compile(r"^(part-\d{5}\.parquet|_manifest-\d{5}\.json)$")


class ManifestEra:
    """Manifest-era parts under `root` on filesystem `fs` (S3 paths are `bucket/key`)."""

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    def dates(self) -> list[dt.date]:
        """Dates that have at least one manifest, oldest first."""
        found = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("run_date="):
                try:
                    day = dt.date.fromisoformat(info.base_name.split("=", 1)[1])
                except ValueError:
                    continue
                if self._manifest_infos(day):
                    found.append(day)
        return sorted(found)

    def present(self) -> bool:
        return bool(self.dates())

    def _date_dir(self, run_date: dt.date) -> str:
        return f"{self.root}/run_date={run_date.isoformat()}"

    def _manifest_infos(self, run_date: dt.date) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._date_dir(run_date), allow_not_found=True)
        return [
            info
            for info in self.fs.get_file_info(selector)
            if info.base_name.startswith("_manifest-") and info.base_name.endswith(".json")
        ]

    def manifests(self, run_date: dt.date) -> list[dict[str, Any]]:
        """The committed shards of a date by the old rules: the newest shard count's manifests
        whose part exists with the recorded size."""
        found = []
        for info in self._manifest_infos(run_date):
            with self.fs.open_input_stream(info.path) as handle:
                found.append(json.loads(handle.read()))
        if not found:
            return []
        count = max(found, key=lambda m: m["committed_at"])["shard_count"]
        good = []
        for manifest in found:
            part = self.fs.get_file_info(f"{self.root}/{manifest['part']['path']}")
            if (
                manifest["shard_count"] == count
                and part.type == pafs.FileType.File
                and part.size == manifest["part"]["bytes"]
            ):
                good.append(manifest)
        return sorted(good, key=lambda m: m["shard"])

    def read(self, manifest: dict[str, Any], key: str) -> pa.Table:
        """The part (`key` "part") or quarantine part ("quarantine") a manifest names, in today's
        schema: the shard columns come from the manifest."""
        schema = RISK_SCHEMA if key == "part" else QUARANTINE_SCHEMA
        table = pq.read_table(f"{self.root}/{manifest[key]['path']}", filesystem=self.fs)
        n = table.num_rows
        for name in ("shard", "shard_count"):
            if name not in table.column_names:
                table = table.append_column(name, constant(int(manifest[name]), n, pa.int32()))
        return table.select(schema.names).cast(schema)

    def remove(self, run_date: dt.date) -> int:
        """Delete every old file of a date (parts, manifests, quarantine parts, committed or not)."""
        removed = 0
        for directory in (self._date_dir(run_date), f"{self.root}/_quarantine/run_date={run_date.isoformat()}"):
            selector = pafs.FileSelector(directory, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                # Exactly the old names: Delta's own files there are part-NNNNN-<uuid>-c000.snappy.parquet.
                if info.type == pafs.FileType.File and _OLD_FILE.match(info.base_name):
                    self.fs.delete_file(info.path)
                    removed += 1
        return removed


def migrate(legacy: ManifestEra, tables: RiskTables, dry_run: bool = False) -> list[dict[str, Any]]:
    """Commit every committed manifest-era shard to the Delta tables, then delete the old files
    of that date. Safe to rerun after a crash: each shard's commit replaces its slice."""
    done = []
    for run_date in legacy.dates():
        manifests = legacy.manifests(run_date)
        rows = 0
        for manifest in manifests:
            shard, count = int(manifest["shard"]), int(manifest["shard_count"])
            part = legacy.read(manifest, "part")
            rows += part.num_rows
            if dry_run:
                continue
            meta = {"migrated_from": manifest["part"]["path"], "rows": part.num_rows}
            quarantine = legacy.read(manifest, "quarantine") if "quarantine" in manifest else None
            tables.publish_quarantine(run_date, shard, count, functools.partial(iter, _some(quarantine)), meta)
            tables.publish(run_date, shard, count, functools.partial(iter, [part]), meta)
        removed = 0 if dry_run else legacy.remove(run_date)
        done.append(
            {"run_date": run_date.isoformat(), "shards": len(manifests), "rows": rows, "files_removed": removed}
        )
        log.info("migrated risk table date", extra=done[-1])
    return done


def _some(table: pa.Table | None) -> list[pa.Table]:
    return [] if table is None else [table]


def filesystem(uri: str, **s3_options: Any) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and root path of a `s3://bucket/prefix` URI or a local directory."""
    if uri.startswith("s3://"):
        bucket_key = uri[len("s3://") :].strip("/")
        if not bucket_key:
            raise ConfigError(f"RISK_TABLE_URI={uri!r} names no bucket")
        return pafs.S3FileSystem(**s3_options), bucket_key
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"RISK_TABLE_URI={uri!r}: use s3://bucket/prefix or a local directory")
    path = Path(uri.removeprefix("file://")).resolve()
    return pafs.LocalFileSystem(), str(path)
