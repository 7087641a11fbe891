"""Training core (churn.training, churn.model, churn.compiled) on the session's small model.

Fixtures from tests/conftest.py: `params` (repo params, 60 trees), `customers` (5,000
clean generated customers), `splits`, `outcome` (the trained model).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.metrics import brier_score_loss, f1_score

from churn import crossfit as crossfit_module
from churn import model as model_module
from churn import training
from churn.compiled import CompiledModel
from churn.errors import InvalidInput
from churn.model import best_f1_threshold, labels, to_frame
from churn.params import Params
from churn.validation import validate


@pytest.fixture(scope="module")
def clean(customers: pa.Table, params: Params) -> pa.Table:
    return validate(customers, params.schema, require_label=True).clean


@pytest.fixture(scope="module")
def compiled(outcome: training.TrainingOutcome) -> CompiledModel:
    return CompiledModel.from_trained(outcome.model)


def fast(params: Params, **hyperparameters: Any) -> Params:
    """The session params for the extra fits here: no search, and one LightGBM thread, because
    two OpenMP threads on a busy 2-core machine make a 0.5 s fit take 20 s."""
    raw = copy.deepcopy(params.raw)
    raw.setdefault("tuning", {}).update({"enabled": False})
    raw["model"]["n_jobs"] = 1
    raw["model"]["hyperparameters"].update(hyperparameters)
    return Params.from_dict(raw)


def ids(table: pa.Table) -> list[str]:
    return table.column("customer_id").to_pylist()


# -- the split ---------------------------------------------------------------------------------


def test_split_is_disjoint_and_covers_all_rows(clean: pa.Table, splits: training.Splits) -> None:
    train, valid, test = ids(splits.train), ids(splits.valid), ids(splits.test)
    assert len(set(train)) == len(train)
    assert not set(train) & set(valid) and not set(train) & set(test) and not set(valid) & set(test)
    assert sorted(train + valid + test) == sorted(ids(clean))
    assert len(train) + len(valid) + len(test) == clean.num_rows


def test_split_sizes_follow_params(clean: pa.Table, splits: training.Splits) -> None:
    n = clean.num_rows
    assert splits.test.num_rows == pytest.approx(0.2 * n, abs=2)
    assert splits.valid.num_rows == pytest.approx(0.2 * n, abs=2)
    assert splits.train.num_rows == pytest.approx(0.6 * n, abs=3)


def test_split_is_stratified(clean: pa.Table, splits: training.Splits, params: Params) -> None:
    overall = labels(clean, params.schema).mean()
    for part in (splits.train, splits.valid, splits.test):
        assert labels(part, params.schema).mean() == pytest.approx(overall, abs=0.005)


def test_split_is_reproducible_and_only_depends_on_labels_and_seed(
    clean: pa.Table, splits: training.Splits, params: Params
) -> None:
    again = training.split(clean, params)
    assert ids(again.train) == ids(splits.train) and ids(again.test) == ids(splits.test)
    other_seed = training.split(clean, params.with_overrides({"split.seed": "7"}))
    assert ids(other_seed.test) != ids(splits.test)


def test_split_needs_both_classes(clean: pa.Table, params: Params) -> None:
    stayers = clean.filter(pc.invert(clean.column("churned")))
    with pytest.raises(InvalidInput, match=f"both classes; got 0 churned and {stayers.num_rows} retained"):
        training.split(stayers, params)


@pytest.mark.parametrize("rows", [10, 150])
def test_too_few_rows_is_bad_input_naming_the_count(clean: pa.Table, params: Params, rows: int) -> None:
    with pytest.raises(InvalidInput, match=f"at least 200 labelled rows .*got {rows}$"):
        training.split(clean.slice(0, rows), params)


def test_too_few_churners_for_the_test_part_and_every_fold_is_bad_input(clean: pa.Table, params: Params) -> None:
    churners = clean.filter(clean.column("churned")).slice(0, 40)
    stayers = clean.filter(pc.invert(clean.column("churned"))).slice(0, 400)
    with pytest.raises(InvalidInput, match="at least 63 churned rows .*5 folds.*got 40"):
        training.split(pa.concat_tables([churners, stayers]), params)


def test_fewer_rows_than_folds_is_bad_input(clean: pa.Table, params: Params) -> None:
    tiny = params.with_overrides({"split.min_rows": "1", "split.min_class_rows": "1"})
    with pytest.raises(InvalidInput, match="churned rows .*5 folds.*got [0-4]$|retained rows .*got [0-4]$"):
        training.train(tiny, clean.slice(0, 4), clean.slice(4, 2))


def test_bad_training_data_maps_to_exit_code_3() -> None:
    from churn.errors import EXIT_BAD_INPUT, mapping_for

    assert mapping_for(InvalidInput("training needs both classes")).exit_code == EXIT_BAD_INPUT


def test_separate_validation_table_is_used_as_is(clean: pa.Table, params: Params) -> None:
    valid = clean.slice(0, 500)
    rest = clean.slice(500)
    result = training.split(rest, params, valid=valid)
    assert result.valid is valid
    assert sorted(ids(result.train) + ids(result.test)) == sorted(ids(rest))


# -- no test rows in the threshold or the calibrator --------------------------------------------


def test_calibrator_and_threshold_are_fitted_on_out_of_fold_predictions_of_non_test_rows_only(
    monkeypatch: pytest.MonkeyPatch, splits: training.Splits, params: Params
) -> None:
    calibrator_calls: list[tuple[np.ndarray, np.ndarray]] = []
    threshold_calls: list[np.ndarray] = []
    fit_rows: list[int] = []
    original_calibrator = model_module.fit_calibrator
    original_threshold = model_module.best_f1_threshold
    original_fit = model_module.fit_classifier

    def spy_calibrator(margin: np.ndarray, y: np.ndarray, method: str) -> Any:
        calibrator_calls.append((np.asarray(margin).copy(), np.asarray(y).copy()))
        return original_calibrator(margin, y, method)

    def spy_threshold(y_true: np.ndarray, probability: np.ndarray) -> float:
        threshold_calls.append(np.asarray(y_true).copy())
        return original_threshold(y_true, probability)

    def spy_fit(params: Params, classifier: Any, x: np.ndarray, y: np.ndarray, *args: Any) -> int:
        fit_rows.append(len(y) + (len(args[1]) if len(args) > 1 and args[1] is not None else 0))
        return original_fit(params, classifier, x, y, *args)

    monkeypatch.setattr(model_module, "fit_calibrator", spy_calibrator)
    monkeypatch.setattr(model_module, "best_f1_threshold", spy_threshold)
    monkeypatch.setattr(crossfit_module, "fit_classifier", spy_fit)
    outcome = training.train(fast(params, n_estimators=5), splits.train, splits.valid)

    non_test = training.non_test(splits.train, splits.valid)
    y_non_test = labels(non_test, params.schema)
    n_test = splits.test.num_rows
    # One calibrator and one threshold, both on exactly the non-test rows' labels...
    assert len(calibrator_calls) == 1 and len(threshold_calls) == 1
    assert np.array_equal(calibrator_calls[0][1], y_non_test)
    assert np.array_equal(threshold_calls[0], y_non_test)
    # ...and on out-of-fold margins: each of the 5 fold models saw the other folds plus its stopping fold.
    assert np.array_equal(calibrator_calls[0][0], outcome.search.crossfit.margin)
    assert fit_rows == [non_test.num_rows] * params.split.folds
    assert non_test.num_rows + n_test == splits.train.num_rows + splits.valid.num_rows + n_test


def test_out_of_fold_margins_come_from_models_that_never_saw_the_row(
    monkeypatch: pytest.MonkeyPatch, splits: training.Splits, params: Params
) -> None:
    """Flip the labels of one fold (same folds, no early stopping): that fold's margins do not move,
    every other fold's do."""
    quick = fast(params, n_estimators=10).with_overrides({"model.early_stopping_rounds": "0"})
    rows = training.non_test(splits.train, splits.valid)
    frame, y = to_frame(rows, params.schema), labels(rows, params.schema)
    fixed = crossfit_module.folds(quick, y)
    monkeypatch.setattr(crossfit_module, "folds", lambda params, y: fixed)
    first = crossfit_module.cross_fit(quick, frame, y)
    held = fixed[0][1]
    flipped = y.copy()
    flipped[held] = 1 - flipped[held]

    again = crossfit_module.cross_fit(quick, frame, flipped)

    np.testing.assert_array_equal(again.margin[held], first.margin[held])
    others = np.setdiff1d(np.arange(len(y)), held)
    assert not np.allclose(again.margin[others], first.margin[others])


