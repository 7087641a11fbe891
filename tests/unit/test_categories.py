"""Category values learned from training rows when params.yaml leaves out `values:`, carried by
the model, and judged at scoring time by the feature's `unknown` policy."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

from churn import categories, training
from churn.adapters import model_format
from churn.errors import InvalidInput, mapping_for
from churn.model import to_frame
from churn.params import Params
from churn.schema import Schema
from churn.validation import validate

STATES = ["CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI", "NJ", "VA", "WA", "AZ", "MA", "TN", "IN",
          "MD", "MO", "WI", "CO", "MN", "SC", "AL", "LA", "KY", "OR", "OK", "CT", "UT", "IA", "NV", "AR", "MS",
          "KS", "NM", "NE", "ID", "WV", "HI", "NH", "ME", "RI", "MT", "DE", "SD", "ND", "AK", "VT", "WY"]


def plan_schema(**rules: Any) -> Schema:
    return Schema.from_dict({"features": [{"name": "plan", "type": "category", **rules}]})


def plan_rows(values: list[Any]) -> pa.Table:
    return validate([{"customer_id": str(i), "plan": v} for i, v in enumerate(values)], plan_schema()).clean


# -- learning the values ---------------------------------------------------------------------------


def test_learned_values_are_ordered_by_rows_then_name_with_case_and_spaces_folded() -> None:
    rows = plan_rows(["pro"] * 3 + ["Basic", "basic ", " basic", "BASIC"] + ["team", "Team"] + ["gold", None])

    schema, found = categories.learn(plan_schema(), rows)

    spec = schema.by_name["plan"]
    # basic x4 (trimmed: "basic" twice, "Basic" and "BASIC" once), pro x3, team x2 (a tie: "Team" < "team"), gold x1
    assert spec.values == ("basic", "pro", "Team", "gold") and spec.learned and not spec.to_learn
    assert found["plan"].to_dict() == {"distinct": 4, "kept": 4, "rows": 10, "rows_outside": 0, "coverage": 1.0}


def test_the_spelling_most_rows_use_is_the_learned_value() -> None:
    schema, _ = categories.learn(plan_schema(), plan_rows(["Gold", "GOLD", "GOLD", "silver"]))
    assert schema.by_name["plan"].values == ("GOLD", "silver")


def test_values_past_max_values_are_trained_as_missing_and_counted() -> None:
    rows = plan_rows(["a"] * 5 + ["b"] * 4 + ["c"] * 2 + ["d"])

    schema, found = categories.learn(plan_schema(max_values=2), rows)

    assert schema.by_name["plan"].values == ("a", "b")
    assert (found["plan"].rows_outside, found["plan"].coverage) == (3, pytest.approx(0.75))
    coded = categories.recode(rows, schema)
    assert coded.column("plan").to_pylist() == ["a"] * 5 + ["b"] * 4 + [None] * 3


def test_a_column_of_identifiers_is_refused_naming_the_counts() -> None:
    with pytest.raises(InvalidInput, match=r"'plan': 1,000 distinct values in 1,000 training rows.*identifier") as err:
        categories.learn(plan_schema(max_values=10), plan_rows([f"id-{i}" for i in range(1_000)]))
    assert mapping_for(err.value).exit_code == 3


def test_a_category_with_no_value_at_all_is_refused() -> None:
    schema = Schema.from_dict({"features": [{"name": "plan", "type": "category", "nullable": True}]})
    rows = validate([{"customer_id": "1", "plan": None}, {"customer_id": "2", "plan": "  "}], schema).clean
    with pytest.raises(InvalidInput, match=r"'plan' has no value in the training rows"):
        categories.learn(schema, rows)


def test_a_schema_still_to_learn_accepts_any_text_and_rejects_other_types() -> None:
    result = validate([{"customer_id": "1", "plan": " Gold "}, {"customer_id": "2", "plan": 7.5},
                       {"customer_id": "3", "plan": None}], plan_schema())
    assert result.clean.column("plan").to_pylist() == ["Gold"]
    assert [json.loads(e)[0]["reason"] for e in result.rejected.column("errors").to_pylist()] == [
        "wrong_type", "missing"]


def test_a_learned_schema_round_trips_through_its_dict_as_the_model_stores_it() -> None:
    schema, _ = categories.learn(plan_schema(unknown="reject", max_values=5), plan_rows(["b", "a", "a"]))

    again = Schema.from_dict(schema.to_dict())

    assert again == schema and again.by_name["plan"].to_dict() == {
        "name": "plan", "type": "category", "nullable": False, "values": ["a", "b"], "unknown": "reject",
        "learned": True, "max_values": 5}


# -- training learns them, the model carries them ---------------------------------------------------


@pytest.fixture(scope="module")
def with_states(customers: pa.Table, params: Params) -> tuple[Params, pa.Table]:
    """The seed's customers with a `state` column (50 values, listed nowhere) and `contract` left unlisted."""
    raw = copy.deepcopy(params.raw)
    features = raw["schema"]["features"]
    contract = next(f for f in features if f["name"] == "contract")
    del contract["values"]
    features.append({"name": "state", "type": "category"})
    rng = np.random.default_rng(0)
    weights = np.linspace(2.0, 1.0, len(STATES))
    state = rng.choice(STATES, size=customers.num_rows, p=weights / weights.sum())
    return Params.from_dict(raw), customers.append_column("state", pa.array(state))


