"""The duplicate-id rule across a run's chunks: the first read is kept, every later one is a repeat."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from churn import duplicates
from churn.duplicates import FirstSeen


def _chunks(seed: int, n: int = 6_000, distinct: int = 2_500, size: int = 700) -> list[tuple[pa.Array, np.ndarray]]:
    """Ids drawn with many repeats, in chunks of uneven size, with their source rows."""
    rng = np.random.default_rng(seed)
    ids = [f"C{v:06d}" for v in rng.integers(0, distinct, n)]
    cuts = sorted(set(rng.integers(1, n, n // size).tolist()))
    out, start = [], 0
    for end in [*cuts, n]:
        out.append((pa.array(ids[start:end]), np.arange(start, end, dtype=np.int64) + 3))  # rows need not be 0-based
        start = end
    return out


def _reference(chunks: list[tuple[pa.Array, np.ndarray]]) -> list[tuple[list[int], list[int]]]:
    """The rule in plain Python: positions repeated in each chunk and the row kept for each."""
    kept: dict[str, int] = {}
    out = []
    for ids, rows in chunks:
        positions, kept_rows = [], []
        for i, (value, row) in enumerate(zip(ids.to_pylist(), rows.tolist())):
            if value in kept:
                positions.append(i)
                kept_rows.append(kept[value])
            else:
                kept[value] = row
        out.append((positions, kept_rows))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_repeats_across_and_within_chunks_match_the_plain_rule(seed: int) -> None:
    chunks = _chunks(seed)
    seen = FirstSeen()

    found = [seen.repeats(ids, rows) for ids, rows in chunks]

    assert [(p.tolist(), k.tolist()) for p, k in found] == _reference(chunks)
    assert seen.count == len({v for ids, _ in chunks for v in ids.to_pylist()})


def test_colliding_hashes_never_make_distinct_ids_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every id into one of 8 hashes: only the comparison of the ids themselves tells them apart.
    real = duplicates.hash_ids
    monkeypatch.setattr(duplicates, "hash_ids", lambda ids: real(ids) % np.uint64(8))
    chunks = [(pa.array([f"D{i}" for i in range(s, s + 50)]), np.arange(s, s + 50)) for s in (0, 50)]
    seen = FirstSeen()

    found = [seen.repeats(ids, rows)[0].tolist() for ids, rows in chunks]
    again = seen.repeats(pa.array(["D0", "D999"]), np.array([100, 101]))[0].tolist()

    assert found == [[], []]
    assert again == [0]  # D0 was kept first (its hash came first); D999 only shares a hash
