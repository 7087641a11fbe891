"""Reference profiles and PSI (churn.profile): drift is ~0 when nothing moved and grows with shift."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from churn.profile import ProfileCounter, build_profile, psi
from churn.schema import Schema

SCHEMA = Schema.from_dict(
    {
        "features": [
            {"name": "spend", "type": "float", "min": 0, "nullable": True},
            {"name": "calls", "type": "int", "min": 0},
            {"name": "plan", "type": "category", "values": ["basic", "pro", "team"]},
        ]
    }
)


def sample(n: int, seed: int, shift: float = 0.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features and scores; `shift` moves spend up, calls up and plans towards 'team'."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 30.0, n) * (1 + shift)
    spend[rng.random(n) < 0.05] = np.nan
    calls = rng.poisson(1.0 + 2 * shift, n).astype(np.float64)
    plan_p = np.array([0.5, 0.3, 0.2]) * (1 - shift) + np.array([0.1, 0.2, 0.7]) * shift
    plan = rng.choice(3, n, p=plan_p / plan_p.sum()).astype(np.float64)
    scores = np.clip(rng.beta(2, 5, n) + 0.3 * shift, 0, 1)
    return {"spend": spend, "calls": calls, "plan": plan}, scores


@pytest.fixture(scope="module")
def reference() -> dict:
    features, scores = sample(50_000, seed=1)
    return build_profile(SCHEMA, features, scores)


def drift(reference: dict, features: dict[str, np.ndarray], scores: np.ndarray) -> tuple[dict[str, float], float]:
    counter = ProfileCounter(SCHEMA, reference)
    counter.add(features, scores)
    return counter.psi()


def test_profile_is_json_and_shares_sum_to_one(reference: dict) -> None:
    assert json.loads(json.dumps(reference)) == reference
    for name, feature in reference["features"].items():
        assert sum(feature["shares"]) == pytest.approx(1.0), name
    assert sum(reference["score"]["shares"]) == pytest.approx(1.0)
    assert reference["features"]["plan"]["values"] == ["basic", "pro", "team"]
    # The last numeric bin holds the missing values (~5% of spend).
    assert reference["features"]["spend"]["shares"][-1] == pytest.approx(0.05, abs=0.01)
    assert len(reference["features"]["spend"]["edges"]) == 9


def test_psi_of_the_reference_data_against_itself_is_zero(reference: dict) -> None:
    features, scores = sample(50_000, seed=1)
    per_feature, score_psi = drift(reference, features, scores)
    assert all(value == pytest.approx(0.0, abs=1e-12) for value in per_feature.values())
    assert score_psi == pytest.approx(0.0, abs=1e-12)


def test_psi_is_near_zero_for_a_fresh_sample_of_the_same_distribution(reference: dict) -> None:
    per_feature, score_psi = drift(reference, *sample(20_000, seed=2))
    assert max(per_feature.values()) < 0.01
    assert score_psi < 0.01


def test_psi_grows_with_the_shift(reference: dict) -> None:
    values = [drift(reference, *sample(20_000, seed=3, shift=shift)) for shift in (0.0, 0.1, 0.3, 0.6)]
    for name in ("spend", "calls", "plan"):
        series = [per_feature[name] for per_feature, _ in values]
        assert series == sorted(series), (name, series)
        assert series[-1] > 10 * series[0]
    scores = [score for _, score in values]
    assert scores == sorted(scores)


def test_psi_is_above_02_for_a_clearly_shifted_feature_and_low_for_the_others(reference: dict) -> None:
    features, scores = sample(20_000, seed=4)
    features["spend"] = features["spend"] * 2.0
    per_feature, score_psi = drift(reference, features, scores)
    assert per_feature["spend"] > 0.2
    assert per_feature["calls"] < 0.01 and per_feature["plan"] < 0.01 and score_psi < 0.01


def test_more_missing_values_count_as_drift(reference: dict) -> None:
    features, scores = sample(20_000, seed=5)
    features["spend"][:8_000] = np.nan
    per_feature, _ = drift(reference, features, scores)
    assert per_feature["spend"] > 0.2


def test_counter_accumulated_over_chunks_equals_one_pass(reference: dict) -> None:
    features, scores = sample(30_001, seed=6, shift=0.2)
    whole = ProfileCounter(SCHEMA, reference)
    whole.add(features, scores)
    chunked = ProfileCounter(SCHEMA, reference)
    bounds = [0, 1, 7_000, 7_000, 19_999, 30_001]  # includes an empty chunk and a one-row chunk
    for start, stop in itertools.pairwise(bounds):
        chunked.add({k: v[start:stop] for k, v in features.items()}, scores[start:stop])
    assert chunked.rows == whole.rows == 30_001
    for name in whole.counts:
        assert np.array_equal(chunked.counts[name], whole.counts[name]), name
    assert np.array_equal(chunked.score_counts, whole.score_counts)
    assert chunked.psi() == whole.psi()


def test_psi_formula_on_known_shares() -> None:
    expected = [0.5, 0.5]
    actual = np.array([75.0, 25.0])
    value = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert psi(expected, actual) == pytest.approx(value)
    assert psi(expected, np.array([50.0, 50.0])) == 0.0


def test_psi_of_no_rows_is_zero_and_empty_bins_stay_finite() -> None:
    assert psi([0.2, 0.8], np.zeros(2)) == 0.0
    value = psi([0.0, 1.0], np.array([10.0, 0.0]))
    assert np.isfinite(value) and value > 1.0


def test_psi_of_a_nullable_category_against_itself_is_zero() -> None:
    schema = Schema.from_dict(
        {"features": [{"name": "plan", "type": "category", "values": ["a", "b", "c"], "nullable": True}]}
    )
    rng = np.random.default_rng(0)
    codes = rng.choice(3, 10_000).astype(np.float64)
    codes[:3_000] = np.nan
    scores = rng.random(10_000)
    reference = build_profile(schema, {"plan": codes}, scores)
    counter = ProfileCounter(schema, reference)
    counter.add({"plan": codes}, scores)
    assert counter.psi()[0]["plan"] == pytest.approx(0.0, abs=1e-9)


def test_profiles_saved_before_the_missing_category_bin_still_measure_drift() -> None:
    schema = Schema.from_dict({"features": [{"name": "plan", "type": "category", "values": ["a", "b"]}]})
    codes = np.array([0.0, 0.0, 1.0, 1.0])
    old = build_profile(schema, {"plan": codes}, np.array([0.1, 0.2, 0.3, 0.4]))
    old["features"]["plan"]["shares"] = old["features"]["plan"]["shares"][:-1]  # the old shape
    counter = ProfileCounter(schema, old)

    counter.add({"plan": codes}, np.array([0.1, 0.2, 0.3, 0.4]))

    features, _ = counter.psi()
    assert features["plan"] == pytest.approx(0.0, abs=1e-9)
    assert len(old["features"]["plan"]["shares"]) == 2  # the caller's profile is not modified