def test_changing_test_rows_changes_neither_threshold_nor_calibration(
    clean: pa.Table, splits: training.Splits, params: Params
) -> None:
    """Scramble every feature of the test rows: train/valid, threshold and calibration stay put."""
    test_ids = set(ids(splits.test))
    is_test = np.array([i in test_ids for i in ids(clean)])
    rng = np.random.default_rng(0)
    columns = {}
    for name in clean.column_names:
        column = clean.column(name).combine_chunks()
        if name in ("customer_id", "churned"):
            columns[name] = column
            continue
        order = np.arange(clean.num_rows)
        order[is_test] = rng.permutation(order[is_test])
        columns[name] = column.take(pa.array(order))
    scrambled = pa.table(columns)
    again = training.split(scrambled, params)
    assert again.train.equals(splits.train) and again.valid.equals(splits.valid)
    assert not again.test.equals(splits.test)

    quick = fast(params, n_estimators=20)
    first = training.train(quick, splits.train, splits.valid).model
    refit = training.train(quick, again.train, again.valid).model
    assert refit.threshold == first.threshold
    valid_frame = to_frame(splits.valid, params.schema)
    assert np.array_equal(refit.predict_proba(valid_frame), first.predict_proba(valid_frame))


def test_evaluating_on_test_rows_does_not_change_the_model(
    splits: training.Splits, outcome: training.TrainingOutcome, params: Params
) -> None:
    model = outcome.model
    valid_frame = to_frame(splits.valid, params.schema)
    before = (model.threshold, model.predict_proba(valid_frame))
    y = labels(splits.test, params.schema)
    shuffled = splits.test.set_column(
        splits.test.column_names.index("churned"),
        "churned",
        pa.array(np.random.default_rng(1).permutation(y).astype(bool)),
    )
    first, _, _ = training.evaluate(model, splits.test)
    second, _, _ = training.evaluate(model, shuffled)
    assert first["f1"] != second["f1"]
    assert model.threshold == before[0] and first["threshold"] == second["threshold"] == before[0]
    assert np.array_equal(model.predict_proba(valid_frame), before[1])


