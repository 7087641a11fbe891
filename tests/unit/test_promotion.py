"""Champion/challenger promotion rule (churn.promotion.decide)."""

from __future__ import annotations

import json

import pytest

from churn.params import load_params
from churn.promotion import Decision, Rule, decide

RULE = Rule(metric="f1", min_improvement=0.0, roc_auc_tolerance=0.01)


def scores(f1: float, roc_auc: float = 0.85) -> dict[str, float]:
    return {"f1": f1, "roc_auc": roc_auc, "precision": 0.5, "recall": 0.5}


def test_first_model_is_promoted() -> None:
    decision = decide(scores(0.10, roc_auc=0.50), None, RULE)
    assert decision.promote
    assert decision.champion is None and decision.champion_roc_auc is None
    assert decision.challenger == 0.10
    assert "no production model" in decision.reason


def test_better_f1_is_promoted() -> None:
    decision = decide(scores(0.62), scores(0.60), RULE)
    assert decision.promote
    assert (decision.challenger, decision.champion) == (0.62, 0.60)
    assert "beats" in decision.reason


@pytest.mark.parametrize("challenger_f1", [0.60, 0.59, 0.0])
def test_equal_or_worse_f1_is_not_promoted(challenger_f1: float) -> None:
    decision = decide(scores(challenger_f1), scores(0.60), RULE)
    assert not decision.promote
    assert "does not beat" in decision.reason


@pytest.mark.parametrize(
    ("challenger_f1", "promote"),
    [(0.62, False), (0.6199, False), (0.6201, True), (0.65, True)],
)
def test_margin_is_respected(challenger_f1: float, promote: bool) -> None:
    rule = Rule(metric="f1", min_improvement=0.02, roc_auc_tolerance=0.01)
    decision = decide(scores(challenger_f1), scores(0.60), rule)
    assert decision.promote is promote
    assert decision.margin == 0.02


def test_roc_auc_guardrail_blocks_an_f1_win_with_a_collapsed_auc() -> None:
    decision = decide(scores(0.70, roc_auc=0.55), scores(0.60, roc_auc=0.85), RULE)
    assert not decision.promote
    assert "roc_auc" in decision.reason
    assert (decision.challenger_roc_auc, decision.champion_roc_auc) == (0.55, 0.85)


@pytest.mark.parametrize(("challenger_auc", "promote"), [(0.845, True), (0.84, True), (0.835, False)])
def test_roc_auc_may_drop_by_at_most_the_tolerance(challenger_auc: float, promote: bool) -> None:
    decision = decide(scores(0.70, roc_auc=challenger_auc), scores(0.60, roc_auc=0.85), RULE)
    assert decision.promote is promote


def test_a_shuffled_label_challenger_is_never_promoted_over_a_real_champion() -> None:
    # F1 of "everyone churns" on a 25% churn rate is 0.4: a real model beats it.
    decision = decide(scores(0.40, roc_auc=0.50), scores(0.62, roc_auc=0.84), RULE)
    assert not decision.promote


def test_rule_follows_the_promotion_section_of_params() -> None:
    params = load_params()
    rule = Rule.from_params(params.section("promotion"))
    assert rule == Rule(metric="f1", min_improvement=0.0, roc_auc_tolerance=0.01)
    assert Rule.from_params({"metric": "pr_auc", "min_improvement": "0.05"}) == Rule("pr_auc", 0.05, 0.01)


def test_rule_can_judge_on_another_metric() -> None:
    rule = Rule(metric="pr_auc", min_improvement=0.0, roc_auc_tolerance=0.01)
    champion = {"f1": 0.9, "pr_auc": 0.5, "roc_auc": 0.8}
    challenger = {"f1": 0.1, "pr_auc": 0.6, "roc_auc": 0.8}
    decision = decide(challenger, champion, rule)
    assert decision.promote and decision.metric == "pr_auc"


def test_decision_serialises_both_scores_margin_and_verdict() -> None:
    decision = decide(scores(0.62, roc_auc=0.86), scores(0.60, roc_auc=0.85), RULE)
    as_dict = json.loads(json.dumps(decision.to_dict()))
    assert as_dict == {
        "promote": True,
        "reason": decision.reason,
        "metric": "f1",
        "challenger": 0.62,
        "champion": 0.60,
        "margin": 0.0,
        "challenger_roc_auc": 0.86,
        "champion_roc_auc": 0.85,
    }
    assert Decision(**as_dict) == decision
