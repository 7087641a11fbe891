"""Ranking a shard: 1-based ranks by probability then id, in memory bounded by one bucket.

Kept apart from `churn.scoring` because ranking needs the whole shard's (probability, id)
columns, re-read from staging, while scoring works one chunk at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def with_rank(table: pa.Table, rank: np.ndarray) -> pa.Table:
    """The chunk with its final ranks."""
    return table.set_column(table.schema.get_field_index("rank"), "rank", pa.array(rank.astype(np.int64)))


KeyChunks = Callable[[], Iterable[tuple[np.ndarray, pa.Array | pa.ChunkedArray]]]


def ranks(chunks: KeyChunks, n: int, bucket_rows: int = 500_000) -> np.ndarray:
    """1-based rank (int32) of each of a shard's `n` rows, in the order `chunks()` yields them.

    Order: churn_probability descending, then customer_id ascending, so ties (isotonic
    calibration gives a few thousand distinct probabilities) break the same way in every run
    and every reader. An external bucket sort keeps memory at the rank array (4 bytes a row)
    plus one bucket: `chunks()` re-reads the staged (probability, id) columns once to count
    rows per probability range, then once per bucket of about `bucket_rows` rows (a single
    probability shared by more rows makes a bigger bucket: exact ties cannot be split by value).
    """
    keys, counts = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    for probability, _ in chunks():
        found, found_counts = np.unique(_coarse(probability), return_counts=True)
        keys, inverse = np.unique(np.concatenate([keys, found]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([counts, found_counts]), minlength=keys.size).astype(
            np.int64
        )
    if int(counts.sum()) != n:
        raise ValueError(f"{int(counts.sum())} staged keys for {n} rows")
    rank = np.zeros(n, dtype=np.int32)
    done = 0
    for lo, hi, size in _buckets(keys[::-1], counts[::-1], bucket_rows):
        parts: list[tuple[np.ndarray, pa.Array | pa.ChunkedArray, np.ndarray]] = []
        start = 0
        for probability, ids in chunks():
            coarse = _coarse(probability)
            inside = np.flatnonzero((coarse >= lo) & (coarse <= hi))
            parts.append((probability[inside], ids.take(pa.array(inside)), inside + start))
            start += probability.size
        bucket = pa.table(
            {
                "p": np.concatenate([p for p, _, _ in parts]),
                "id": pa.chunked_array([i for _, i, _ in parts], pa.string()),
            }
        )
        rows = np.concatenate([r for _, _, r in parts])
        if _ascending(bucket.column("id")):
            # Ids already in order (MongoDB and generated files usually are): a stable sort on
            # the probability alone keeps them so, at a fraction of a two-key sort's cost.
            order = np.argsort(-bucket.column("p").to_numpy(), kind="stable")
        else:
            order = pc.sort_indices(bucket, sort_keys=[("p", "descending"), ("id", "ascending")]).to_numpy()
        rank[rows[order]] = np.arange(done + 1, done + size + 1, dtype=np.int32)
        done += size
    return rank


def _ascending(ids: pa.ChunkedArray) -> bool:
    flat = ids.combine_chunks()
    if len(flat) < 2:
        return True
    return bool(pc.all(pc.less_equal(flat.slice(0, len(flat) - 1), flat.slice(1))).as_py())


def _coarse(probability: np.ndarray) -> np.ndarray:
    """An order-preserving 24-bit bucket key of non-negative floats (exponent and 12 mantissa bits)."""
    return np.ascontiguousarray(probability, dtype=np.float64).view(np.uint64) >> np.uint64(40)


def _buckets(keys: np.ndarray, counts: np.ndarray, bucket_rows: int) -> Iterator[tuple[int, int, int]]:
    """Contiguous key ranges (highest first) of at most `bucket_rows` rows, unless one key has more."""
    lo, hi, size = 0, -1, 0  # hi < 0: no open bucket
    for key, count in zip(keys.tolist(), counts.tolist()):
        if hi >= 0 and size + count > bucket_rows:
            yield lo, hi, size
            hi, size = -1, 0
        if hi < 0:
            hi = key
        lo, size = key, size + count
    if hi >= 0:
        yield lo, hi, size


def rank_order(table: pa.Table) -> pa.Table:
    """Rows in rank order (the order `ranks` and readers across shards use)."""
    return table.take(
        pc.sort_indices(table, sort_keys=[("churn_probability", "descending"), ("customer_id", "ascending")])
    )
