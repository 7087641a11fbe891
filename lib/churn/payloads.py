"""Request bodies to records: JSON (object, list, MLflow and SageMaker envelopes), CSV, JSON lines.

Parsing only checks shape (objects, column counts, row limits); the values themselves are
judged by the one validator. A bare JSON object is the seed's single-record request.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from churn.errors import InvalidInput, TooManyRows
from churn.media import BodyType
from churn.schema import Schema

ENVELOPES = ("instances", "dataframe_records", "dataframe_split")


@dataclass
class Parsed:
    """Either a list of records (JSON) or a table of text columns (CSV), with ids filled in."""

    records: list[dict[str, Any]] | None = None
    table: pa.Table | None = None
    single: bool = False  # a bare JSON object: answer with one object, not a list
    given_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def n_rows(self) -> int:
        if self.records is not None:
            return len(self.records)
        return 0 if self.table is None else self.table.num_rows


def _reject_nan(name: str) -> float:
    if name == "NaN":
        raise InvalidInput("NaN is not a JSON number; send null for a missing value")
    return float(name.replace("Infinity", "inf"))  # kept so the validator names the field


def load_json(body: bytes | str) -> Any:
    """Standard JSON, except Infinity (read as a float the validator rejects by field)."""
    try:
        return json.loads(body, parse_constant=_reject_nan)
    except json.JSONDecodeError as err:
        raise InvalidInput(f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from err
    except RecursionError as err:
        raise InvalidInput("body is not valid JSON: nested too deeply") from err
    except ValueError as err:  # undecodable bytes, integers with too many digits
        raise InvalidInput(f"body is not valid JSON: {str(err)[:200]}") from err


def parse(body: bytes, body_type: BodyType, schema: Schema, max_rows: int) -> Parsed:
    """Records of a request body, with missing ids replaced by the row index."""
    if body_type.format == "csv":
        parsed = _csv(_text(body, body_type.charset), schema, max_rows)
    elif body_type.format == "jsonlines":
        parsed = _jsonlines(_text(body, body_type.charset), max_rows)
    else:
        utf8 = body_type.charset in ("utf-8", "utf8")
        parsed = _json(load_json(body if utf8 else _text(body, body_type.charset)))
    if parsed.n_rows == 0:
        raise InvalidInput("the request holds no records")
    if parsed.n_rows > max_rows:
        raise TooManyRows(f"{parsed.n_rows} records is more than the {max_rows} allowed per request",
                          limit=max_rows, rows=parsed.n_rows)
    _fill_ids(parsed, schema.id_field)
    return parsed


def _text(body: bytes, charset: str) -> str:
    try:
        return body.decode("utf-8-sig" if charset in ("utf-8", "utf8") else charset)
    except (UnicodeDecodeError, LookupError) as err:
        raise InvalidInput(f"body is not valid {charset} text") from err


def _json(data: Any) -> Parsed:
    if isinstance(data, dict):
        present = [key for key in ENVELOPES if key in data]
        if not present:
            return Parsed(records=[data], single=True)
        if len(present) > 1:
            raise InvalidInput(f"give only one of {', '.join(ENVELOPES)}")
        key = present[0]
        data = _split_frame(data[key]) if key == "dataframe_split" else data[key]
        if not isinstance(data, list):
            raise InvalidInput(f"{key} must be a list of objects")
    if not isinstance(data, list):
        raise InvalidInput(f"expected a JSON object or a list of objects, got {_kind(data)}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InvalidInput(f"record {i} is {_kind(item)}, not an object", row=i)
    return Parsed(records=data)


def _split_frame(frame: Any) -> list[dict[str, Any]]:
    """MLflow's dataframe_split ({columns, data[, index]}) as records."""
    shaped = isinstance(frame, dict) and isinstance(frame.get("columns"), list) and isinstance(frame.get("data"), list)
    if not shaped:
        raise InvalidInput("dataframe_split must be an object with a list of columns and a list of rows in data")
    columns = frame["columns"]
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise InvalidInput("dataframe_split.columns must be distinct strings")
    records = []
    for i, row in enumerate(frame["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidInput(f"dataframe_split.data[{i}] must be a list of {len(columns)} values", row=i)
        records.append(dict(zip(columns, row)))
    return records


def _jsonlines(text: str, max_rows: int) -> Parsed:
    records: list[dict[str, Any]] = []
    for line in text.split("\n"):  # not splitlines(): JSON strings may hold U+2028 and friends
        if not line.strip():
            continue
        if len(records) == max_rows:
            raise TooManyRows(f"more than the {max_rows} records allowed per request", limit=max_rows)
        row = len(records)
        try:
            item = load_json(line)
        except InvalidInput as err:
            raise InvalidInput(f"line {row}: {err.message}", row=row) from err
        if not isinstance(item, dict):
            raise InvalidInput(f"line {row} is {_kind(item)}, not an object", row=row)
        records.append(item)
    return Parsed(records=records)


def _csv(text: str, schema: Schema, max_rows: int) -> Parsed:
    """Text columns from CSV; the first row is a header when it names any schema field."""
    names = [schema.id_field, *schema.feature_names]
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        first = next((row for row in rows if row), None)
        if first is None:
            return Parsed(table=pa.table({}))
        if any(cell.strip() in names for cell in first):
            header = [cell.strip() for cell in first]
            if len(set(header)) != len(header):
                raise InvalidInput("the CSV header repeats a column name")
            body: list[list[str]] = []
        else:
            header = _headerless(len(first), schema)
            body = [first]
        for row in rows:
            if not row:
                continue
            if len(body) == max_rows:
                raise TooManyRows(f"more than the {max_rows} records allowed per request", limit=max_rows)
            if len(row) != len(header):
                raise InvalidInput(f"CSV row {len(body)} has {len(row)} values, not {len(header)}", row=len(body))
            body.append(row)
    except csv.Error as err:
        raise InvalidInput(f"body is not valid CSV: {err}") from err
    wanted = [i for i, name in enumerate(header) if name in names]
    columns = {header[i]: pa.array([row[i] for row in body], pa.string()) for i in wanted}
    if not columns:
        columns = {"__rows__": pa.nulls(len(body), pa.string())}  # keeps the row count
    return Parsed(table=pa.table(columns))


def _headerless(width: int, schema: Schema) -> list[str]:
    features = schema.feature_names
    if width == len(features):
        return features
    if width == len(features) + 1:
        return [schema.id_field, *features]
    raise InvalidInput(
        f"CSV without a header needs {len(features)} columns ({', '.join(features)}) "
        f"or {len(features) + 1} with {schema.id_field} first; the first row has {width}"
    )


def _fill_ids(parsed: Parsed, id_field: str) -> None:
    """Ids are optional over HTTP: a missing one becomes the row index and is not echoed."""
    if parsed.records is not None:
        given = np.ones(len(parsed.records), dtype=bool)
        for i, record in enumerate(parsed.records):
            value = record.get(id_field)
            if value is None or (isinstance(value, str) and not value.strip()):
                record[id_field] = str(i)
                given[i] = False
        parsed.given_ids = given
        return
    assert parsed.table is not None
    n = parsed.table.num_rows
    if id_field in parsed.table.column_names:
        ids = parsed.table.column(id_field).to_pylist()
    else:
        ids = [None] * n
    given = np.array([bool(v and v.strip()) for v in ids], dtype=bool)
    filled = [v if ok else str(i) for i, (v, ok) in enumerate(zip(ids, given))]
    table = parsed.table.drop_columns([c for c in (id_field, "__rows__") if c in parsed.table.column_names])
    parsed.table = table.append_column(id_field, pa.array(filled, pa.string()))
    parsed.given_ids = given


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
