"""CSV bodies: Arrow's quick reading gives exactly the csv module's columns, or steps aside."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churn import csv_body
from churn.errors import InvalidInput, TooManyRows
from churn.params import Params
from churn.schema import Schema

CELLS = st.sampled_from(["", " ", "12", "-0.5", "1e3", "Yes", "No", "DSL", "Fiber optic", "One year", " x ", "é",
                         "C-1", "C 2", "a;b", "\t", "nan", "0x1", "Month-to-month"]) | st.text(
    st.characters(blacklist_characters='",\r\n\x00', blacklist_categories=("Cs",)), max_size=6)


@pytest.fixture(scope="module")
def schema(params: Params) -> Schema:
    return params.schema


@st.composite
def bodies(draw: st.DrawFn, names: list[str]) -> bytes:
    features = names[1:]
    header = draw(st.sampled_from(["names", "shuffled", "none", "none with id", "partial", "odd"]))
    if header == "names":
        columns = names
    elif header == "shuffled":
        columns = draw(st.permutations(names))
    elif header == "none":
        columns = features
    elif header == "none with id":
        columns = names
    elif header == "partial":
        columns = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True)) + ["extra"]
    else:
        columns = [f" {names[1]} ", "other"]
    rows = draw(st.lists(st.lists(CELLS, min_size=len(columns), max_size=len(columns)), max_size=6))
    if draw(st.integers(0, 9)) == 0 and rows:  # a ragged row
        rows[-1] = rows[-1][:-1]
    lines = ([",".join(columns)] if header not in ("none", "none with id") else []) + [",".join(r) for r in rows]
    text = "\n".join(lines)
    spice = draw(st.sampled_from(["", "", "trailing newline", "blank lines", "bom", "quote", "crlf", "cr", "mixed"]))
    if spice == "trailing newline":
        text += "\n"
    elif spice == "blank lines":
        text = "\n\n" + text.replace("\n", "\n\n")
    elif spice == "quote":
        text = text.replace(",", ',"', 1)
    elif spice == "crlf":
        text = text.replace("\n", "\r\n") + "\r\n"
    elif spice == "cr":
        text = text.replace("\n", "\r")
    elif spice == "mixed":
        text = text.replace("\n", "\r\r\n", 1).replace("\n", "\n\r", 1)
    data = text.encode()
    return b"\xef\xbb\xbf" + data if spice == "bom" else data


def outcome(read: object) -> object:
    try:
        columns = read()  # type: ignore[operator]
    except (InvalidInput, TooManyRows) as err:
        return type(err), err.message
    return columns


@given(data=st.data())
@settings(max_examples=400, deadline=None)
def test_arrow_reads_a_body_as_the_csv_module_does_or_leaves_it_to_it(schema: Schema, data: st.DataObject) -> None:
    names = [schema.id_field, *schema.feature_names]
    body = data.draw(bodies(names))
    max_rows = data.draw(st.sampled_from([3, 100]))
    quick = csv_body._arrow(body, schema, max_rows)
    slow = outcome(lambda: csv_body._python(body.decode("utf-8-sig"), schema, max_rows))
    if quick is None:
        return
    assert isinstance(slow, csv_body.CsvColumns), f"Arrow read what the csv module refuses: {body!r} -> {slow}"
    assert sorted(quick.table.column_names) == sorted(slow.table.column_names)
    for name in slow.table.column_names:
        assert quick.table.column(name).to_pylist() == slow.table.column(name).to_pylist(), name
    np.testing.assert_array_equal(quick.given_ids, slow.given_ids)


def test_a_plain_body_is_read_by_arrow(schema: Schema) -> None:
    names = [schema.id_field, *schema.feature_names]
    body = (",".join(names) + "\nC1," + ",".join(["1"] * (len(names) - 1)) + "\n,"
            + ",".join(["2"] * (len(names) - 1)) + "\n").encode()
    quick = csv_body._arrow(body, schema, 10)
    assert quick is not None
    assert quick.table.column(schema.id_field).to_pylist() == ["C1", "1"]
    assert quick.given_ids.tolist() == [True, False]


@pytest.mark.parametrize("body", [b'a,"b"\n1,2\n', b"a\x00,b\n", b"\xff\xfe,x\n", b"a,b\n1,2,3\n"])
def test_bodies_where_the_readers_could_differ_are_left_to_the_csv_module(schema: Schema, body: bytes) -> None:
    assert csv_body._arrow(body, schema, 10) is None
