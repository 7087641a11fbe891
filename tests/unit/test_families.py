"""The generated data families of the quality bench (churn.families)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from churn import families
from churn.params import Params
from churn.validation import validate


def params_for(family: families.Family, params: Params) -> Params:
    raw = copy.deepcopy(params.raw)
    raw["schema"] = family.schema
    return Params.from_dict(raw)


@pytest.mark.parametrize("name", families.NAMES)
def test_each_family_is_valid_under_its_own_schema_with_a_churn_rate_between_10_and_30_percent(
    name: str, params: Params
) -> None:
    family = families.make(name, 5_000, seed=3)

    result = validate(family.table, params_for(family, params).schema, require_label=True)

    assert result.rejected.num_rows == 0 and result.clean.num_rows == 5_000
    assert 0.10 <= family.churn_rate <= 0.30
    truth = family.table.column("true_probability").to_numpy()
    assert ((truth > 0) & (truth < 1)).all()
    assert abs(truth.mean() - family.churn_rate) < 0.03  # labels are drawn from the true probability


@pytest.mark.parametrize("name", families.NAMES)
def test_each_family_is_reproducible_from_its_seed(name: str) -> None:
    first, again, other = families.make(name, 2_000, 1), families.make(name, 2_000, 1), families.make(name, 2_000, 2)
    assert first.table.equals(again.table)
    assert not first.table.equals(other.table)


@pytest.mark.parametrize("name", ["interaction", "threshold", "redundant", "telecom"])
def test_every_new_family_has_noise_columns_nothing_depends_on(name: str) -> None:
    names = [f["name"] for f in families.make(name, 2_000, 1).schema["features"]]
    assert {"noise_score", "noise_count", "noise_region"} <= set(names)


def test_redundant_columns_are_sums_and_products_of_others() -> None:
    table = families.make("redundant", 2_000, 1).table.to_pydict()
    charges = np.array(table["day_charge"]) + table["eve_charge"] + table["night_charge"] + table["intl_charge"]
    np.testing.assert_allclose(table["total_charge"], charges, atol=0.011)
    np.testing.assert_allclose(table["day_charge"], np.array(table["day_minutes"]) * 0.17, atol=0.006)


def test_the_telecom_family_looks_like_the_public_telecom_table() -> None:
    family = families.make("telecom", 3_333, 1)
    assert len(family.schema["features"]) == 19
    table = family.table.to_pydict()
    churned = np.array(table["churned"])
    calls = np.array(table["service_calls"])
    assert churned[calls >= 4].mean() > 2 * churned[calls < 4].mean()  # the jump past the 4th service call
    assert 0.10 <= family.churn_rate <= 0.18


def test_the_family_process_does_not_depend_on_the_table_size() -> None:
    """The intercept is fixed per family, so a small table is a sample of the large one's process."""
    small, large = families.make("interaction", 2_000, 4), families.make("interaction", 200_000, 5)
    assert abs(small.churn_rate - large.churn_rate) < 0.03
    assert large.table.num_rows == 200_000
