"""Reasons: the tabulated TreeSHAP equals LightGBM's pred_contrib and keeps the TreeSHAP property."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest

from churn import treeshap
from churn.adapters.model_format import LoadedModel
from churn.compiled import CompiledModel
from churn.training import Splits
from churn.validation import validate


@pytest.fixture(scope="module")
def compiled(loaded_model: LoadedModel) -> CompiledModel:
    return loaded_model.compiled


@pytest.fixture(scope="module")
def x(compiled: CompiledModel, splits: Splits) -> np.ndarray:
    return compiled.matrix(splits.test)


def _lightgbm(compiled: CompiledModel, x: np.ndarray) -> np.ndarray:
    return np.asarray(compiled.booster.predict(x, pred_contrib=True, num_iteration=compiled.best_iteration))


def test_tabulated_contributions_equal_lightgbm_pred_contrib(compiled: CompiledModel, x: np.ndarray) -> None:
    tables = treeshap.TreeShap(compiled.booster, compiled.best_iteration)

    np.testing.assert_allclose(tables.contributions(x), _lightgbm(compiled, x), rtol=0, atol=1e-9)


def test_contributions_plus_bias_reproduce_the_raw_margin_of_every_customer(
    compiled: CompiledModel, x: np.ndarray
) -> None:
    contributions = compiled.contributions(x)  # large enough to take the tabulated path

    assert x.shape[0] >= 256
    np.testing.assert_allclose(contributions.sum(axis=1), compiled.margin(x), rtol=0, atol=1e-9)


def test_small_tables_cut_trees_into_many_subtrees_and_stay_exact(
    compiled: CompiledModel, x: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(treeshap, "MAX_CELLS", 8)  # forces subtrees down to (nearly) single leaves
    small = treeshap.TreeShap(compiled.booster, compiled.best_iteration)

    assert small.n_units > compiled.best_iteration * 4
    np.testing.assert_allclose(small.contributions(x[:300]), _lightgbm(compiled, x[:300]), rtol=0, atol=1e-9)


def test_rows_the_tables_cannot_place_fall_back_to_lightgbm(compiled: CompiledModel, x: np.ndarray) -> None:
    tables = treeshap.TreeShap(compiled.booster, compiled.best_iteration)
    odd = x[:50].copy()
    odd[0, 0] = np.nan  # missing number
    odd[1, -1] = -1.0  # negative category code
    odd[2, -2] = 1.5  # fractional category code
    odd[3, -3] = 40.0  # category code no split names

    np.testing.assert_allclose(tables.contributions(odd), _lightgbm(compiled, odd), rtol=0, atol=1e-9)


def test_blocks_of_rows_on_several_threads_give_the_one_thread_numbers_exactly(
    compiled: CompiledModel, x: np.ndarray
) -> None:
    rows = np.concatenate([x] * (3 * 2048 // x.shape[0] + 1))[: 3 * 2048 + 5]  # four blocks, the last short
    rows[7, 0] = np.nan  # one row for pred_contrib: the blocks are then index arrays, not slices
    one = treeshap.TreeShap(compiled.booster, compiled.best_iteration, n_threads=1)
    several = treeshap.TreeShap(compiled.booster, compiled.best_iteration, n_threads=3)

    np.testing.assert_array_equal(several.contributions(rows), one.contributions(rows))
    np.testing.assert_array_equal(several.contributions(rows[1:]), one.contributions(rows[1:]))


def test_top_reasons_are_the_largest_absolute_contributions_with_their_sign(
    compiled: CompiledModel, x: np.ndarray
) -> None:
    order, values = compiled.top_reasons(x, 3)
    full = _lightgbm(compiled, x)[:, :-1]

    for row in range(x.shape[0]):
        magnitudes = np.sort(np.abs(full[row]))[::-1]
        np.testing.assert_allclose(np.abs(values[row]), magnitudes[:3], atol=1e-9)
        np.testing.assert_allclose(values[row], full[row, order[row]], atol=1e-9)
    assert (np.abs(values[:, 0]) >= np.abs(values[:, 1])).all() and (np.abs(values[:, 1]) >= np.abs(values[:, 2])).all()


def _brute_force_shapley(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Shapley values of v(S) = prod_{j in S} a_j prod_{j not in S} r_j by enumerating coalitions."""
    d = len(a)

    def v(coalition: set[int]) -> float:
        return math.prod(a[j] if j in coalition else r[j] for j in range(d))

    out = np.zeros(d)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for subset in itertools.combinations(others, size):
                out[i] += weight * (v({*subset, i}) - v(set(subset)))
    return out


def test_shapley_weights_match_brute_force_enumeration_for_every_pattern() -> None:
    rng = np.random.default_rng(3)
    ratios = rng.uniform(0.05, 0.95, size=(2, 4))
    weights = treeshap.shapley_weights(ratios)

    for leaf in range(2):
        for pattern in range(16):
            a = np.array([(pattern >> j) & 1 for j in range(4)], dtype=float)
            np.testing.assert_allclose(weights[leaf, pattern], _brute_force_shapley(a, ratios[leaf]), atol=1e-12)


def test_compiled_reasons_for_a_fresh_table_match_the_pipeline_margin(
    compiled: CompiledModel, customers: pa.Table
) -> None:
    clean = validate(customers.slice(0, 400), compiled.schema).clean
    x = compiled.matrix(clean)

    contributions = compiled.contributions(x)

    np.testing.assert_allclose(contributions, _lightgbm(compiled, x), atol=1e-9)
