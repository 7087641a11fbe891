"""The risk table in object storage (S3, or a local directory) through `pyarrow.fs`.

Layout under the prefix:
    run_date=YYYY-MM-DD/part-SSSSS.parquet          one part per shard
    run_date=YYYY-MM-DD/_manifest-SSSSS.json        the shard's commit record, written last
    _quarantine/run_date=YYYY-MM-DD/part-SSSSS.parquet
Commit protocol: the manifest (rows, sizes, sha256, model) is the commit point. Publishing
a shard first deletes its old manifest, then replaces the part (an S3 PUT or a local rename
is atomic per object), then writes the new manifest. Readers use only parts whose manifest
exists and whose size matches it, so a crash leaves that shard of that date invisible (never
half a part, never duplicates) until a rerun publishes it again. Files starting with `_`
are skipped by Parquet dataset readers, so the manifests never read as data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from churn.errors import ConfigError, UnavailableService
from churn.risk_table import QUARANTINE_SCHEMA, RISK_SCHEMA

log = logging.getLogger(__name__)
T = TypeVar("T")
_BLOCK = 8 << 20
_NO_BUCKET = ("not found", "does not exist", "nosuchbucket", "no such bucket")


class RiskStore:
    """Risk parts and their manifests under `root` on filesystem `fs` (S3 paths are `bucket/key`)."""

    def __init__(self, fs: pafs.FileSystem, root: str, attempts: int = 3, backoff: float = 0.5) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.attempts = attempts
        self.backoff = backoff

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    # -- layout ---------------------------------------------------------------------------
    def date_dir(self, run_date: dt.date) -> str:
        return f"{self.root}/run_date={run_date.isoformat()}"

    def part_path(self, run_date: dt.date, shard: int) -> str:
        return f"{self.date_dir(run_date)}/part-{shard:05d}.parquet"

    def manifest_path(self, run_date: dt.date, shard: int) -> str:
        return f"{self.date_dir(run_date)}/_manifest-{shard:05d}.json"

    def quarantine_path(self, run_date: dt.date, shard: int) -> str:
        return f"{self.root}/_quarantine/run_date={run_date.isoformat()}/part-{shard:05d}.parquet"

    # -- writing --------------------------------------------------------------------------
    def check(self) -> None:
        """Fail fast (before hours of scoring) when the store is unreachable or not writable."""

        def probe() -> None:
            try:
                self.fs.create_dir(self.root, recursive=True)
            except OSError as err:
                text = str(err).lower()
                if "bucket" in text and any(m in text for m in _NO_BUCKET) and "network_connection" not in text:
                    # Retrying cannot create it: a configuration problem (exit 3), not an outage.
                    raise ConfigError(f"risk store {self.root!r}: the bucket does not exist") from err
                raise
            self.fs.get_file_info(self.root)

        self._retry("reach the risk store", probe)

    def publish(
        self,
        run_date: dt.date,
        shard: int,
        shard_count: int,
        part: Path,
        quarantine: Path | None,
        record: dict[str, Any],
    ) -> dict[str, Any]:
        """Replace shard `shard` of `run_date` with the local files; the manifest commits it."""
        self._retry("uncommit the old shard", lambda: self._delete(self.manifest_path(run_date, shard)))
        manifest = {
            "format": 1,
            "run_date": run_date.isoformat(),
            "shard": shard,
            "shard_count": shard_count,
            **record,
            "part": self._upload(part, self.part_path(run_date, shard)),
        }
        qpath = self.quarantine_path(run_date, shard)
        if quarantine is not None:
            manifest["quarantine"] = self._upload(quarantine, qpath)
        else:
            self._retry("remove the old quarantine", lambda: self._delete(qpath))
        manifest["committed_at"] = dt.datetime.now(dt.UTC).isoformat()
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._retry("write the manifest", lambda: self._put(self.manifest_path(run_date, shard), body))
        return manifest

    def _upload(self, local: Path, path: str) -> dict[str, Any]:
        def copy() -> dict[str, Any]:
            digest = hashlib.sha256()
            size = 0

            def write(out: Any) -> None:
                nonlocal size
                with open(local, "rb") as source:
                    for block in iter(lambda: source.read(_BLOCK), b""):
                        digest.update(block)
                        size += len(block)
                        out.write(block)

            self._atomic(path, write)
            return {"path": path[len(self.root) + 1 :], "bytes": size, "sha256": digest.hexdigest()}

        return self._retry(f"upload {path}", copy)

    def _put(self, path: str, body: bytes) -> None:
        self._atomic(path, lambda out: out.write(body))

    def _atomic(self, path: str, write: Callable[[Any], None]) -> None:
        """Write `path` so readers see the old object or the whole new one, never a torn one."""
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if not self.is_local:
            with self.fs.open_output_stream(path) as out:  # S3: the object appears on close
                write(out)
            return
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open_output_stream(tmp) as out:
                write(out)
            self.fs.move(tmp, path)  # a rename: atomic on a local filesystem
        finally:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)

    def _delete(self, path: str) -> None:
        if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            self.fs.delete_file(path)

    def _retry(self, what: str, action: Callable[[], T]) -> T:
        """Retry transient storage errors with exponential backoff, then give up with one line."""
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except OSError as err:
                if attempt == self.attempts:
                    raise UnavailableService(f"could not {what} at {self.root!r}: {_first_line(err)}") from err
                wait = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "risk store error, retrying",
                    extra={"what": what, "attempt": attempt, "wait_s": wait, "error": _first_line(err)},
                )
                time.sleep(wait)
        raise AssertionError("unreachable")

    # -- reading --------------------------------------------------------------------------
    def manifests(self, run_date: dt.date) -> list[dict[str, Any]]:
        """Committed shards of `run_date`: manifests of the latest shard count whose part matches."""
        selector = pafs.FileSelector(self.date_dir(run_date), allow_not_found=True)
        found = []
        for info in self._retry("list manifests", lambda: self.fs.get_file_info(selector)):
            if info.base_name.startswith("_manifest-") and info.base_name.endswith(".json"):
                with self.fs.open_input_stream(info.path) as handle:
                    found.append(json.loads(handle.read()))
        if not found:
            return []
        # A rerun with another shard count leaves old manifests: the newest commit decides.
        count = max(found, key=lambda m: m["committed_at"])["shard_count"]
        good = []
        for manifest in found:
            if manifest["shard_count"] != count:
                continue
            info = self.fs.get_file_info(f"{self.root}/{manifest['part']['path']}")
            if info.type == pafs.FileType.File and info.size == manifest["part"]["bytes"]:
                good.append(manifest)
        return sorted(good, key=lambda m: m["shard"])

    def run_dates(self) -> list[dt.date]:
        """Dates with at least one directory under the prefix, newest first."""
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        dates = []
        for info in self._retry("list runs", lambda: self.fs.get_file_info(selector)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("run_date="):
                try:
                    dates.append(dt.date.fromisoformat(info.base_name.split("=", 1)[1]))
                except ValueError:
                    continue
        return sorted(dates, reverse=True)

    def latest(self) -> dt.date | None:
        """The newest date whose every shard is committed."""
        for run_date in self.run_dates():
            manifests = self.manifests(run_date)
            if manifests and len(manifests) == manifests[0]["shard_count"]:
                return run_date
        return None

    def read(self, run_date: dt.date, columns: list[str] | None = None) -> tuple[pa.Table, list[dict[str, Any]]]:
        """The committed rows of `run_date` (all shards that have a manifest) and their manifests."""
        manifests = self.manifests(run_date)
        tables = [
            pq.read_table(f"{self.root}/{m['part']['path']}", filesystem=self.fs, columns=columns, schema=RISK_SCHEMA)
            for m in manifests
        ]
        empty = RISK_SCHEMA.empty_table() if columns is None else RISK_SCHEMA.empty_table().select(columns)
        return (pa.concat_tables(tables) if tables else empty), manifests

    def read_quarantine(self, run_date: dt.date) -> pa.Table:
        paths = [f"{self.root}/{m['quarantine']['path']}" for m in self.manifests(run_date) if "quarantine" in m]
        tables = [pq.read_table(p, filesystem=self.fs, schema=QUARANTINE_SCHEMA) for p in paths]
        return pa.concat_tables(tables) if tables else QUARANTINE_SCHEMA.empty_table()


def filesystem(uri: str, **s3_options: Any) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a `s3://bucket/prefix` URI or a local directory."""
    if uri.startswith("s3://"):
        bucket_key = uri[len("s3://") :].strip("/")
        if not bucket_key:
            raise ConfigError(f"RISK_TABLE_URI={uri!r} names no bucket")
        return pafs.S3FileSystem(**s3_options), bucket_key
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"RISK_TABLE_URI={uri!r}: use s3://bucket/prefix or a local directory")
    path = Path(uri.removeprefix("file://")).resolve()
    return pafs.LocalFileSystem(), str(path)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
