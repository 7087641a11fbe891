"""Synthetic telecom customers whose true churn probability is known.

The generator streams Arrow tables of customers drawn from a documented
generative process, so the oracle (the true probability of every customer) is
available next to the label and a model can be judged against the best score
any model could reach. Row ``i`` depends only on ``(seed, i)``: every block of
``BLOCK_ROWS`` rows draws from its own random stream, so the output never
depends on ``chunk_rows`` and the first ``n`` customers are the same for every
``n_customers >= n`` (while the id width, 8 digits up to 99,999,999, stays the same).

Generative process (customers are independent; each step may depend on earlier ones):

1. ``internet_service``: DSL 34%, Fiber optic 44%, No 22%.
2. ``contract`` given internet: Fiber is mostly Month-to-month (69/18/13%),
   DSL 50/25/25%, no internet leans to Two year (35/22/43%).
3. ``tenure`` (months, 0-72) given contract: 1.5% brand-new customers at 0,
   otherwise ``1 + floor(72 * Beta(a, b))`` with Beta(0.7, 1.8) for
   Month-to-month (mean ~20), Beta(1.4, 1.2) for One year (~39) and
   Beta(2.5, 0.9) for Two year (~53).
4. ``payment_method`` given contract: Electronic check is 48% of
   Month-to-month customers but only 20% / 11% of One / Two year ones.
5. ``tech_support`` and ``online_security``: "No internet service" exactly
   when internet is "No"; otherwise "Yes" with probability
   ``sigmoid(-0.6 + 0.5*DSL + 0.6*one_year + 1.0*two_year)``.
6. ``monthly_charges``: ~N(20, 1.5) without internet; DSL ~N(45, 8), Fiber
   ~N(75, 10), plus 10 for tech support and 8 for online security; clipped
   to [18.25, 125] and rounded to cents.
7. ``total_charges``: ``tenure * monthly_charges * exp(N(0, 0.06))`` (prices
   drift); for tenure 0 it is null for 70% of customers (never billed), else 0.
8. ``support_calls`` ~ Poisson(0.8 * 1.7[fiber] * 1.4[no tech support]
   * 0.5[no internet] * (1 + 0.6 * exp(-tenure / 6))).
9. Churn log-odds ``z`` (see ``_churn_logit``): intercept ``CHURN_INTERCEPT``;
   contract (0 / -1.2 / -2.4); onboarding risk ``+1.2 exp(-tenure/6)``;
   loyalty ``-(0.25 + 0.55 * month_to_month) * log1p(tenure / 6)`` (tenure
   protects month-to-month customers far more); ``+0.01 (charges - 65)``;
   fiber ``+0.3`` and ``+0.9 sigmoid((charges - 90) / 4)`` (expensive fiber);
   ``+0.22 * calls`` and a ``+1.1`` jump at ``calls >= 4``; electronic check
   ``+0.5``; no tech support ``+0.4``; no online security ``+0.35``; no
   internet ``-0.3``. ``total_charges`` has no direct effect.
10. Label noise: ``p = LABEL_NOISE + (1 - 2 LABEL_NOISE) * sigmoid(z)`` (the
    same as flipping 3% of labels at random); ``churned ~ Bernoulli(p)`` and
    ``true_probability = p``. The outcome is known (``churned`` not null) for
    ``labelled_share`` of customers; known churners get status "churned",
    everyone else "active".
11. ``updated_at``: ``REFERENCE_TIME`` minus up to 90 days, uniform.

Dirty rows (``dirty_rate``): each chosen row gets exactly one mutation from
``DIRTY_KINDS`` in one fixed column, named in ``dirty_kind`` as
``reject:<name>`` (a validator must reject the row) or ``coerce:<name>`` (a
validator must accept it after coercion). ``true_probability`` and
``churned`` always describe the customer before the mutation. With
``dirty_rate > 0`` the tenure and charges columns are strings (like a messy
CSV export); ``to_documents`` turns rows back into MongoDB documents with
native clean values and messy-typed dirty ones. The boolean mutation needs a
Yes/No value, so customers without internet who draw it get the case variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = [
    "BLOCK_ROWS",
    "CATEGORIES",
    "CHURN_INTERCEPT",
    "CHURN_RATE_TARGET",
    "CONTRACTS",
    "DIRTY_KINDS",
    "FEATURES",
    "INTERNET_SERVICES",
    "LABEL_NOISE",
    "PAYMENT_METHODS",
    "REFERENCE_TIME",
    "SERVICE_ADDONS",
    "DirtyKind",
    "GeneratorConfig",
    "generate",
    "output_schema",
    "to_documents",
    "true_churn_probability",
    "write_csv",
    "write_parquet",
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


@dataclass(frozen=True)
class DirtyKind:
    """One messy mutation: the column it touches and the validator outcome."""

    name: str  # full dirty_kind value, "reject:..." or "coerce:..."
    column: str
    description: str

    @property
    def outcome(self) -> str:
        """'reject' or 'coerce'."""
        return self.name.split(":", 1)[0]


DIRTY_KINDS: tuple[DirtyKind, ...] = (
    DirtyKind("reject:negative_tenure", "tenure", "negative integer, e.g. -5"),
    DirtyKind("reject:non_numeric_text", "monthly_charges", 'text such as "abc"'),
    DirtyKind(
        "reject:unknown_contract",
        "contract",
        '"Month to month", "Monthly", "Three year"',
    ),
    DirtyKind(
        "reject:unknown_internet_service",
        "internet_service",
        '"Satellite", "Cable", "5G"',
    ),
    DirtyKind(
        "reject:missing_field", "payment_method", "null; field absent from documents"
    ),
    DirtyKind(
        "reject:negative_charges", "monthly_charges", "negative amount, e.g. -29.85"
    ),
    DirtyKind("reject:non_finite", "total_charges", '"inf" (float inf in documents)'),
    DirtyKind(
        "coerce:padded_number", "monthly_charges", 'number with spaces, e.g. " 29.85 "'
    ),
    DirtyKind("coerce:integer_as_float", "tenure", 'integer written as "12.0"'),
    DirtyKind("coerce:blank_as_missing", "total_charges", '" " meaning missing'),
    DirtyKind(
        "coerce:category_case",
        "contract",
        'case/whitespace variant, e.g. " month-to-month"',
    ),
    DirtyKind(
        "coerce:boolean_yes_no",
        "tech_support",
        '"True"/"False" (bool in documents) for Yes/No',
    ),
)
_KIND_INDEX = {k.name: i for i, k in enumerate(DIRTY_KINDS)}
# Numeric columns that may hold messy strings: emitted as strings when dirty_rate > 0.
_STRING_WHEN_DIRTY = ("tenure", "monthly_charges", "total_charges")
_JUNK_TEXT = ("abc", "#VALUE!", "twenty")
_UNKNOWN_CONTRACT = ("Month to month", "Monthly", "Three year")
_UNKNOWN_INTERNET = ("Satellite", "Cable", "5G")


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; identical configs give identical output."""

    n_customers: int
    seed: int = 42
    chunk_rows: int = 100_000
    dirty_rate: float = 0.0  # share of rows given one messy mutation
    labelled_share: float = 1.0  # share of customers whose outcome (churned) is known
    id_prefix: str = "C"

    def __post_init__(self) -> None:
        # Fail at construction with the offending value, not deep inside numpy.
        if self.n_customers < 0:
            raise ValueError(f"n_customers must be >= 0, got {self.n_customers}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {self.chunk_rows}")
        for name in ("dirty_rate", "labelled_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")

    @property
    def id_width(self) -> int:
        """Digits of the zero-padded customer number (at least 8)."""
        return max(8, len(str(self.n_customers)))


