"""Champion/challenger promotion rule (churn.promotion.decide): same test rows, paired bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from churn.errors import ConfigError
from churn.params import Params, load_params
from churn.promotion import Decision, Predictions, Rule, decide, paired_bootstrap

RULE = Rule(metric="f1", min_improvement=0.0, roc_auc_tolerance=0.01, bootstrap_samples=500)


def labelled(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels (25% churners) and a latent risk that separates them."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(np.int8)
    return y, y * 1.0 + rng.normal(0, 1, n)


def model(y: np.ndarray, risk: np.ndarray, noise: float, seed: int, threshold: float = 0.5) -> Predictions:
    """A model whose score is the risk plus `noise` (more noise, worse model)."""
    rng = np.random.default_rng(seed)
    score = risk + rng.normal(0, noise, y.size)
    return Predictions(y, 1 / (1 + np.exp(-(score - 1.0) * 2)), threshold)


def test_first_model_is_promoted() -> None:
    y, risk = labelled(200)
    decision = decide(model(y, risk, 3.0, 1), None, RULE)
    assert decision.promote
    assert decision.champion is None and decision.champion_roc_auc is None and decision.delta is None
    assert "no production model" in decision.reason


def test_clearly_better_challenger_is_promoted_with_an_interval_above_zero() -> None:
    y, risk = labelled(4_000)
    champion, challenger = model(y, risk, 1.5, 1), model(y, risk, 0.2, 2)

    decision = decide(challenger, champion, RULE)

    assert decision.promote, decision.reason
    assert decision.delta == pytest.approx(decision.challenger - decision.champion)
    assert decision.delta_low is not None and decision.delta_high is not None
    assert 0 < decision.delta_low < decision.delta < decision.delta_high
    assert decision.test_rows == 4_000 and decision.confidence == 0.95
    assert "beats" in decision.reason and "interval" in decision.reason


def test_the_same_model_is_not_promoted_over_itself() -> None:
    y, risk = labelled(2_000)
    same = model(y, risk, 0.5, 1)
    decision = decide(same, same, RULE)
    assert not decision.promote
    assert decision.delta == 0 and decision.delta_low == decision.delta_high == 0
    assert "does not beat" in decision.reason


def test_worse_challenger_is_not_promoted() -> None:
    y, risk = labelled(2_000)
    decision = decide(model(y, risk, 1.5, 2), model(y, risk, 0.2, 1), RULE)
    assert not decision.promote and decision.delta < 0


def test_a_win_on_a_small_test_set_is_a_coin_toss_and_not_promoted() -> None:
    """Issue 14: a challenger that beats the champion on a few rows is not promoted;
    the same two models on many rows are told apart."""
    y, risk = labelled(60, seed=1)
    champion, challenger = model(y, risk, 0.8, 1), model(y, risk, 0.6, 2)
    small = decide(challenger, champion, RULE)
    assert small.delta > 0 and small.delta_low is not None and small.delta_low <= 0
    assert not small.promote
    assert "too close to call" in small.reason

    y, risk = labelled(20_000, seed=1)
    large = decide(model(y, risk, 0.6, 2), model(y, risk, 0.8, 1), RULE)
    assert large.promote and large.delta_low is not None and large.delta_low > 0


def test_the_eight_row_test_set_of_issue_14_cannot_promote() -> None:
    """A challenger with F1 0.22 against a champion with 0.00 on 8 rows: not a decision."""
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=np.int8)
    champion = Predictions(y, np.zeros(8), 0.5)  # flags no one: F1 0
    challenger = Predictions(y, np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9]), 0.5)
    decision = decide(challenger, champion, RULE)
    assert decision.challenger == pytest.approx(0.2222, abs=1e-4) and decision.champion == 0.0
    assert not decision.promote and "too close to call" in decision.reason


@pytest.mark.parametrize(("margin", "promote"), [(0.0, True), (0.5, False)])
def test_the_difference_must_exceed_min_improvement(margin: float, promote: bool) -> None:
    y, risk = labelled(4_000)
    rule = Rule(metric="f1", min_improvement=margin, roc_auc_tolerance=0.01, bootstrap_samples=300)
    decision = decide(model(y, risk, 0.2, 2), model(y, risk, 1.5, 1), rule)
    assert 0 < decision.delta < 0.5
    assert decision.promote is promote
    assert decision.margin == margin


def test_roc_auc_guardrail_blocks_an_f1_win_with_a_collapsed_auc() -> None:
    y, risk = labelled(4_000)
    champion = model(y, risk, 0.2, 1, threshold=0.97)  # ranks well, but its cut flags almost no one
    # The challenger flags the right group, but ranks nothing within it: two probability levels only.
    flagged = model(y, risk, 0.2, 1).probability >= 0.5
    challenger = Predictions(y, np.where(flagged, 0.6, 0.4), 0.5)

    decision = decide(challenger, champion, RULE)

    assert decision.delta > 0.1 and decision.delta_low is not None and decision.delta_low > 0
    assert not decision.promote
    assert "roc_auc" in decision.reason
    assert decision.champion_roc_auc is not None and decision.challenger_roc_auc < decision.champion_roc_auc - 0.01


def test_a_shuffled_label_challenger_is_never_promoted_over_a_real_champion() -> None:
    y, risk = labelled(2_000)
    rng = np.random.default_rng(5)
    guessing = Predictions(y, rng.random(y.size), 0.0)  # "everyone churns": F1 about 0.4
    decision = decide(guessing, model(y, risk, 0.3, 1), RULE)
    assert not decision.promote


def test_champion_and_challenger_must_be_judged_on_the_same_rows() -> None:
    y, risk = labelled(100)
    other = Predictions(y[::-1].copy(), np.full(100, 0.5), 0.5)
    with pytest.raises(ValueError, match="same test rows"):
        decide(model(y, risk, 0.5, 1), other, RULE)


def test_paired_bootstrap_is_reproducible_and_covers_the_difference() -> None:
    y, risk = labelled(1_000)
    a, b = model(y, risk, 0.3, 1), model(y, risk, 0.8, 2)
    first = paired_bootstrap(a, b, "f1", 400, 0.9, seed=7)
    assert first == paired_bootstrap(a, b, "f1", 400, 0.9, seed=7)
    assert first.low <= first.delta <= first.high
    wider = paired_bootstrap(a, b, "f1", 400, 0.99, seed=7)
    assert wider.low <= first.low and wider.high >= first.high


def test_rule_follows_the_promotion_section_of_params() -> None:
    params = load_params()
    assert params.promotion == Rule(metric="f1", min_improvement=0.0, roc_auc_tolerance=0.01, confidence=0.95,
                                    bootstrap_samples=1000, apply=False)
    raw = dict(params.raw, promotion={"metric": "pr_auc", "min_improvement": 0.05})
    assert Params.from_dict(raw).promotion.metric == "pr_auc"
    assert Params.from_dict(raw).promotion.min_improvement == 0.05


def test_an_unknown_promotion_metric_is_a_config_error_naming_the_key() -> None:
    raw = dict(load_params().raw, promotion={"metric": "accuracy"})
    with pytest.raises(ConfigError, match="promotion.metric"):
        Params.from_dict(raw)


def test_rule_can_judge_on_another_metric() -> None:
    y, risk = labelled(4_000)
    rule = Rule(metric="pr_auc", bootstrap_samples=200)
    decision = decide(model(y, risk, 0.2, 2), model(y, risk, 1.5, 1), rule)
    assert decision.promote and decision.metric == "pr_auc"
    assert decision.delta_low is not None and decision.delta_low > 0


def test_decision_serialises_scores_interval_and_verdict() -> None:
    y, risk = labelled(2_000)
    decision = decide(model(y, risk, 0.2, 2), model(y, risk, 1.5, 1), RULE)
    as_dict = json.loads(json.dumps(decision.to_dict()))
    assert {"promote", "reason", "metric", "challenger", "champion", "margin", "challenger_roc_auc",
            "champion_roc_auc", "delta", "delta_low", "delta_high", "confidence", "test_rows"} == set(as_dict)
    assert Decision(**as_dict) == decision