@pytest.fixture(scope="module")
def learned(with_states: tuple[Params, pa.Table]) -> tuple[training.TrainingOutcome, training.Splits]:
    params, table = with_states
    splits = training.split(validate(table, params.schema, require_label=True).clean, params)
    return training.train(params, splits.train, splits.valid), splits


def test_training_learns_the_values_of_the_non_test_rows_and_the_model_carries_them(
    learned: tuple[training.TrainingOutcome, training.Splits], params: Params
) -> None:
    outcome, _ = learned
    schema = outcome.model.schema

    assert sorted(schema.by_name["state"].values) == sorted(STATES) and schema.by_name["state"].learned
    assert sorted(schema.by_name["contract"].values) == sorted(params.schema.by_name["contract"].values)
    assert set(outcome.learned) == {"contract", "state"} and outcome.learned["state"].kept == 50
    assert outcome.model.pipeline.predict_proba(to_frame(training.non_test(*_tables(learned)), schema)).shape[1] == 2


def _tables(learned: tuple[training.TrainingOutcome, training.Splits]) -> tuple[pa.Table, pa.Table]:
    return learned[1].train, learned[1].valid


def test_the_saved_model_and_its_mlflow_metadata_hold_the_learned_values(
    learned: tuple[training.TrainingOutcome, training.Splits], tmp_path: Path
) -> None:
    outcome, splits = learned
    path = tmp_path / "model"
    model_format.save(outcome.model, path, to_frame(splits.valid, outcome.model.schema),
                      {"reference_profile": outcome.reference_profile, "data_hash": "test"})

    stored = yaml.safe_load((path / "MLmodel").read_text())["metadata"]["churn"]["schema"]
    state = next(f for f in stored["features"] if f["name"] == "state")
    assert state["values"] == list(outcome.model.schema.by_name["state"].values) and state["learned"] is True
    assert state["unknown"] == "missing"
    loaded = model_format.load(path)
    assert loaded.compiled.schema == outcome.model.schema

    # Scoring judges against exactly those values: an unseen state is scored as missing and named.
    test = splits.test.slice(0, 4).to_pylist()
    test[1]["state"] = "PR"
    result = validate(test, loaded.compiled.schema)
    assert result.clean.num_rows == 4 and result.unseen_counts() == {"state": {"PR": 1}}
    x = loaded.compiled.matrix(result.clean)
    assert np.isnan(x[1, loaded.compiled.feature_order.index("state")])
    np.testing.assert_allclose(loaded.compiled.probability(x),
                               loaded.trained.predict_proba(to_frame(result.clean, loaded.compiled.schema)),
                               atol=1e-9)


def test_a_model_saved_before_the_unknown_policy_keeps_rejecting_unseen_values(model_dir: Path,
                                                                              tmp_path: Path) -> None:
    """Its training dropped such rows, so it never learned to score them as missing."""
    old = tmp_path / "old-model"
    shutil.copytree(model_dir, old)
    mlmodel = yaml.safe_load((old / "MLmodel").read_text())
    for feature in mlmodel["metadata"]["churn"]["schema"]["features"]:
        feature.pop("unknown", None)  # as written before the policy existed
    (old / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    schema = model_format.load(old).compiled.schema

    assert {f.unknown for f in schema.categorical} == {"reject"}
    assert {f.unknown for f in model_format.load(model_dir).compiled.schema.categorical} == {"missing"}


def test_a_category_coded_as_numbers_is_learned_as_its_text_from_any_source() -> None:
    """An area code or a 0/1 flag arrives as text from CSV and as numbers from Parquet, MongoDB
    or JSON: both read alike (integral floats as their integer, as pandas writes gaps)."""
    as_numbers = pa.table({"customer_id": ["1", "2", "3", "4"], "plan": pa.array([408.0, 415.0, None, 408.0])})
    from_records = validate([{"customer_id": "1", "plan": 408}, {"customer_id": "2", "plan": "415"},
                             {"customer_id": "3", "plan": 408.0}], plan_schema(nullable=True))
    from_table = validate(as_numbers, plan_schema(nullable=True))
    assert from_records.clean.column("plan").to_pylist() == ["408", "415", "408"]
    assert from_table.clean.column("plan").to_pylist() == ["408", "415", None, "408"]
    assert from_table.rejected.num_rows == 0
