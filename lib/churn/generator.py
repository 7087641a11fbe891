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
9. Churn log-odds ``z`` (see ``population._churn_logit``): intercept ``CHURN_INTERCEPT``;
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

The process itself (categories, draws, log-odds) lives in ``churn.population`` and
the mutations in ``churn.dirty_records``; this module builds the tables, streams and writes
them, and re-exports the public names of both.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churn.dirty_records import DIRTY_KINDS, STRING_WHEN_DIRTY, apply_dirt, to_documents
from churn.population import (
    BLOCK_ROWS,
    CATEGORIES,
    CONTRACTS,
    FEATURES,
    INTERNET_SERVICES,
    PAYMENT_METHODS,
    REFERENCE_TIME,
    SERVICE_ADDONS,
    clean_block,
    true_churn_probability,
)

# This module's own names, and the process's names its callers read from here (the rest of the
# process is population's; its constants are imported from there).
__all__ = ["GeneratorConfig", "generate", "output_schema", "write_csv", "write_parquet"]
__all__ += ["CATEGORIES", "CONTRACTS", "FEATURES", "INTERNET_SERVICES", "true_churn_probability"]
__all__ += ["DIRTY_KINDS", "to_documents"]


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


def _block_table(config: GeneratorConfig, block: int) -> pa.Table:
    """One full block of customers as an Arrow table with the output schema."""
    d = clean_block(config.seed, block)
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
        for name in STRING_WHEN_DIRTY:
            # Like a messy CSV export: one string column can hold both clean and dirty values.
            cols[name] = pc.cast(cols[name], pa.string())
        dirty_kind = apply_dirt(config.seed, block, config.dirty_rate, d, cols)
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
