"""What `churn explain` says: the stored row and its limits, a rejection, and whether a re-scored
explanation is the one behind the stored score."""

from __future__ import annotations

import datetime as dt
import json

from churn.explanation import Effect, Explanation
from churn.narrative import comparison, problem_text, rejected_lines, stored_lines, verdict
from churn.schema import FeatureSpec, Schema

SCHEMA = Schema(features=(FeatureSpec("tenure", "int", min=0, unit="months"),
                          FeatureSpec("contract", "category", values=("Month-to-month", "Two year"))))
ROW = {
    "customer_id": "C1", "run_date": dt.date(2024, 1, 31), "churn_probability": 0.8123, "churn_prediction": True,
    "risk_band": "high", "rank": 4, "revenue_at_risk": 71.5, "shard": 0, "shard_count": 1,
    "model_name": "churn", "model_version": "7",
    "reasons": [{"feature": "contract", "contribution": 1.18}, {"feature": "tenure", "contribution": 0.4}],
}


def explained(probability: float) -> Explanation:
    return Explanation("C1", probability, True, "high", -1.0, (Effect("contract", "Month-to-month", 1.18),))


def test_the_stored_row_reads_as_score_rank_reasons_and_what_the_table_does_not_keep() -> None:
    text = "\n".join(stored_lines(ROW, SCHEMA, 0.3, "churn explain C1 --date 2024-01-31 --full"))

    assert "customer C1 on 2024-01-31: churn probability 0.81 (likely to churn, high risk band)" in text
    assert "rank 4;" in text and "revenue at risk 71.50" in text and "model churn version 7" in text
    assert "+ contract strongly raises risk" in text and "+1.180" in text and "tenure raises risk" in text
    assert "keeps only the top 2 reasons, without the customer's values" in text and "0.30" in text
    assert text.endswith("for every feature with its value: churn explain C1 --date 2024-01-31 --full")


def test_a_row_below_the_reason_threshold_says_why_it_has_no_reasons_and_a_shards_rank_is_its_shards() -> None:
    row = {**ROW, "reasons": None, "churn_probability": 0.1, "churn_prediction": False, "shard": 2, "shard_count": 3}

    text = "\n".join(stored_lines(row, SCHEMA, 0.3))

    assert "not predicted to churn" in text and "rank 4 within shard 2 of 3" in text
    assert "no reasons stored" in text and "--full" not in text


def test_a_rejected_customer_is_told_each_failing_field_with_its_value_and_rule() -> None:
    errors = json.dumps([
        {"field": "tenure", "reason": "out_of_bounds", "value": -5, "min": 0.0, "max": 1200.0},
        {"field": "contract", "reason": "unknown_category", "value": "Weekly", "allowed": ["Month-to-month"]},
        {"field": "monthly_charges", "reason": "missing", "value": None},
    ])

    lines = rejected_lines("C9", "2024-01-31", [{"errors": errors}])

    assert lines[0] == "customer C9 on 2024-01-31: not scored, its record was rejected by validation"
    assert lines[1:4] == [
        '  tenure: out_of_bounds (value -5); must be between 0 and 1200',
        '  contract: unknown_category (value "Weekly"); allowed: Month-to-month',
        "  monthly_charges: missing",
    ]
    assert problem_text({"field": "x", "reason": "out_of_bounds", "value": 5, "min": 10}).endswith("at least 10")


def test_a_rescored_explanation_says_whether_it_is_the_one_behind_the_stored_score() -> None:
    same = comparison(ROW, explained(0.8123), "7")
    changed = comparison(ROW, explained(0.55), "7")
    other = comparison(ROW, explained(0.8123), "9")

    assert "same model (version 7) to the same probability" in same[0]
    assert "now gives 0.550" in changed[0] and "record changed" in changed[0]
    assert "scored by model version 7" in other[0] and "uses version 9" in other[0] and "--model-uri" in other[0]


def test_the_verdict_names_the_decision_and_band_only_when_known() -> None:
    assert verdict(0.25, None, None) == "churn probability 0.25"
    assert verdict(0.25, False, "medium") == "churn probability 0.25 (not predicted to churn, medium risk band)"
