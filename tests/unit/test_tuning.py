"""Early stopping, the budgeted search, cross-validation and the oracle (issue 6)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from sklearn.metrics import brier_score_loss, roc_auc_score

from churn import evaluation, generator, training, tuning
from churn.model import build_classifier, build_encoder, fit_classifier, labels, to_frame


def small(params, n=1_500, seed=4):
    table = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=n, seed=seed)))
    frame = to_frame(table, params.schema)
    return table, frame, labels(table, params.schema)


def test_early_stopping_keeps_fewer_trees_than_the_cap_on_small_data(params):
    capped = params.with_overrides({"n_estimators": "1000", "model.early_stopping_rounds": "20"})
    _, frame, y = small(capped)
    encoder = build_encoder(capped.schema, "native", "median")
    classifier = build_classifier(capped)

    trees = fit_classifier(capped, classifier, encoder.fit_transform(frame), y)

    assert 1 <= trees < 1000
    assert classifier.best_iteration_ == trees


def test_without_early_stopping_every_tree_is_kept(params):
    plain = params.with_overrides({"n_estimators": "25", "model.early_stopping_rounds": "0"})
    _, frame, y = small(plain, n=600)
    classifier = build_classifier(plain)

    encoded = build_encoder(plain.schema, "native", "median").fit_transform(frame)

    assert fit_classifier(plain, classifier, encoded, y) == 25


def test_search_stops_at_its_trial_budget(params):
    budget = params.with_overrides({"tuning.enabled": "true", "tuning.max_trials": "3", "tuning.cv_folds": "2",
                                    "n_estimators": "40"})
    _, frame, y = small(budget, n=800)

    found = tuning.search(budget, frame, y)

    assert len(found.trials) == 3
    assert found.best == max(found.trials, key=lambda t: t["cv"]["roc_auc_mean"])["params"]
    space = budget.section("tuning")["space"]
    for trial in found.trials:
        assert set(trial["params"]) == set(space)
        assert space["num_leaves"]["low"] <= trial["params"]["num_leaves"] <= space["num_leaves"]["high"]


def test_search_stops_at_its_time_budget(params):
    budget = params.with_overrides({"tuning.enabled": "true", "tuning.max_trials": "500",
                                    "tuning.timeout_seconds": "0.5", "tuning.cv_folds": "2", "n_estimators": "40"})
    _, frame, y = small(budget, n=800)

    found = tuning.search(budget, frame, y)

    assert 1 <= len(found.trials) < 500
    started_after_budget = sum(t["seconds"] for t in found.trials[:-1])
    assert started_after_budget <= 0.5 + 1e-6  # no trial starts once the budget is spent


def test_search_is_off_by_default_and_costs_nothing(params):
    _, frame, y = small(params, n=300)

    found = tuning.search(params, frame, y)

    assert found.trials == [] and found.best == {} and found.best_cv is None


def test_cross_validation_reports_a_mean_and_spread_over_folds(params):
    cv_params = params.with_overrides({"tuning.cv_folds": "3"})
    _, frame, y = small(cv_params)

    result = tuning.cross_validate(cv_params, frame, y)

    assert result.folds == 3
    assert 0.6 < result.roc_auc_mean < 0.95 and 0 < result.roc_auc_std < 0.1
    assert 0 < result.brier_mean < 0.25


def test_training_reports_cv_next_to_the_fitted_model(splits, params):
    outcome = training.train(params.with_overrides({"tuning.cv_folds": "2"}), splits.train, splits.valid)

    assert outcome.cv is not None and outcome.cv.folds == 2
    assert abs(outcome.cv.roc_auc_mean - outcome.valid_metrics["roc_auc"]) < 0.1


def test_oracle_scores_the_generators_true_probabilities(customers, outcome, splits, params):
    truth = dict(zip(customers.column("customer_id").to_pylist(), customers.column("true_probability").to_pylist()))
    y = labels(splits.test, params.schema)
    p_true = np.array([truth[c] for c in splits.test.column("customer_id").to_pylist()])

    best = evaluation.oracle(y, p_true)

    assert best["roc_auc"] == roc_auc_score(y, p_true)
    assert best["brier"] == brier_score_loss(y, p_true)
    model_metrics, _, _ = training.evaluate(outcome.model, splits.test)
    assert best["brier"] < model_metrics["brier"]  # nobody beats the truth on Brier by much, here not at all
