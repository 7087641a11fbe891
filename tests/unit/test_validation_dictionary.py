"""Dictionary-encoded categories (as Parquet and the batch reader deliver them) validate like strings."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from churn import generator
from churn.params import load_params
from churn.validation import validate

PARAMS = load_params()


def dictionary_encoded(table: pa.Table, chunks: int = 1) -> pa.Table:
    names = [s.name for s in PARAMS.schema.categorical]
    for name in names:
        table = table.set_column(table.column_names.index(name), name, pc.dictionary_encode(table.column(name)))
    if chunks == 1:
        return table.combine_chunks()
    size = -(-table.num_rows // chunks)
    # Each slice re-encoded on its own: chunks carry different dictionaries, as Parquet row groups do.
    return pa.concat_tables([dictionary_encoded(table.slice(i * size, size).cast(_plain_schema(table)))
                             for i in range(chunks)])


def _plain_schema(table: pa.Table) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                      for f in table.schema])


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("dirty_rate", [0.0, 0.3])
def test_dictionary_encoded_categories_give_the_same_verdicts_as_strings(chunks, dirty_rate):
    config = generator.GeneratorConfig(n_customers=6_000, seed=12, dirty_rate=dirty_rate)
    table = pa.concat_tables(generator.generate(config))
    # A few nulls and blanks in a category the schema requires, beside the generator's dirt.
    contract = table.column("contract").to_pylist()
    contract[5], contract[7] = None, "   "
    table = table.set_column(table.column_names.index("contract"), "contract", pa.array(contract, pa.string()))

    as_strings = validate(table, PARAMS.schema, require_label=True)
    as_dictionary = validate(dictionary_encoded(table, chunks), PARAMS.schema, require_label=True)

    assert as_dictionary.clean.equals(as_strings.clean)
    assert as_dictionary.rejected.equals(as_strings.rejected)
    assert {5, 7} <= set(as_strings.rejected.column("row").to_pylist())


def test_an_all_null_dictionary_column_is_missing_everywhere():
    table = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=10, seed=1)))
    empty = pa.DictionaryArray.from_arrays(pa.nulls(10, pa.int32()), pa.array([], pa.string()))
    table = table.set_column(table.column_names.index("contract"), "contract", empty)

    result = validate(table, PARAMS.schema)

    assert result.clean.num_rows == 0
    assert set(result.rejected.column("reason").to_pylist()) == {"missing"}
