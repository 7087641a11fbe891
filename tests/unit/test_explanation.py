"""Explanations in words: values as people write them, the direction and strength of each effect,
and the numbers adding up to the model's own log-odds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from churn import explanation
from churn.adapters.model_format import LoadedModel
from churn.explanation import Effect, decoded_values, effect_words, explain, reason_columns, value_text
from churn.profile import feature_arrays
from churn.schema import FeatureSpec, Schema
from churn.training import Splits
from churn.validation import validate

TENURE = FeatureSpec("tenure", "int", min=0, unit="months")


@pytest.mark.parametrize(
    ("value", "spec", "text"),
    [
        (52, TENURE, "52 months"),
        (89.1, FeatureSpec("monthly_charges", "float"), "89.1"),
        (89.0, FeatureSpec("monthly_charges", "float"), "89"),
        (1234.567, None, "1234.57"),
        (None, TENURE, "missing"),
        (float("nan"), None, "missing"),
        ("Month-to-month", None, "Month-to-month"),
    ],
)
def test_values_read_as_a_person_writes_them(value: object, spec: FeatureSpec | None, text: str) -> None:
    assert value_text(value, spec) == text


@pytest.mark.parametrize(
    ("contribution", "words"),
    [
        (1.18, "strongly raises risk"),
        (0.4, "raises risk"),
        (0.1, "slightly raises risk"),
        (0.01, "hardly changes risk"),
        (-0.01, "hardly changes risk"),
        (-0.1, "slightly lowers risk"),
        (-0.64, "lowers risk"),
        (-2.0, "strongly lowers risk"),
    ],
)
def test_the_words_say_the_direction_and_the_strength(contribution: float, words: str) -> None:
    assert effect_words(contribution) == words


def test_an_effect_reads_as_feature_value_and_direction_with_the_number_alongside() -> None:
    contract = Effect("contract", "Month-to-month", 1.18)
    tenure = Effect("tenure", 52, -0.64, TENURE)
    stored = Effect("support_calls", None, 0.3, has_value=False)

    assert contract.sentence == "contract Month-to-month strongly raises risk (+1.18)"
    assert tenure.words == "tenure 52 months lowers risk"
    assert stored.words == "support calls raises risk"
    assert "value" not in stored.to_dict() and tenure.to_dict()["value"] == 52


def test_decoded_values_give_back_category_names_ints_and_missing() -> None:
    schema = Schema(features=(TENURE, FeatureSpec("plan", "category", values=("basic", "pro"))))
    features = {"tenure": np.array([3.0, np.nan]), "plan": np.array([1.0, np.nan])}

    assert decoded_values(features, schema) == {"tenure": [3, None], "plan": ["pro", None]}


def test_every_feature_is_explained_largest_first_and_the_effects_add_up_to_the_models_log_odds(
    loaded_model: LoadedModel, splits: Splits
) -> None:
    compiled = loaded_model.compiled
    clean = splits.test.slice(0, 40)
    explained = explain(compiled, clean)
    x = compiled.matrix(clean)

    assert len(explained) == 40
    np.testing.assert_allclose([e.margin for e in explained], compiled.margin(x), atol=1e-9)
    np.testing.assert_allclose([e.probability for e in explained], compiled.probability(x), atol=1e-12)
    for item, record in zip(explained, clean.to_pylist()):
        assert [e.feature for e in item.effects] != [] and len(item.effects) == len(compiled.feature_order)
        sizes = [abs(e.contribution) for e in item.effects]
        assert sizes == sorted(sizes, reverse=True)
        for effect in item.effects:  # the customer's own values, not imputed or coded ones
            assert effect.value == record[effect.feature]


def test_the_text_names_each_feature_with_its_value_and_the_probability(
    loaded_model: LoadedModel, splits: Splits
) -> None:
    (item,) = explain(loaded_model.compiled, splits.test.slice(0, 1), bands=["high"])
    text = "\n".join(item.lines())
    record = splits.test.slice(0, 1).to_pylist()[0]

    assert f"customer {record['customer_id']}: churn probability {item.probability:.2f}" in text
    assert "high risk band" in text
    assert f"contract {record['contract']} " in text
    assert f"tenure {record['tenure']} months " in text
    assert f"{item.margin:+.3f} log-odds" in text


def test_columns_for_files_pick_the_risk_tables_reasons_and_say_them_as_the_effects_do(
    loaded_model: LoadedModel, customers: pa.Table
) -> None:
    compiled = loaded_model.compiled
    sample = customers.slice(0, 300)
    sample = sample.set_column(  # missing totals must read "missing", not the imputed value
        sample.schema.get_field_index("total_charges"),
        "total_charges",
        pa.array([None if i % 7 == 0 else v for i, v in enumerate(sample.column("total_charges").to_pylist())]),
    )
    clean = validate(sample, compiled.schema).clean
    features = feature_arrays(clean, compiled.schema)
    columns = reason_columns(compiled, features, 3)
    full = explain(compiled, clean)
    order, contribution = compiled.top_reasons(compiled.matrix(clean), 3)

    assert len(columns) == 3
    for j, column in enumerate(columns):
        names = [compiled.feature_order[i] for i in order[:, j].tolist()]
        assert column.feature.to_pylist() == names
        np.testing.assert_allclose(column.contribution, contribution[:, j], atol=0)
        assert column.words.to_pylist() == [item.effects[j].sentence for item in full]
        assert column.value.to_pylist() == [value_text(item.effects[j].value, item.effects[j].spec) for item in full]
    every = reason_columns(compiled, features, len(compiled.feature_order))
    said = [
        (feature, value)
        for c in every
        for feature, value in zip(c.feature.to_pylist(), c.value.to_pylist())
        if feature == "total_charges"
    ]
    missing = [v for v in clean.column("total_charges").to_pylist()].count(None)
    assert missing and [v for _, v in said].count("missing") == missing


def test_no_reasons_asked_gives_no_columns(loaded_model: LoadedModel, splits: Splits) -> None:
    features = feature_arrays(splits.test.slice(0, 5), loaded_model.compiled.schema)

    assert reason_columns(loaded_model.compiled, features, 0) == []
    assert explanation.stored_effects(None) == []