# -- threshold and calibration -------------------------------------------------------------------


def test_threshold_maximises_f1_on_the_out_of_fold_predictions(
    outcome: training.TrainingOutcome, params: Params
) -> None:
    assert outcome.search is not None
    y = outcome.search.crossfit.y
    probability = model_module.out_of_fold_probability(outcome.model.pipeline, outcome.search.crossfit)
    chosen = f1_score(y, probability >= outcome.model.threshold)
    best_other = max(f1_score(y, probability >= t) for t in np.unique(probability))
    assert chosen >= best_other - 1e-12
    assert outcome.valid_metrics["f1"] == pytest.approx(chosen)
    assert outcome.valid_metrics["rows"] == y.size
    assert 0.0 < outcome.model.threshold < 1.0


def test_best_f1_threshold_on_a_hand_made_example() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.3, 0.35, 0.8, 0.6, 0.7])
    # cuts: >=0.35 -> tp3 fp1 (F1 0.857); >=0.7 -> tp2 fp0 fn1 (0.8); >=0.6 -> tp2 fp1 fn1 (0.667)
    assert best_f1_threshold(y, p) == pytest.approx(0.35)


def test_calibration_fixes_the_probabilities_of_a_class_weighted_model_on_test_rows(
    splits: training.Splits, params: Params
) -> None:
    """Balanced class weights inflate raw probabilities; the out-of-fold calibrator brings them back."""
    balanced = fast(params, n_estimators=30, class_weight="balanced")
    model = training.train(balanced, splits.train, splits.valid).model
    assert model.calibration == params.calibration.method != "none"
    frame, y = to_frame(splits.test, params.schema), labels(splits.test, params.schema)
    calibrated = model.predict_proba(frame)
    uncalibrated = model.predict_uncalibrated(frame)
    assert brier_score_loss(y, calibrated) < brier_score_loss(y, uncalibrated) - 0.01
    assert abs(calibrated.mean() - y.mean()) < 0.03 < uncalibrated.mean() - y.mean()


