"""Reports beside the risk table: `RISK_TABLE_URI/_reports/...` on S3 or in a local directory.

The leading `_` keeps them out of the Delta table: delta-rs (and so `churn risk vacuum`)
and every Delta reader skip `_`-prefixed folders (tested). Takes a pyarrow filesystem.
"""

from __future__ import annotations

import uuid

import pyarrow.fs as pafs

FOLDER = "_reports"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}


class ReportStore:
    """Named files under `root` (a bucket/prefix or a directory) of one filesystem."""

    def __init__(self, fs: pafs.FileSystem, root: str, uri: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.base_uri = uri.rstrip("/")

    def uri(self, name: str) -> str:
        """Where a report is, for log lines and people: s3://bucket/prefix/... or a local path."""
        return f"{self.base_uri}/{name}"

    def put(self, name: str, data: bytes) -> str:
        """Write `name` whole (S3: one PUT; a directory: a temporary file moved into place); its URI."""
        path = f"{self.root}/{name}"
        suffix = name[name.rfind("."):] if "." in name else ""
        metadata = {"Content-Type": CONTENT_TYPES[suffix]} if suffix in CONTENT_TYPES else None
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, path)
        else:
            with self.fs.open_output_stream(path, metadata=metadata) as out:
                out.write(data)
        return self.uri(name)

    def get(self, name: str) -> bytes:
        with self.fs.open_input_stream(f"{self.root}/{name}") as source:
            return bytes(source.read())

    def names(self, folder: str) -> list[str]:
        """The files directly in `folder` (names relative to the store), sorted; [] if there is none."""
        selector = pafs.FileSelector(f"{self.root}/{folder}", allow_not_found=True)
        found = self.fs.get_file_info(selector)
        return sorted(f"{folder}/{info.base_name}" for info in found if info.type == pafs.FileType.File)
