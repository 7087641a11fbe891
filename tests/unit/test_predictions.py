"""`churn predict`'s rows: every record back in input order, scored with the nightly job's core or
rejected with its reason; reasons carry the customer's values and words."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from unknown_policy import rejecting_model

from churn import scoring
from churn.adapters.model_format import LoadedModel
from churn.explanation import value_text
from churn.params import Params
from churn.predictions import Predictor, prediction_schema
from churn.validation import validate


@pytest.fixture(scope="module")
def predictor(loaded_model: LoadedModel, params: Params) -> Predictor:
    run = scoring.RunInfo(dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, tzinfo=dt.UTC), "churn", "7", "run")
    return Predictor(loaded_model.compiled, scoring.ScoringConfig.from_params(params), run, reasons=3)


@pytest.fixture(scope="module")
def rejecting(loaded_model: LoadedModel, params: Params) -> Predictor:
    """The same model with its categories under `unknown: reject` (the behaviour before the policy)."""
    run = scoring.RunInfo(dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, tzinfo=dt.UTC), "churn", "7", "run")
    return Predictor(rejecting_model(loaded_model).compiled, scoring.ScoringConfig.from_params(params), run,
                     reasons=3)


def _with_bad_rows(customers: pa.Table) -> pa.Table:
    """50 customers as a CSV reads them (text), three of them broken."""
    rows = customers.slice(0, 50).to_pylist()
    rows[3]["tenure"] = -5
    rows[17]["contract"] = "Fortnightly"
    rows[18]["monthly_charges"] = "abc"
    return pa.Table.from_pylist([{k: None if v is None else str(v) for k, v in row.items()} for row in rows])


def test_every_row_comes_back_in_input_order_scored_or_rejected_with_its_reason(
    rejecting: Predictor, customers: pa.Table
) -> None:
    data = _with_bad_rows(customers)

    predicted = rejecting.chunk(data, offset=1000)
    rows = predicted.table.to_pylist()

    assert predicted.table.schema == prediction_schema(3)
    assert [r["source_row"] for r in rows] == list(range(1000, 1050))
    assert [r["customer_id"] for r in rows] == data.column("customer_id").to_pylist()
    assert (predicted.scored, predicted.rejected) == (47, 3)
    rejected = {r["source_row"] - 1000: r for r in rows if r["status"] == "rejected"}
    assert {k: (r["rejected_field"], r["rejected_reason"]) for k, r in rejected.items()} == {
        3: ("tenure", "out_of_bounds"),
        17: ("contract", "unknown_category"),
        18: ("monthly_charges", "wrong_type"),
    }
    assert json.loads(rejected[17]["errors"])[0]["allowed"] == ["Month-to-month", "One year", "Two year"]
    assert all(r["churn_probability"] is None and r["reason_1"] is None for r in rejected.values())


def test_a_row_with_an_unseen_category_is_scored_with_the_value_missing_by_default(
    predictor: Predictor, customers: pa.Table
) -> None:
    data = _with_bad_rows(customers)

    predicted = predictor.chunk(data, offset=0)
    rows = predicted.table.to_pylist()

    assert (predicted.scored, predicted.rejected) == (48, 2)
    assert rows[17]["status"] == "scored" and rows[17]["churn_probability"] is not None
    assert {r["rejected_field"] for r in rows if r["status"] == "rejected"} == {"tenure", "monthly_charges"}


def test_scored_rows_carry_the_nightly_probability_band_and_reasons_with_values(
    predictor: Predictor, customers: pa.Table, loaded_model: LoadedModel
) -> None:
    data = customers.slice(0, 400)
    compiled = loaded_model.compiled

    table = predictor.chunk(data, offset=0).table
    clean = validate(data, compiled.schema).clean
    x = compiled.matrix(clean)
    order, contribution = compiled.top_reasons(x, 3)

    np.testing.assert_allclose(table.column("churn_probability").to_numpy(), compiled.probability(x), atol=0)
    churn = compiled.probability(x) >= compiled.threshold
    assert table.column("prediction").to_pylist() == ["Churn" if c else "No Churn" for c in churn]
    assert set(table.column("risk_band").to_pylist()) <= {"high", "medium", "low"}
    np.testing.assert_allclose(table.column("reason_2_contribution").to_numpy(), contribution[:, 1], atol=0)
    records = data.to_pylist()
    for i, row in enumerate(table.to_pylist()):
        feature = compiled.feature_order[order[i, 0]]
        assert row["reason_1"] == feature
        assert row["reason_1_value"] == value_text(records[i][feature], compiled.schema.by_name[feature])
        assert row["reasons"].startswith(row["reason_1"].replace("_", " ") + " ")
        assert row["reasons"].count("; ") == 2 and row["model_version"] == "7"


def test_no_reasons_asked_leaves_the_reason_columns_out(loaded_model: LoadedModel, params: Params,
                                                        customers: pa.Table) -> None:
    run = scoring.RunInfo(dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, tzinfo=dt.UTC), "churn", "7", "run")
    plain = Predictor(loaded_model.compiled, scoring.ScoringConfig.from_params(params), run, reasons=0)

    table = plain.chunk(customers.slice(0, 10), offset=0).table

    assert not any(name.startswith("reason") for name in table.column_names)
    assert table.num_rows == 10 and table.column("status").to_pylist() == ["scored"] * 10


def test_a_chunk_of_only_rejected_rows_still_comes_back(predictor: Predictor, customers: pa.Table) -> None:
    rows = customers.slice(0, 2).to_pylist()
    for row in rows:
        row["tenure"] = None

    predicted = predictor.chunk(pa.Table.from_pylist(rows), offset=5)

    assert predicted.table.column("status").to_pylist() == ["rejected", "rejected"]
    assert predicted.table.column("source_row").to_pylist() == [5, 6]
    assert predicted.table.column("rejected_reason").to_pylist() == ["missing", "missing"]
