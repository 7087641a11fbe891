"""The fast single-record path: same probabilities as the sklearn Pipeline, same verdicts as the validator."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unknown_policy import rejecting

from churn.adapters.model_format import LoadedModel
from churn.fast_path import RecordEncoder
from churn.schema import FeatureSpec, Schema
from churn.single_row_predictor import SingleRowScorer
from churn.validation import validate

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def encoder(loaded_model: LoadedModel) -> RecordEncoder:
    return RecordEncoder(loaded_model.compiled)


@pytest.fixture(scope="module")
def schema(loaded_model: LoadedModel) -> Schema:
    return loaded_model.compiled.schema


def typical(schema: Schema) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for spec in schema.features:
        if spec.is_numeric:
            record[spec.name] = int(spec.min or 0) + 3 if spec.type == "int" else (spec.min or 0.0) + 42.5
        else:
            record[spec.name] = spec.values[-1]
    return record


def pipeline_probabilities(model: LoadedModel, records: list[dict[str, Any]]) -> np.ndarray:
    """The reference: the fitted sklearn Pipeline on a DataFrame built by hand."""
    data: dict[str, Any] = {}
    for spec in model.compiled.schema.features:
        values = [r.get(spec.name) for r in records]
        if spec.is_numeric:
            data[spec.name] = [math.nan if v is None else float(v) for v in values]
        else:
            data[spec.name] = pd.Categorical(values, categories=list(spec.values))
    return np.asarray(model.trained.pipeline.predict_proba(pd.DataFrame(data))[:, 1])


def fast_probability(model: LoadedModel, encoder: RecordEncoder, record: dict[str, Any]) -> float:
    """What a single-record request is answered with: encoder, then the single-row scorer."""
    encoded = encoder.encode(record)
    assert encoded is not None, f"the fast path refused a clean record: {record}"
    return float(scorer(model).probability(encoded.row)[0])


_SCORERS: dict[int, SingleRowScorer] = {}


def scorer(model: LoadedModel) -> SingleRowScorer:
    return _SCORERS.setdefault(id(model), SingleRowScorer(model.compiled))


# -- probabilities equal the Pipeline's ---------------------------------------------------------


def every_category_and_missing_case(schema: Schema) -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for spec in schema.features:
        if not spec.is_numeric:
            cases += [(spec.name, value) for value in spec.values]
        if spec.nullable:
            cases.append((spec.name, None))
    return cases


def test_every_category_value_and_every_missing_value_scores_like_the_pipeline(
    loaded_model: LoadedModel, encoder: RecordEncoder, schema: Schema
) -> None:
    cases = every_category_and_missing_case(schema)
    assert any(value is None for _, value in cases), "the schema should have a nullable field to test"
    records = [{**typical(schema), name: value} for name, value in cases]
    reference = pipeline_probabilities(loaded_model, records)
    for record, case, expected in zip(records, cases, reference.tolist()):
        assert fast_probability(loaded_model, encoder, record) == pytest.approx(expected, abs=TOLERANCE), case


def clean_records(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    """Any record the schema allows: every category, numbers across and at their bounds, nulls."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for spec in schema.features:
        if spec.is_numeric:
            lo = 0.0 if spec.min is None else spec.min
            hi = 1e6 if spec.max is None else spec.max
            if spec.type == "int":
                value: st.SearchStrategy[Any] = st.integers(int(lo), int(hi))
            else:
                value = st.floats(lo, hi, allow_nan=False) | st.sampled_from([lo, hi])
        else:
            value = st.sampled_from(spec.values)
        fields[spec.name] = (value | st.none()) if spec.nullable else value
    return st.fixed_dictionaries(fields)