def output_schema(config: GeneratorConfig) -> pa.Schema:
    """Arrow schema of every chunk ``generate(config)`` yields."""
    dirty = config.dirty_rate > 0
    num = pa.string() if dirty else None
    return pa.schema(
        [
            ("customer_id", pa.string()),
            ("status", pa.string()),
            ("tenure", num or pa.int64()),
            ("monthly_charges", num or pa.float64()),
            ("total_charges", num or pa.float64()),
            ("contract", pa.string()),
            ("payment_method", pa.string()),
            ("internet_service", pa.string()),
            ("tech_support", pa.string()),
            ("online_security", pa.string()),
            ("support_calls", pa.int64()),
            ("churned", pa.bool_()),
            ("updated_at", pa.timestamp("us", tz="UTC")),
            ("true_probability", pa.float64()),
            ("dirty_kind", pa.string()),
        ]
    )


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


def _customer_ids(start: int, n: int, prefix: str, width: int) -> pa.Array:
    """Build zero-padded ids straight into an Arrow string buffer (no Python strings)."""
    pre = np.frombuffer(prefix.encode(), dtype=np.uint8)
    row_len = len(pre) + width
    data = np.empty((n, row_len), dtype=np.uint8)
    data[:, : len(pre)] = pre
    # Peel digits right to left; uint32 divmod is much cheaper than an (n, width) int64 power table.
    number = np.arange(
        start + 1, start + n + 1, dtype=np.uint32 if start + n < 2**32 else np.uint64
    )
    for j in range(row_len - 1, len(pre) - 1, -1):
        number, digit = np.divmod(number, 10)
        data[:, j] = digit
    data[:, len(pre) :] += ord("0")
    offsets = np.arange(0, (n + 1) * row_len, row_len, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())]
    )