def test_evaluate_reports_brier_before_and_after_calibration(
    splits: training.Splits, outcome: training.TrainingOutcome, params: Params
) -> None:
    result, probability, uncalibrated = training.evaluate(outcome.model, splits.test)
    y = labels(splits.test, params.schema)
    assert result["brier"] == pytest.approx(brier_score_loss(y, probability))
    assert result["brier_uncalibrated"] == pytest.approx(brier_score_loss(y, uncalibrated))
    assert not np.array_equal(probability, uncalibrated)


def test_model_separates_churners_on_test_rows(splits: training.Splits, outcome: training.TrainingOutcome) -> None:
    result, probability, _ = training.evaluate(outcome.model, splits.test)
    assert result["roc_auc"] > 0.75
    assert result["rows"] == splits.test.num_rows == probability.size
    assert np.all((probability >= 0) & (probability <= 1))


# -- the compiled path ------------------------------------------------------------------------------


def _with_missing_total_charges(table: pa.Table) -> pa.Table:
    index = table.column_names.index("total_charges")
    column = table.column("total_charges").combine_chunks()
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[::3] = True
    values = column.to_numpy(zero_copy_only=False)
    return table.set_column(index, "total_charges", pa.array(values, mask=mask | np.isnan(values)))


def test_compiled_probability_equals_pipeline_on_test_rows_with_missing_total_charges(
    splits: training.Splits, outcome: training.TrainingOutcome, compiled: CompiledModel, params: Params
) -> None:
    naturally_missing = splits.test.column("total_charges").null_count
    table = _with_missing_total_charges(splits.test)
    assert table.column("total_charges").null_count > max(naturally_missing, 100)
    expected = outcome.model.predict_proba(to_frame(table, params.schema))
    got = compiled.probability(compiled.matrix(table))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # and the untouched test rows, including their own missing total_charges
    np.testing.assert_allclose(
        compiled.probability(compiled.matrix(splits.test)),
        outcome.model.predict_proba(to_frame(splits.test, params.schema)),
        rtol=0,
        atol=1e-9,
    )


def test_compiled_matrix_imputes_missing_numbers_with_the_fitted_statistic(
    splits: training.Splits, compiled: CompiledModel, outcome: training.TrainingOutcome
) -> None:
    table = _with_missing_total_charges(splits.test)
    x = compiled.matrix(table)
    column = compiled.feature_order.index("total_charges")
    missing = np.asarray(table.column("total_charges").is_null().to_numpy(zero_copy_only=False))
    imputer = outcome.model.pipeline.named_steps["encode"].named_transformers_["numeric"]
    median = imputer.statistics_[[s.name for s in outcome.model.schema.numeric].index("total_charges")]
    assert np.all(x[missing, column] == median)
    assert not np.isnan(x[:, : len(outcome.model.schema.numeric)]).any()


def test_compiled_sigmoid_and_uncalibrated_paths_equal_the_pipeline(splits: training.Splits, params: Params) -> None:
    frame_test = to_frame(splits.test, params.schema)
    for method in ("sigmoid", "none"):
        raw = copy.deepcopy(fast(params, n_estimators=15).raw)
        raw["calibration"]["method"] = method
        variant = Params.from_dict(raw)
        trained = training.train(variant, splits.train, splits.valid).model
        compiled = CompiledModel.from_trained(trained)
        np.testing.assert_allclose(
            compiled.probability(compiled.matrix(splits.test)), trained.predict_proba(frame_test), rtol=0, atol=1e-9
        )


