"""Reading and writing local tables and JSON, atomically where a reader could see half a file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churn.errors import ConfigError


def read_table(path: str | Path) -> pa.Table:
    """A Parquet or CSV file, or a directory of them, as one Arrow table."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"input {str(path)!r} does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".csv")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"input directory {str(path)!r} has no .parquet or .csv files")
    tables = [_read_one(f) for f in files]
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _read_one(path: Path) -> pa.Table:
    if path.suffix == ".csv":
        # Read every column as text: the validator decides what is a number.
        names = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).column_names
        options = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True)
        return pacsv.read_csv(path, convert_options=options)
    return pq.read_table(path)


def write_parquet(table: pa.Table, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json(data: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