@given(data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_clean_record_scores_like_the_pipeline(
    loaded_model: LoadedModel, encoder: RecordEncoder, schema: Schema, data: st.DataObject
) -> None:
    records = data.draw(st.lists(clean_records(schema), min_size=1, max_size=50))
    fast = [fast_probability(loaded_model, encoder, record) for record in records]
    np.testing.assert_allclose(fast, pipeline_probabilities(loaded_model, records), rtol=0, atol=TOLERANCE)


# -- verdicts equal the validator's ---------------------------------------------------------------


def hostile_value(spec: FeatureSpec | None) -> st.SearchStrategy[Any]:
    """Values a careless or hostile client sends, plus the valid ones they resemble."""
    near: list[Any] = ["", " ", "nan", "NaN", "inf", "-Infinity", "1e400", "0x10", "1_000", "١٢", " 12 ", "+5",
                       "5.", ".5", "-0", True, False, [], [1], {}, {"a": 1}, 2**53, 2**53 + 1, 2**63, 2**70,
                       -(2**70), -0.0, 5e-324, math.inf, -math.inf, math.nan, "Yes", "yes", "TRUE", "false"]
    if spec is not None and not spec.is_numeric:
        near += list(spec.values) + [v.upper() for v in spec.values] + [f" {v} " for v in spec.values]
    around: list[st.SearchStrategy[Any]] = [st.integers(-3, 3)]
    if spec is not None and spec.is_numeric:
        for bound in (spec.min, spec.max):
            if bound is not None:
                near += [bound, bound - 1, bound + 1, bound - 0.5, str(bound), int(bound)]
                around += [st.integers(int(bound) - 3, int(bound) + 3), st.floats(bound - 2, bound + 2)]
    return st.one_of(
        st.sampled_from(near),
        *around,
        st.none(),
        st.integers(-(2**65), 2**65),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.from_regex(r"\s?[+-]?[0-9]{0,4}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,3})?\s?", fullmatch=True),
    )


def hostile_records(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    """A clean record with up to three fields replaced by hostile values or removed."""
    names = [schema.id_field, *schema.feature_names]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        record = dict(draw(clean_records(schema)))
        for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            if draw(st.integers(0, 9)) == 0:
                record.pop(name, None)
            else:
                record[name] = draw(hostile_value(schema.by_name.get(name)))
        return record

    return build()


def validator_row(model: LoadedModel, record: dict[str, Any]) -> tuple[np.ndarray, str] | None:
    """The validator's verdict on one record: its encoded row and id, or None if it rejects."""
    schema = model.compiled.schema
    filled = {**record}
    if filled.get(schema.id_field) is None:
        filled[schema.id_field] = "0"
    try:
        result = validate([filled], schema)
    except Exception:  # the validator failing is a rejection too (and must never be accepted fast)
        return None
    if result.clean.num_rows == 0:
        return None
    return model.compiled.matrix(result.clean), str(result.clean.column(schema.id_field)[0].as_py())


@given(data=st.data())
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fast_path_accepts_only_what_the_validator_accepts_with_the_same_values(
    loaded_model: LoadedModel, encoder: RecordEncoder, schema: Schema, data: st.DataObject
) -> None:
    record = data.draw(hostile_records(schema))
    encoded = encoder.encode(record)
    if encoded is None:
        return  # the caller falls back to the validator, which decides
    verdict = validator_row(loaded_model, record)
    assert verdict is not None, f"fast path accepted what the validator rejects: {record}"
    row, customer_id = verdict
    np.testing.assert_array_equal(encoded.row, row)
    if record.get(schema.id_field) is not None:
        assert encoded.customer_id == customer_id


def test_plain_records_take_the_fast_path(encoder: RecordEncoder, schema: Schema) -> None:
    record = {**typical(schema), schema.id_field: "C-1", "monthly_charges": "42.5", "tenure": 12.0}
    encoded = encoder.encode(record)
    assert encoded is not None and encoded.customer_id == "C-1"
    assert encoder.encode({**typical(schema), schema.id_field: 17}).customer_id == "17"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "field, value",
    [
        ("contract", " one year "),  # the validator folds case and spaces: leave it to the validator
        ("tenure", True),
        ("tenure", -1),
        ("tenure", 2.5),
        ("tenure", None),
        ("monthly_charges", math.inf),
        ("monthly_charges", " 12 "),
        ("total_charges", 2**53 + 1),
        ("contract", "Monthly Plan\u00a0"),  # not plain ASCII: the validator's Unicode folding decides
        ("customer_id", " padded "),
        ("customer_id", True),
    ],
)
def test_doubtful_values_fall_back_to_the_validator(encoder: RecordEncoder, schema: Schema, field: str,
                                                     value: Any) -> None:
    assert encoder.encode({**typical(schema), field: value}) is None


def test_single_row_margins_equal_booster_predict_bit_for_bit(loaded_model: LoadedModel, splits: Any) -> None:
    compiled = loaded_model.compiled
    x = compiled.matrix(splits.test.slice(0, 300))
    expected = compiled.margin(x)
    got = np.array([scorer(loaded_model).margin(np.ascontiguousarray(x[i:i + 1])) for i in range(x.shape[0])])
    np.testing.assert_array_equal(got, expected)


# -- batches: column by column, the same verdicts and values --------------------------------------


def validator_batch(model: LoadedModel, records: list[dict[str, Any]]) -> tuple[np.ndarray, list[str]] | None:
    """The validator's verdict on a batch: its matrix and ids if it accepts every record, else None."""
    schema = model.compiled.schema
    try:
        result = validate(records, schema)
    except Exception:
        return None
    if result.rejected.num_rows:
        return None
    return model.compiled.matrix(result.clean), [str(v) for v in result.clean.column(schema.id_field).to_pylist()]


def with_ids(records: list[dict[str, Any]], id_field: str) -> list[dict[str, Any]]:
    """Ids as the HTTP parser leaves them: a missing one is the row number."""
    return [{**r, id_field: str(i)} if r.get(id_field) is None else r for i, r in enumerate(records)]


def json_columns(records: list[dict[str, Any]], schema: Schema) -> dict[str, list[Any]]:
    return {name: [r.get(name) for r in records] for name in [schema.id_field, *schema.feature_names]}


@given(data=st.data())
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_batch_takes_the_fast_path_only_if_the_validator_accepts_it_with_the_same_values(
    loaded_model: LoadedModel, encoder: RecordEncoder, schema: Schema, data: st.DataObject
) -> None:
    mostly_clean = clean_records(schema) | hostile_records(schema)
    records = with_ids(data.draw(st.lists(mostly_clean, min_size=1, max_size=8)), schema.id_field)
    batch = encoder.encode_batch(json_columns(records, schema), len(records))
    if batch is None:
        return
    verdict = validator_batch(loaded_model, records)
    assert verdict is not None, f"fast path accepted a batch the validator rejects: {records}"
    np.testing.assert_array_equal(batch.x, verdict[0])
    assert batch.ids == verdict[1]
    assert unseen_masks(batch.unseen) == unseen_masks(validate(records, schema).unseen_in_clean())


def unseen_masks(unseen: dict[str, np.ndarray]) -> dict[str, list[bool]]:
    return {name: np.asarray(mask, dtype=bool).tolist() for name, mask in unseen.items()}


def csv_cell(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else repr(value) if isinstance(value, float) \
        else str(value)


@given(data=st.data())
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_csv_cells_take_the_fast_path_only_if_the_validator_accepts_them_with_the_same_values(
    loaded_model: LoadedModel, encoder: RecordEncoder, schema: Schema, data: st.DataObject
) -> None:
    text = st.one_of(st.sampled_from(["", " ", "1", "-0", "+5", "5.", ".5", "1e3", "1e400", "0x1", "nan", "١",
                                      "Yes", " No", "DSL", "dsl", "2.5", "12 ", "3,5"]),
                     st.text(max_size=6), st.from_regex(r"[+-]?[0-9]{0,3}(\.[0-9]{0,2})?([eE][+-]?[0-9])?",
                                                        fullmatch=True))
    records = data.draw(st.lists(clean_records(schema), min_size=1, max_size=6))
    columns = {name: [csv_cell(r.get(name)) for r in records] for name in schema.feature_names}
    for name in data.draw(st.lists(st.sampled_from(schema.feature_names), max_size=3, unique=True)):
        columns[name][data.draw(st.integers(0, len(records) - 1))] = data.draw(text)
    columns[schema.id_field] = [f"C{i}" for i in range(len(records))]
    table = pa.table({name: pa.array(cells, pa.string()) for name, cells in columns.items()})
    batch = encoder.encode_batch({name: table.column(name).combine_chunks() for name in columns}, len(records),
                                 text=True)
    if batch is None:
        return
    result = validate(table, schema)
    assert result.rejected.num_rows == 0, f"fast path accepted CSV the validator rejects: {columns}"
    np.testing.assert_array_equal(batch.x, loaded_model.compiled.matrix(result.clean))
    assert unseen_masks(batch.unseen) == unseen_masks(result.unseen_in_clean())


def test_plain_batches_take_the_fast_path(encoder: RecordEncoder, schema: Schema) -> None:
    records = [{**typical(schema), schema.id_field: f"C{i}"} for i in range(5)]
    records[1]["tenure"] = 7.0  # an integral float
    records[2]["total_charges"] = None  # nullable
    assert encoder.encode_batch(json_columns(records, schema), 5) is not None
    cells = {name: pa.array([csv_cell(r[name]) for r in records], pa.string())
             for name in [schema.id_field, *schema.feature_names]}
    assert encoder.encode_batch(cells, 5, text=True) is not None


@pytest.mark.parametrize("field, value", [("contract", " one year "), ("tenure", True), ("tenure", 2.5),
                                          ("tenure", None), ("total_charges", 2**53 + 1), ("customer_id", " p ")])
def test_one_doubtful_value_sends_the_whole_batch_to_the_validator(encoder: RecordEncoder, schema: Schema,
                                                                   field: str, value: Any) -> None:
    records = [{**typical(schema), schema.id_field: f"C{i}"} for i in range(4)]
    records[2][field] = value
    assert encoder.encode_batch(json_columns(records, schema), 4) is None


def test_a_long_number_like_string_is_judged_in_linear_time(encoder: RecordEncoder, schema: Schema) -> None:
    """`[0-9]+\\.?[0-9]*` backtracked quadratically: 100,000 digits and an x took minutes."""
    record = {**typical(schema), "monthly_charges": "1" * 100_000 + "x"}
    assert encoder.encode(record) is None


# -- category values the model never learned ------------------------------------------------------


@pytest.mark.parametrize("value", ["Monthly", "THREE YEAR", "  weekly "])
def test_a_plainly_unseen_category_is_scored_as_missing_on_the_fast_path_and_named(
    loaded_model: LoadedModel, encoder: RecordEncoder, schema: Schema, value: str
) -> None:
    encoded = encoder.encode({**typical(schema), "contract": value})

    assert encoded is not None and encoded.unseen == ("contract",)
    assert math.isnan(encoded.row[0, loaded_model.compiled.feature_order.index("contract")])
    expected = pipeline_probabilities(loaded_model, [{**typical(schema), "contract": None}])[0]
    assert float(scorer(loaded_model).probability(encoded.row)[0]) == pytest.approx(expected, abs=TOLERANCE)


def test_an_unseen_category_in_a_batch_is_missing_in_its_row_only_and_named(
    loaded_model: LoadedModel, encoder: RecordEncoder, schema: Schema
) -> None:
    records = [{**typical(schema), schema.id_field: f"C{i}"} for i in range(3)]
    records[1]["contract"] = "Monthly"
    column = loaded_model.compiled.feature_order.index("contract")
    for batch in (encoder.encode_batch(json_columns(records, schema), 3),
                  encoder.encode_batch({name: pa.array([csv_cell(r[name]) for r in records], pa.string())
                                        for name in [schema.id_field, *schema.feature_names]}, 3, text=True)):
        assert batch is not None
        assert unseen_masks(batch.unseen) == {"contract": [False, True, False]}
        assert np.isnan(batch.x[:, column]).tolist() == [False, True, False]


def test_an_unseen_category_falls_back_to_the_validator_under_unknown_reject(
    loaded_model: LoadedModel, schema: Schema
) -> None:
    rejecting_encoder = RecordEncoder(replace(loaded_model.compiled, schema=rejecting(schema)))
    records = [{**typical(schema), schema.id_field: f"C{i}"} for i in range(2)]
    records[1]["contract"] = "Monthly"

    assert rejecting_encoder.encode(records[1]) is None
    assert rejecting_encoder.encode_batch(json_columns(records, schema), 2) is None
    cells = {name: pa.array([csv_cell(r[name]) for r in records], pa.string())
             for name in [schema.id_field, *schema.feature_names]}
    assert rejecting_encoder.encode_batch(cells, 2, text=True) is None