def test_contributions_plus_bias_equal_the_raw_margin(splits: training.Splits, compiled: CompiledModel) -> None:
    x = compiled.matrix(_with_missing_total_charges(splits.test))
    contributions = compiled.contributions(x)
    assert contributions.shape == (x.shape[0], len(compiled.feature_order) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), compiled.margin(x), rtol=0, atol=1e-9)


def test_top_reasons_are_the_largest_absolute_contributions(splits: training.Splits, compiled: CompiledModel) -> None:
    x = compiled.matrix(splits.test.slice(0, 50))
    order, values = compiled.top_reasons(x, 3)
    contributions = compiled.contributions(x)[:, :-1]
    assert order.shape == values.shape == (50, 3)
    np.testing.assert_array_equal(values, np.take_along_axis(contributions, order, axis=1))
    third = np.abs(values[:, -1])
    others = np.abs(contributions)
    for row in range(50):
        rest = np.delete(others[row], order[row])
        assert np.all(rest <= third[row] + 1e-15)
        assert np.all(np.diff(np.abs(values[row])) <= 1e-15)


# -- a model that learned nothing ---------------------------------------------------------------------


def test_model_trained_on_shuffled_labels_has_roc_auc_near_half(clean: pa.Table, params: Params) -> None:
    y = labels(clean, params.schema).astype(bool)
    shuffled = clean.set_column(
        clean.column_names.index("churned"), "churned", pa.array(np.random.default_rng(3).permutation(y))
    )
    quick = fast(params)
    parts = training.split(shuffled, quick)
    outcome = training.train(quick, parts.train, parts.valid)
    result, _, _ = training.evaluate(outcome.model, parts.test)
    assert abs(result["roc_auc"] - 0.5) < 0.07


# -- other things training returns ----------------------------------------------------------------


def test_outcome_carries_importance_per_feature_and_a_reference_profile(
    outcome: training.TrainingOutcome, params: Params
) -> None:
    assert set(outcome.importance) == set(params.schema.feature_names)
    assert sum(outcome.importance.values()) > 0
    assert max(outcome.importance, key=outcome.importance.__getitem__) in {
        "tenure",
        "contract",
        "support_calls",
        "monthly_charges",
    }
    assert set(outcome.reference_profile["features"]) == set(params.schema.feature_names)
    assert 1 <= outcome.model.best_iteration <= 60


def test_a_schema_with_other_columns_trains_and_scores(params: Params, other_columns_schema: dict) -> None:
    raw = copy.deepcopy(fast(params, n_estimators=20).raw)
    raw["schema"] = other_columns_schema
    other = Params.from_dict(raw)
    rng = np.random.default_rng(5)
    n = 1_500
    age = rng.integers(18, 80, n)
    plan = rng.choice(["basic", "pro", "team"], n)
    spend = np.round(rng.gamma(2, 20, n), 2)
    risk = 1 / (1 + np.exp(-(-1.0 + 1.5 * (plan == "basic") - 0.03 * (age - 45))))
    left = rng.random(n) < risk
    rows = [
        {
            "user_id": f"u{i}",
            "age": str(age[i]),
            "plan": plan[i].upper(),
            "spend": None if i % 10 == 0 else spend[i],
            "left": bool(left[i]),
        }
        for i in range(n)
    ]
    result = validate(rows, other.schema, require_label=True)
    assert result.rejected.num_rows == 0
    parts = training.split(result.clean, other)
    outcome = training.train(other, parts.train, parts.valid)
    metrics, _, _ = training.evaluate(outcome.model, parts.test)
    assert metrics["roc_auc"] > 0.65
    assert set(outcome.importance) == {"age", "plan", "spend"}
    compiled = CompiledModel.from_trained(outcome.model)
    np.testing.assert_allclose(
        compiled.probability(compiled.matrix(parts.test)),
        outcome.model.predict_proba(to_frame(parts.test, other.schema)),
        rtol=0,
        atol=1e-9,
    )