def _labels(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(codes))


def _clean_block(seed: int, block: int) -> dict[str, np.ndarray]:
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


def _replace(column: pa.Array, rows: np.ndarray, values: list[Any]) -> pa.Array:
    """Replace the given rows of a string column with new (possibly null) values."""
    if rows.size == 0:
        return column
    mask = np.zeros(len(column), dtype=bool)
    mask[rows] = True
    # replace_with_mask consumes replacements in row order.
    order = np.argsort(rows, kind="stable")
    replacement = pa.array([values[i] for i in order], pa.string())
    return pc.replace_with_mask(column, pa.array(mask), replacement)


def _case_variant(value: str, variant: int) -> str:
    """Same category in another case/whitespace: never equal to the canonical string."""
    return (" " + value.lower(), value.upper(), value.lower() + "  ")[variant]


def _messy_strings(
    name: str, rows: np.ndarray, d: dict[str, np.ndarray], variant: np.ndarray
) -> list[Any]:
    """The messy values of one dirty kind for the given rows (as the table stores them)."""
    v = variant[rows]
    if name == "reject:negative_tenure":
        return [str(-int(m)) for m in d["magnitude"][rows]]
    if name == "coerce:integer_as_float":
        return [f"{int(t)}.0" for t in d["tenure"][rows]]
    if name == "reject:non_numeric_text":
        return [_JUNK_TEXT[i] for i in v]
    if name == "reject:negative_charges":
        return [f"-{m:.2f}" for m in d["monthly"][rows]]
    if name == "coerce:padded_number":
        return [
            (" {} ", "{}  ", "  {}")[i].format(f"{m:.2f}")
            for i, m in zip(v, d["monthly"][rows])
        ]
    if name == "reject:non_finite":
        return ["inf"] * rows.size
    if name == "coerce:blank_as_missing":
        return [" "] * rows.size
    if name == "reject:unknown_contract":
        return [_UNKNOWN_CONTRACT[i] for i in v]
    if name == "coerce:category_case":
        return [_case_variant(CONTRACTS[c], i) for i, c in zip(v, d["contract"][rows])]
    if name == "reject:unknown_internet_service":
        return [_UNKNOWN_INTERNET[i] for i in v]
    if name == "reject:missing_field":
        return [None] * rows.size
    if name == "coerce:boolean_yes_no":
        return [str(t == _YES) for t in d["tech"][rows]]
    raise AssertionError(f"no mutation for {name}")


