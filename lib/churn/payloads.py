"""Request bodies to records: JSON (object, list, MLflow and SageMaker envelopes), CSV, JSON lines.

CSV is read by churn.csv_body.

Parsing only checks shape (objects, column counts, row limits); the values themselves are
judged by the one validator. A bare JSON object is the seed's single-record request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from churn import csv_body, media
from churn.errors import InvalidInput, TooManyRows
from churn.media import BodyType
from churn.schema import Schema

ENVELOPES = ("instances", "dataframe_records", "dataframe_split")
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))  # every digit to "0", the rest to " "
_LONG_DIGITS = b"0" * 19


@dataclass
class Parsed:
    """Either a list of records (JSON) or a table of text columns (CSV), with ids filled in."""

    records: list[dict[str, Any]] | None = None
    table: pa.Table | None = None  # CSV: each schema field given, as strings
    single: bool = False  # a bare JSON object: answer with one object, not a list
    extracted: dict[str, list[Any]] = field(default_factory=dict)  # JSON: columns already taken out (ids)
    given_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def n_rows(self) -> int:
        if self.records is not None:
            return len(self.records)
        return 0 if self.table is None else self.table.num_rows

    def field_columns(self, names: list[str]) -> dict[str, Any]:
        """Each named field's values in row order: lists (JSON) or Arrow string arrays (CSV); absent left out."""
        if self.table is not None:
            return {name: self.table.column(name).combine_chunks() for name in names
                    if name in self.table.column_names}
        assert self.records is not None
        records = self.records
        return {name: self.extracted[name] if name in self.extracted else [r.get(name) for r in records]
                for name in names}


def _reject_nan(name: str) -> float:
    if name == "NaN":
        raise InvalidInput("NaN is not a JSON number; send null for a missing value")
    return float(name.replace("Infinity", "inf"))  # kept so the validator names the field


def load_json(body: bytes | str) -> Any:
    """Standard JSON, except Infinity (read as a float the validator rejects by field).

    orjson reads plain bodies (3x quicker than json); json reads whatever orjson refuses
    (NaN, Infinity, lone surrogates, invalid JSON: its answers and messages are the contract)
    and bodies with integers orjson would read as floats (19 digits or more in a row).
    """
    if isinstance(body, bytes) and _LONG_DIGITS not in body.translate(_DIGITS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
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
        columns = csv_body.read(body, body_type.charset, schema, max_rows)
        parsed = Parsed(table=columns.table, given_ids=columns.given_ids)
    elif body_type.format == "jsonlines":
        parsed = _jsonlines(media.decode(body, body_type.charset), max_rows)
    else:
        utf8 = body_type.charset in ("utf-8", "utf8")
        parsed = _json(load_json(body if utf8 else media.decode(body, body_type.charset)))
    if parsed.n_rows == 0:
        raise InvalidInput("the request holds no records")
    if parsed.n_rows > max_rows:
        raise TooManyRows(f"{parsed.n_rows} records is more than the {max_rows} allowed per request",
                          limit=max_rows, rows=parsed.n_rows)
    if parsed.records is not None:
        _fill_ids(parsed, schema.id_field)
    return parsed


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


def _fill_ids(parsed: Parsed, id_field: str) -> None:
    """Ids are optional over HTTP: a missing one becomes the row index and is not echoed."""
    assert parsed.records is not None
    ids = [record.get(id_field) for record in parsed.records]
    given = [v is not None and (type(v) is not str or bool(v.strip())) for v in ids]
    for i, ok in enumerate(given):
        if not ok:
            parsed.records[i][id_field] = ids[i] = str(i)
    parsed.extracted[id_field] = ids
    parsed.given_ids = np.array(given, dtype=bool)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
