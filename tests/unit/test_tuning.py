"""Early stopping, the cross-fit, the budgeted search and the oracle (issues 6 and 10)."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from churn import evaluation, generator, training, tuning
from churn.config import Budget
from churn.crossfit import CrossFit, cross_fit, folds
from churn.model import build_classifier, build_encoder, fit_classifier, labels, to_frame


def small(params, n=1_500, seed=4):
    table = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=n, seed=seed)))
    frame = to_frame(table, params.schema)
    return table, frame, labels(table, params.schema)


def searching(params, **values):
    """The session params with the search on and a small budget (values are dotted overrides)."""
    base = {"tuning.enabled": "true", "split.folds": "2", "n_estimators": "40"}
    return params.with_overrides({**base, **{k: str(v) for k, v in values.items()}})


def test_early_stopping_on_held_rows_keeps_fewer_trees_than_the_cap(params):
    capped = params.with_overrides({"n_estimators": "1000", "model.early_stopping_rounds": "20"})
    _, frame, y = small(capped)
    encoder = build_encoder(capped.schema, "native", "median")
    classifier = build_classifier(capped)
    x = encoder.fit_transform(frame)

    trees = fit_classifier(capped, classifier, x[:1200], y[:1200], x[1200:], y[1200:])

    assert 1 <= trees < 1000
    assert classifier.best_iteration_ == trees


def test_without_early_stopping_every_tree_is_kept(params):
    plain = params.with_overrides({"n_estimators": "25", "model.early_stopping_rounds": "0"})
    _, frame, y = small(plain, n=600)
    classifier = build_classifier(plain)
    encoded = build_encoder(plain.schema, "native", "median").fit_transform(frame)

    assert fit_classifier(plain, classifier, encoded[:500], y[:500], encoded[500:], y[500:]) == 25


def test_cross_fit_predicts_every_row_once_from_a_model_that_held_it_out(params):
    _, frame, y = small(params, n=1_000)

    fitted = cross_fit(params, frame, y)

    assert fitted.folds == params.split.folds == 5 and len(fitted.trees) == 5
    assert fitted.margin.shape == y.shape and np.isfinite(fitted.margin).all()
    held = np.concatenate([rows for _, rows in folds(params, y)])
    assert np.array_equal(np.sort(held), np.arange(y.size))
    assert fitted.tree_count == round(np.mean(fitted.trees))
    scores = fitted.scores()
    assert 0.6 < scores["roc_auc"] < 0.95 and 0.2 < scores["log_loss"] < 0.69
    assert fitted.loss("roc_auc") == pytest.approx(1 - scores["roc_auc"])


def test_search_stops_at_its_trial_budget(params):
    budget = searching(params, **{"tuning.max_trials": 3})
    _, frame, y = small(budget, n=800)

    found = tuning.search(budget, frame, y)

    assert len(found.trials) == 3
    chosen = next(t for t in found.trials if t["params"] == found.best)
    assert chosen["loss"] <= found.trials[0]["loss"]  # never worse than the defaults (trial 0)
    space = budget.tuning.space
    for trial in found.trials:
        assert set(trial["params"]) == set(space)
        assert space["num_leaves"]["low"] <= trial["params"]["num_leaves"] <= space["num_leaves"]["high"]


def test_the_shipped_defaults_are_the_first_trial(params):
    budget = searching(params, **{"tuning.max_trials": 1})
    _, frame, y = small(budget, n=800)

    found = tuning.search(budget, frame, y)

    hp = budget.hyperparameters
    assert found.trials[0]["params"] == {k: hp[k] for k in budget.tuning.space}


def test_search_stops_at_its_time_budget(params):
    budget = searching(params, **{"tuning.max_trials": 500, "tuning.patience": 500, "tuning.budget.base_seconds": 3,
                                  "tuning.budget.seconds_per_1k_rows": 0})
    _, frame, y = small(budget, n=800)

    found = tuning.search(budget, frame, y)

    assert found.budget_seconds == 3
    assert 1 <= len(found.trials) < 500
    started_after_budget = sum(t["seconds"] for t in found.trials[:-1])
    assert started_after_budget <= 3 + 1e-6  # no trial starts once the budget is spent


def test_search_stops_when_trials_stop_improving(params):
    budget = searching(params, **{"tuning.max_trials": 40, "tuning.patience": 2})
    _, frame, y = small(budget, n=600)

    found = tuning.search(budget, frame, y)

    best = min(range(len(found.trials)), key=lambda i: found.trials[i]["loss"])
    assert len(found.trials) < 40
    assert len(found.trials) - 1 - best <= 2


def test_a_winner_within_one_standard_error_of_the_defaults_does_not_replace_them():
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.25).astype(np.int8)
    signal = y + rng.normal(0, 1, y.size)
    defaults = CrossFit(y=y, margin=2 * signal - 2, trees=[50])
    lucky = CrossFit(y=y, margin=2 * signal - 2 + rng.normal(0, 0.05, y.size), trees=[50])
    better = CrossFit(y=y, margin=2 * (y + rng.normal(0, 0.6, y.size)) - 2, trees=[50])
    trials = [{"number": 0, "params": {"num_leaves": 7}, "loss": defaults.loss("log_loss")},
              {"number": 1, "params": {"num_leaves": 9}, "loss": min(lucky.loss("log_loss"),
                                                                       defaults.loss("log_loss") - 1e-6)},
              {"number": 2, "params": {"num_leaves": 31}, "loss": better.loss("log_loss")}]
    fits = {0: defaults, 1: lucky, 2: better}

    assert tuning.choose(trials[:2], fits, "log_loss")["number"] == 0
    assert tuning.choose(trials, fits, "log_loss")["number"] == 2
    assert tuning.choose(trials[:2], fits, "roc_auc")["number"] == 1  # plain minimum for ROC-AUC


def test_the_budget_grows_with_rows_up_to_its_cap():
    budget = Budget(base_seconds=20, seconds_per_1k_rows=12, max_seconds=900)
    assert budget.seconds(2_000) == 44
    assert budget.seconds(2_000) < budget.seconds(20_000) < budget.seconds(400_000) == 900


def test_a_search_whose_budget_ends_before_one_trial_falls_back_to_the_defaults(params, caplog):
    budget = searching(params, **{"tuning.budget.base_seconds": 0, "tuning.budget.seconds_per_1k_rows": 0})
    _, frame, y = small(budget, n=600)

    with caplog.at_level(logging.WARNING, logger="churn.tuning"):
        found = tuning.search(budget, frame, y)

    assert found.trials == [] and found.best == {}
    assert "ran out before one trial finished: the defaults are used" in found.fallback
    assert found.crossfit.folds == 2  # the defaults' own cross-fit, for calibration and the threshold
    assert any("fell back to the defaults" in r.getMessage() for r in caplog.records)


def test_search_off_cross_fits_the_defaults_only(params):
    _, frame, y = small(params, n=300)

    found = tuning.search(params, frame, y)

    assert found.trials == [] and found.best == {} and found.fallback == ""
    assert found.crossfit.folds == params.split.folds


def test_training_reports_cv_next_to_the_fitted_model(splits, outcome):
    assert outcome.cv["folds"] == 5
    assert abs(outcome.cv["roc_auc"] - outcome.valid_metrics["roc_auc"]) < 0.02
    assert outcome.model.best_iteration == round(outcome.cv["trees_mean"])


def test_oracle_scores_the_generators_true_probabilities(customers, outcome, splits, params):
    truth = dict(zip(customers.column("customer_id").to_pylist(), customers.column("true_probability").to_pylist()))
    y = labels(splits.test, params.schema)
    p_true = np.array([truth[c] for c in splits.test.column("customer_id").to_pylist()])

    best = evaluation.oracle(y, p_true)

    assert best["roc_auc"] == roc_auc_score(y, p_true)
    assert best["brier"] == brier_score_loss(y, p_true)
    model_metrics, _, _ = training.evaluate(outcome.model, splits.test)
    assert best["brier"] < model_metrics["brier"]  # nobody beats the truth on Brier by much, here not at all