def _apply_dirt(
    seed: int,
    block: int,
    rate: float,
    d: dict[str, np.ndarray],
    cols: dict[str, pa.Array],
) -> pa.Array:
    """Mutate a share ``rate`` of rows in ``cols`` in place; return the dirty_kind column."""
    n = BLOCK_ROWS
    # A separate stream: dirt never shifts the clean draws, and rows dirty at a
    # lower rate stay dirty (with the same mutation) at a higher one.
    rng = np.random.default_rng([seed, block, 1])
    dirty = rng.random(n) < rate
    kind = rng.integers(0, len(DIRTY_KINDS), n)
    variant = rng.integers(0, 3, n)
    d = {**d, "magnitude": rng.integers(1, 25, n)}
    # Booleans only stand for Yes/No; customers without internet get a case variant instead.
    bool_kind, case_kind = (
        _KIND_INDEX["coerce:boolean_yes_no"],
        _KIND_INDEX["coerce:category_case"],
    )
    kind = np.where((kind == bool_kind) & (d["tech"] == _NO_SERVICE), case_kind, kind)
    by_column: dict[str, tuple[list[np.ndarray], list[Any]]] = {}
    for index, spec in enumerate(DIRTY_KINDS):
        rows = np.flatnonzero(dirty & (kind == index))
        row_list, values = by_column.setdefault(spec.column, ([], []))
        row_list.append(rows)
        values.extend(_messy_strings(spec.name, rows, d, variant))
    # One replace per column: each Arrow call costs more than building the values.
    for column, (row_list, values) in by_column.items():
        cols[column] = _replace(cols[column], np.concatenate(row_list), values)
    # A null index takes a null name: clean rows have no dirty_kind.
    names = pa.array([k.name for k in DIRTY_KINDS], pa.string())
    return names.take(pa.array(kind, pa.int64(), mask=~dirty))


