"""The customers' generative process: who they are and how likely each is to churn.

Steps 1-11 of the process are documented in ``churn.generator``. This module holds
the category vocabularies, the per-block random draws (``clean_block``) and the
churn log-odds that make every customer's true churn probability known.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "BLOCK_ROWS",
    "CATEGORIES",
    "CHURN_INTERCEPT",
    "CHURN_RATE_TARGET",
    "CONTRACTS",
    "FEATURES",
    "INTERNET_SERVICES",
    "LABEL_NOISE",
    "PAYMENT_METHODS",
    "REFERENCE_TIME",
    "SERVICE_ADDONS",
    "clean_block",
    "true_churn_probability",
]

# Rows per independent random stream. Fixed (not tied to chunk_rows) so the
# output is identical for every chunking; changing it changes every dataset.
BLOCK_ROWS = 32_768

CONTRACTS: tuple[str, ...] = ("Month-to-month", "One year", "Two year")
PAYMENT_METHODS: tuple[str, ...] = (
    "Electronic check",
    "Mailed check",
    "Bank transfer (automatic)",
    "Credit card (automatic)",
)
INTERNET_SERVICES: tuple[str, ...] = ("DSL", "Fiber optic", "No")
SERVICE_ADDONS: tuple[str, ...] = ("Yes", "No", "No internet service")
CATEGORIES: Mapping[str, tuple[str, ...]] = {
    "contract": CONTRACTS,
    "payment_method": PAYMENT_METHODS,
    "internet_service": INTERNET_SERVICES,
    "tech_support": SERVICE_ADDONS,
    "online_security": SERVICE_ADDONS,
}
FEATURES: tuple[str, ...] = (
    "tenure",
    "monthly_charges",
    "total_charges",
    "contract",
    "payment_method",
    "internet_service",
    "tech_support",
    "online_security",
    "support_calls",
)

# Expected overall churn rate of the process (measured on 1M rows, seed 42).
CHURN_RATE_TARGET = 0.254
# Intercept of the churn log-odds, tuned so the churn rate hits the target.
CHURN_INTERCEPT = -1.3
# Probability floor/ceiling: equivalent to flipping this share of labels.
LABEL_NOISE = 0.03
# updated_at lies in the 90 days before this instant (fixed, so output is reproducible).
REFERENCE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
_UPDATE_WINDOW_S = 90 * 24 * 3600

# Category codes used internally (indices into the tuples above).
_MTM, _ONE_YEAR, _TWO_YEAR = 0, 1, 2
_DSL, _FIBER, _NO_INTERNET = 0, 1, 2
_YES, _NO, _NO_SERVICE = 0, 1, 2
_ECHECK = 0

# Conditional category distributions (rows: conditioning code), as CDFs.
_CONTRACT_CDF = np.cumsum(
    [[0.50, 0.25, 0.25], [0.69, 0.18, 0.13], [0.35, 0.22, 0.43]], axis=1
)
_PAYMENT_CDF = np.cumsum(
    [[0.48, 0.20, 0.16, 0.16], [0.20, 0.22, 0.29, 0.29], [0.11, 0.22, 0.33, 0.34]],
    axis=1,
)
_INTERNET_CDF = np.cumsum([0.34, 0.44, 0.22])
_TENURE_BETA_A = np.array([0.7, 1.4, 2.5])
_TENURE_BETA_B = np.array([1.8, 1.2, 0.9])
_NEW_CUSTOMER_SHARE = 0.015
_MAX_TENURE = 72


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _churn_logit(
    tenure: np.ndarray,
    monthly: np.ndarray,
    contract: np.ndarray,
    payment: np.ndarray,
    internet: np.ndarray,
    tech: np.ndarray,
    security: np.ndarray,
    calls: np.ndarray,
) -> np.ndarray:
    """Churn log-odds from category codes (step 9 of the module docstring)."""
    t = tenure.astype(np.float64)
    mtm = contract == _MTM
    fiber = internet == _FIBER
    z = CHURN_INTERCEPT + np.array([0.0, -1.2, -2.4])[contract]
    z = z + 1.2 * np.exp(-t / 6.0)
    # Loyalty grows with tenure, much faster for customers free to leave any month.
    z = z - (0.25 + 0.55 * mtm) * np.log1p(t / 6.0)
    z = z + 0.01 * (monthly - 65.0)
    # Fiber customers at the top price tier compare offers: a soft step near 90.
    z = z + fiber * (0.3 + 0.9 * _sigmoid((monthly - 90.0) / 4.0))
    # Repeated calls signal an unresolved problem: risk jumps at the 4th call.
    z = z + 0.22 * calls + 1.1 * (calls >= 4)
    z = z + 0.5 * (payment == _ECHECK)
    z = z + 0.4 * (tech == _NO) + 0.35 * (security == _NO)
    z = z - 0.3 * (internet == _NO_INTERNET)
    return np.asarray(z, dtype=np.float64)


def _probability_from_logit(z: np.ndarray) -> np.ndarray:
    return LABEL_NOISE + (1.0 - 2.0 * LABEL_NOISE) * _sigmoid(z)


def _codes(values: Any, categories: tuple[str, ...], field: str) -> np.ndarray:
    """Map category strings to their codes; unknown values raise ValueError."""
    arr = (
        values.to_numpy(zero_copy_only=False)
        if isinstance(values, (pa.Array, pa.ChunkedArray))
        else values
    )
    uniques, inverse = np.unique(
        np.asarray(arr, dtype=object).astype(str), return_inverse=True
    )
    lookup = {c: i for i, c in enumerate(categories)}
    unknown = [u for u in uniques if u not in lookup]
    if unknown:
        raise ValueError(f"{field}: unknown categories {unknown[:5]}")
    return np.array([lookup[u] for u in uniques], dtype=np.int64)[inverse.reshape(-1)]


def _numbers(values: Any, dtype: type) -> np.ndarray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=dtype)


def true_churn_probability(features: Mapping[str, Any]) -> np.ndarray:
    """True churn probability of clean features (arrays keyed by feature name).

    Categories are given as their strings; ``total_charges`` is not needed.
    """
    z = _churn_logit(
        _numbers(features["tenure"], np.float64),
        _numbers(features["monthly_charges"], np.float64),
        _codes(features["contract"], CONTRACTS, "contract"),
        _codes(features["payment_method"], PAYMENT_METHODS, "payment_method"),
        _codes(features["internet_service"], INTERNET_SERVICES, "internet_service"),
        _codes(features["tech_support"], SERVICE_ADDONS, "tech_support"),
        _codes(features["online_security"], SERVICE_ADDONS, "online_security"),
        _numbers(features["support_calls"], np.float64),
    )
    return _probability_from_logit(z)


def _draw(rng: np.random.Generator, n: int, cdf: np.ndarray) -> np.ndarray:
    """Draw n category codes; cdf is (k,) shared or (n, k) per row."""
    u = rng.random(n)
    if cdf.ndim == 1:
        return np.searchsorted(cdf[:-1], u, side="right").astype(np.int64)
    return (u[:, None] >= cdf[:, :-1]).sum(axis=1).astype(np.int64)


def clean_block(seed: int, block: int) -> dict[str, np.ndarray]:
    """All BLOCK_ROWS customers of one block as numpy arrays (codes for categories)."""
    n = BLOCK_ROWS
    # One stream per block (and a separate one for mutations), so row i depends on (seed, i) only.
    rng = np.random.default_rng([seed, block, 0])
    internet = _draw(rng, n, _INTERNET_CDF)
    contract = _draw(rng, n, _CONTRACT_CDF[internet])
    beta = rng.beta(_TENURE_BETA_A[contract], _TENURE_BETA_B[contract])
    tenure = np.minimum(1 + np.floor(_MAX_TENURE * beta).astype(np.int64), _MAX_TENURE)
    tenure[rng.random(n) < _NEW_CUSTOMER_SHARE] = 0
    payment = _draw(rng, n, _PAYMENT_CDF[contract])
    has_net = internet != _NO_INTERNET
    p_yes = _sigmoid(
        -0.6
        + 0.5 * (internet == _DSL)
        + 0.6 * (contract == _ONE_YEAR)
        + 1.0 * (contract == _TWO_YEAR)
    )
    tech = np.where(has_net, np.where(rng.random(n) < p_yes, _YES, _NO), _NO_SERVICE)
    security = np.where(
        has_net, np.where(rng.random(n) < p_yes, _YES, _NO), _NO_SERVICE
    )
    base = np.array([45.0, 75.0, 20.0])[internet]
    spread = np.array([8.0, 10.0, 1.5])[internet]
    monthly = (
        base
        + spread * rng.standard_normal(n)
        + 10.0 * (tech == _YES)
        + 8.0 * (security == _YES)
    )
    monthly = np.round(np.clip(monthly, 18.25, 125.0), 2)
    total = np.round(tenure * monthly * np.exp(0.06 * rng.standard_normal(n)), 2)
    total_null = (tenure == 0) & (rng.random(n) < 0.7)
    rate = (
        0.8
        * np.where(internet == _FIBER, 1.7, 1.0)
        * np.where(tech == _NO, 1.4, 1.0)
        * np.where(has_net, 1.0, 0.5)
        * (1.0 + 0.6 * np.exp(-tenure / 6.0))
    )
    calls = rng.poisson(rate).astype(np.int64)
    p = _probability_from_logit(
        _churn_logit(
            tenure, monthly, contract, payment, internet, tech, security, calls
        )
    )
    churned = rng.random(n) < p
    labelled = rng.random(n)  # compared with labelled_share later, so shares nest
    age_s = rng.integers(0, _UPDATE_WINDOW_S, n)
    return {
        "internet": internet,
        "contract": contract,
        "tenure": tenure,
        "payment": payment,
        "tech": tech,
        "security": security,
        "monthly": monthly,
        "total": total,
        "total_null": total_null,
        "calls": calls,
        "p": p,
        "churned": churned,
        "labelled_u": labelled,
        "age_s": age_s,
    }
