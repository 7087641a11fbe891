"""One reader for every input file: a file or a directory, Parquet or CSV (as text), headers
detected the way HTTP detects them, missing columns named once with the closest names found."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from churn import files, generator
from churn.active_customers import file_chunks
from churn.errors import ConfigError, InvalidInput, mapping_for
from churn.params import load_params
from churn.schema import Schema

SCHEMA: Schema = load_params().schema


@pytest.fixture(scope="module")
def customers() -> pa.Table:
    table = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=300, seed=3)))
    return table.select([SCHEMA.id_field, SCHEMA.status_field, *SCHEMA.feature_names])


def _read(path: Path) -> pa.Table:
    return pa.concat_tables(file_chunks(path, SCHEMA, 100))


def test_a_txt_source_is_refused_as_bad_input_not_retried(tmp_path: Path) -> None:
    path = tmp_path / "customers.txt"
    path.write_text("customer_id,tenure\nC1,3\n")

    with pytest.raises(ConfigError, match=r"is a \.txt file: give a \.parquet or \.csv file") as raised:
        _read(path)
    assert mapping_for(raised.value).exit_code == 3


def test_a_headerless_csv_with_the_id_then_the_features_reads_like_one_with_a_header(
    tmp_path: Path, customers: pa.Table
) -> None:
    no_status = customers.drop_columns([SCHEMA.status_field])
    headed, headerless = tmp_path / "headed.csv", tmp_path / "headerless.csv"
    pacsv.write_csv(no_status, headed)
    pacsv.write_csv(no_status, headerless, pacsv.WriteOptions(include_header=False))

    assert _read(headerless).to_pylist() == _read(headed).to_pylist()
    assert _read(headerless).num_rows == customers.num_rows  # the first customer is a row, not a header


def test_a_headerless_csv_of_another_width_is_refused_with_what_to_give(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("12,29.85,Month-to-month\n3,50.0,One year\n")

    with pytest.raises(InvalidInput, match=r"has no header .* give 10 columns: customer_id then tenure, monthly"):
        _read(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_missing_and_renamed_columns_fail_once_naming_every_one_and_the_closest_name(
    tmp_path: Path, customers: pa.Table, suffix: str
) -> None:
    renamed = customers.rename_columns(
        [{"tenure": "Tenure", "contract": "contract_type"}.get(n, n) for n in customers.column_names]
    ).drop_columns(["support_calls"])
    path = tmp_path / f"renamed{suffix}"
    (pacsv.write_csv if suffix == ".csv" else pq.write_table)(renamed, path)

    with pytest.raises(InvalidInput) as raised:
        _read(path)

    message = raised.value.message
    assert "tenure (closest: 'Tenure')" in message
    assert "contract (closest: 'contract_type')" in message
    assert "support_calls (no similar column)" in message
    assert raised.value.details["missing"] == ["tenure", "contract", "support_calls"]


def test_a_directory_reads_every_file_and_read_table_gives_the_same_rows(tmp_path: Path, customers: pa.Table) -> None:
    pq.write_table(customers.slice(0, 100), tmp_path / "a.parquet")
    pq.write_table(customers.slice(100), tmp_path / "b.parquet")
    (tmp_path / "notes.md").write_text("ignored")

    streamed = _read(tmp_path)
    whole = files.read_table(tmp_path, SCHEMA)

    active = whole.filter(pc.equal(whole.column(SCHEMA.status_field), "active"))
    assert whole.num_rows == customers.num_rows
    assert streamed.column("customer_id").to_pylist() == active.column("customer_id").to_pylist()


def test_status_is_matched_in_any_case_and_with_spaces(tmp_path: Path, customers: pa.Table) -> None:
    statuses = ["Active", " ACTIVE ", "active", "inactive", None] * 60
    table = customers.set_column(1, SCHEMA.status_field, pa.array(statuses))
    pq.write_table(table, tmp_path / "c.parquet")

    kept = _read(tmp_path / "c.parquet")

    assert kept.num_rows == 180


@pytest.mark.parametrize("name", ["out.parquet", "out.csv", "OUT.CSV"])
def test_table_writer_streams_chunks_into_the_format_of_the_name(tmp_path: Path, name: str) -> None:
    schema = pa.schema([("id", pa.string()), ("p", pa.float64())])
    target = tmp_path / "sub" / name

    with files.TableWriter(target, schema) as writer:
        writer.write(pa.table({"id": ["a", "b"], "p": [0.5, 0.25]}))
        writer.write(pa.table({"id": ["c"], "p": [1.0]}))

    read = pq.read_table(target) if name.endswith("parquet") else pacsv.read_csv(target)
    assert read.column("id").to_pylist() == ["a", "b", "c"] and writer.rows == 3
    assert [p.name for p in target.parent.iterdir()] == [name]


def test_table_writer_that_fails_leaves_the_previous_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("previous\n")
    schema = pa.schema([("id", pa.string())])

    with pytest.raises(RuntimeError), files.TableWriter(target, schema) as writer:
        writer.write(pa.table({"id": ["a"]}))
        raise RuntimeError("the run failed halfway")

    assert target.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_directory_mixing_csv_and_parquet_types_is_bad_input_naming_the_column(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("customer_id,tenure_months\nc1,3\n")
    pq.write_table(pa.table({"customer_id": ["c2"], "tenure_months": [4]}), tmp_path / "b.parquet")
    clash = r"disagree on column types \(tenure_months: int64, tenure_months: string\)"
    with pytest.raises(InvalidInput, match=clash) as err:
        files.read_table(tmp_path)
    assert mapping_for(err.value).exit_code == 3