def _block_table(config: GeneratorConfig, block: int) -> pa.Table:
    """One full block of customers as an Arrow table with the output schema."""
    d = _clean_block(config.seed, block)
    n = BLOCK_ROWS
    start = block * BLOCK_ROWS
    labelled = d["labelled_u"] < config.labelled_share
    churned = pa.array(d["churned"], pa.bool_(), mask=~labelled)
    status = _labels(("active", "churned"), (labelled & d["churned"]).astype(np.int64))
    ref_us = int(REFERENCE_TIME.timestamp()) * 1_000_000
    updated = pa.array(ref_us - d["age_s"] * 1_000_000, pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    cols: dict[str, pa.Array] = {
        "tenure": pa.array(d["tenure"], pa.int64()),
        "monthly_charges": pa.array(d["monthly"], pa.float64()),
        "total_charges": pa.array(d["total"], pa.float64(), mask=d["total_null"]),
        "contract": _labels(CONTRACTS, d["contract"]),
        "payment_method": _labels(PAYMENT_METHODS, d["payment"]),
        "internet_service": _labels(INTERNET_SERVICES, d["internet"]),
        "tech_support": _labels(SERVICE_ADDONS, d["tech"]),
        "online_security": _labels(SERVICE_ADDONS, d["security"]),
    }
    if config.dirty_rate > 0:
        for name in _STRING_WHEN_DIRTY:
            # Like a messy CSV export: one string column can hold both clean and dirty values.
            cols[name] = pc.cast(cols[name], pa.string())
        dirty_kind = _apply_dirt(config.seed, block, config.dirty_rate, d, cols)
    else:
        dirty_kind = pa.nulls(n, pa.string())
    schema = output_schema(config)
    arrays = [
        _customer_ids(start, n, config.id_prefix, config.id_width),
        status,
        cols["tenure"],
        cols["monthly_charges"],
        cols["total_charges"],
        cols["contract"],
        cols["payment_method"],
        cols["internet_service"],
        cols["tech_support"],
        cols["online_security"],
        pa.array(d["calls"], pa.int64()),
        churned,
        updated,
        pa.array(d["p"], pa.float64()),
        dirty_kind,
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def generate(config: GeneratorConfig) -> Iterator[pa.Table]:
    """Stream the customers as tables of at most ``config.chunk_rows`` rows."""
    pending: list[pa.Table] = []
    pending_rows = 0
    n_blocks = math.ceil(config.n_customers / BLOCK_ROWS)
    for block in range(n_blocks):
        # Generate whole blocks so row i never depends on n_customers or chunk_rows.
        table = _block_table(config, block)
        keep = min(BLOCK_ROWS, config.n_customers - block * BLOCK_ROWS)
        pending.append(table.slice(0, keep))
        pending_rows += keep
        while pending_rows >= config.chunk_rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, config.chunk_rows).combine_chunks()
            rest = merged.slice(config.chunk_rows)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending_rows:
        yield pa.concat_tables(pending).combine_chunks()


def write_parquet(config: GeneratorConfig, path: str | Path) -> int:
    """Stream the customers into one Parquet file (a row group per chunk); return rows written."""
    rows = 0
    with pq.ParquetWriter(str(path), output_schema(config)) as writer:
        for chunk in generate(config):
            writer.write_table(chunk, row_group_size=max(chunk.num_rows, 1))
            rows += chunk.num_rows
    return rows


def write_csv(config: GeneratorConfig, path: str | Path) -> int:
    """Stream the customers into one CSV file with a header; return rows written."""
    rows = 0
    with pacsv.CSVWriter(str(path), output_schema(config)) as writer:
        for chunk in generate(config):
            writer.write_table(chunk)
            rows += chunk.num_rows
    return rows


_DOCUMENT_FIELDS = ("customer_id", "status", *FEATURES, "churned", "updated_at")
_INT_FIELDS = {"tenure", "support_calls"}
_FLOAT_FIELDS = {"monthly_charges", "total_charges"}


def _messy_value(kind: str, raw: str | None) -> Any:
    """The Python value a real messy document would hold for this mutation."""
    if kind == "reject:negative_tenure" and raw is not None:
        return int(raw)
    if kind in ("reject:negative_charges", "reject:non_finite") and raw is not None:
        return float(raw)
    if kind == "coerce:boolean_yes_no" and raw is not None:
        return raw == "True"
    return raw


def to_documents(table: pa.Table, include_truth: bool = False) -> list[dict[str, Any]]:
    """Chunk to MongoDB-ready dicts: clean values native, dirty ones messy, unknown churned dropped.

    ``include_truth`` keeps ``true_probability`` and ``dirty_kind`` (for tests).
    """
    kinds = table.column("dirty_kind")
    by_name = {k.name: k for k in DIRTY_KINDS}
    columns: dict[str, list[Any]] = {}
    raw: dict[str, list[Any]] = {}
    for field in _DOCUMENT_FIELDS + (
        ("true_probability", "dirty_kind") if include_truth else ()
    ):
        col = table.column(field)
        if field in _INT_FIELDS | _FLOAT_FIELDS and pa.types.is_string(col.type):
            # Parse clean rows in Arrow; rows dirtied in this column keep their raw text.
            touched = pc.is_in(
                kinds,
                value_set=pa.array([k.name for k in DIRTY_KINDS if k.column == field]),
            )
            touched = pc.fill_null(touched, False)
            target = pa.int64() if field in _INT_FIELDS else pa.float64()
            columns[field] = pc.cast(
                pc.if_else(touched, pa.scalar(None, pa.string()), col), target
            ).to_pylist()
            raw[field] = col.to_pylist()
        else:
            columns[field] = col.to_pylist()
    kind_list = kinds.to_pylist()
    names = list(columns)
    docs: list[dict[str, Any]] = []
    for i, kind in enumerate(kind_list):
        doc = {name: columns[name][i] for name in names}
        if doc["churned"] is None:
            del doc["churned"]
        if kind is not None:
            field = by_name[kind].column
            if kind == "reject:missing_field":
                del doc[field]
            else:
                source = raw[field][i] if field in raw else columns[field][i]
                doc[field] = _messy_value(kind, source)
        docs.append(doc)
    return docs
