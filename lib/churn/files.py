"""Reading and writing local tables and JSON, atomically where a reader could see half a file.

One reader for every input file (training ingest, batch scoring, benchmarks): a Parquet or
CSV file, or a directory of them, streamed in chunks. CSV is read as text (the validator
decides what is a number); a CSV whose first row names no schema field has no header, as
over HTTP. Missing columns fail once, up front, naming each one and the closest name found.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churn.errors import ConfigError, InvalidInput
from churn.schema import Schema

SUFFIXES = (".parquet", ".csv")


def source_files(path: str | Path, what: str = "input") -> list[Path]:
    """The Parquet/CSV files of `path` (a file, or a directory of them), checked."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise ConfigError(f"{what} directory {str(path)!r} has no .parquet or .csv files")
        return files
    if path.suffix not in SUFFIXES:
        raise ConfigError(
            f"{what} {str(path)!r} is a {path.suffix or 'suffix-less'} file: give a .parquet or .csv file "
            "(or a directory of them)"
        )
    return [path]


def table_chunks(
    path: str | Path,
    chunk_rows: int = 100_000,
    *,
    schema: Schema | None = None,
    columns: Sequence[str] | None = None,
    dictionary: Sequence[str] = (),
    required: Sequence[str] = (),
    what: str = "input",
) -> Iterator[pa.Table]:
    """Every file of `path` in chunks of about `chunk_rows` rows.

    `columns`: read only these (those present); `dictionary`: text columns to read
    dictionary-encoded (few distinct values: no string per row to build); `required`: columns
    every file must have; `schema`: tells a CSV header from a headerless first row.
    """
    for file in source_files(path, what):
        if file.suffix == ".csv":
            names, header = csv_columns(file, schema)
            _require(names, required, file)
            yield from _csv_chunks(file, names, header, chunk_rows, columns)
        else:
            arrow = pq.read_schema(file)
            _require(arrow.names, required, file)
            present = None if columns is None else [c for c in columns if c in arrow.names]
            text = [n for n in dictionary if n in arrow.names and pa.types.is_string(arrow.field(n).type)]
            # pre_buffer off: with it on, the reader keeps every row group's raw bytes it has read.
            reader = pq.ParquetFile(file, read_dictionary=text, pre_buffer=False)
            for batch in reader.iter_batches(batch_size=chunk_rows, columns=present):
                yield pa.Table.from_batches([batch])


def read_table(path: str | Path, schema: Schema | None = None) -> pa.Table:
    """A Parquet or CSV file, or a directory of them, as one Arrow table."""
    chunks = list(table_chunks(path, 1 << 20, schema=schema))
    if not chunks:
        file = source_files(path)[0]
        names = csv_columns(file, schema)[0] if file.suffix == ".csv" else pq.read_schema(file).names
        return pa.table({name: pa.array([], pa.string()) for name in names})
    if len(chunks) == 1:
        return chunks[0]
    try:
        return pa.concat_tables(chunks, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        # CSV columns are read as text, Parquet keeps its types: a directory mixing the two
        # (or Parquet files of different types) is the caller's input to fix, not an outage.
        types = {f"{f.name}: {f.type}" for chunk in chunks for f in chunk.schema}
        clash = sorted(t for t in types if sum(t.split(":")[0] == u.split(":")[0] for u in types) > 1)
        raise InvalidInput(
            f"the files of {str(path)!r} disagree on column types ({', '.join(clash[:6]) or err}): "
            "give files of one format with the same column types"
        ) from err


def csv_columns(file: Path, schema: Schema | None) -> tuple[list[str], bool]:
    """(column names, whether the first row is a header). The first row is a header when it
    names any field of `schema` (the HTTP rule); a headerless file must hold the id and then the
    features in schema order, and is scored as active (it has no status column)."""
    with open(file, encoding="utf-8", newline="") as handle:
        first = next((row for row in csv.reader(handle) if row), [])
    if schema is None or not first:
        return first, True
    known = {schema.id_field, schema.status_field, schema.label_field, *schema.feature_names}
    if any(cell.strip() in known for cell in first):
        return first, True
    features = schema.feature_names
    if len(first) == len(features) + 1:
        return [schema.id_field, *features], False
    raise InvalidInput(
        f"CSV file {str(file)!r} has no header (its first row names no schema field) and {len(first)} columns: "
        f"add a header row, or give {len(features) + 1} columns: {schema.id_field} then "
        f"{', '.join(features)}"
    )


def _csv_chunks(
    file: Path, names: list[str], header: bool, chunk_rows: int, columns: Sequence[str] | None
) -> Iterator[pa.Table]:
    wanted = names if columns is None else [c for c in columns if c in names]
    # Every column as text: the validator decides what is a number.
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=True, include_columns=wanted
    )
    read = pacsv.ReadOptions(block_size=max(chunk_rows * 128, 1 << 20), column_names=None if header else names)
    for batch in pacsv.open_csv(file, read_options=read, convert_options=convert):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def _require(names: Sequence[str], required: Sequence[str], file: Path) -> None:
    missing = [name for name in required if name not in names]
    if missing:
        raise InvalidInput(f"{str(file)!r} lacks {missing_columns(missing, names)}", missing=missing)


def missing_columns(missing: Sequence[str], found: Sequence[str]) -> str:
    """'column tenure (closest: Tenure), contract (no similar column); it has: a, b, ...'."""
    parts = []
    for name in missing:
        same_case = [f for f in found if f.strip().lower() == name.lower()]
        close = same_case or difflib.get_close_matches(name, list(found), n=1, cutoff=0.6)
        parts.append(f"{name} (closest: {close[0]!r})" if close else f"{name} (no similar column)")
    shown = ", ".join(found[:30]) + (f", ... {len(found) - 30} more" if len(found) > 30 else "")
    noun = "column" if len(missing) == 1 else "columns"
    return f"{noun} {', '.join(parts)}; it has: {shown or 'no columns'}"


class TableWriter:
    """Streams Arrow chunks to a .parquet or .csv file (format from the extension, any case).

    Written beside the target under a temporary name and moved into place on success, so a
    reader never sees half a file and a failed run leaves the previous file as it was.
    """

    def __init__(self, path: str | Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.schema = schema
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._writer: Any = None
        self.rows = 0

    def __enter__(self) -> TableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == ".csv":
            self._writer = pacsv.CSVWriter(str(self.tmp), self.schema)
        else:
            self._writer = pq.ParquetWriter(str(self.tmp), self.schema)
        return self

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            self._writer.close()
        finally:
            if kind is None:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)


def output_format(path: str | Path) -> str:
    """'.parquet' or '.csv' from the file name; ConfigError (exit 3) for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"{str(path)!r}: the extension {suffix or '(none)'!r} names no format this writes; "
            f"use {' or '.join(SUFFIXES)}"
        )
    return suffix


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
