"""The duplicate-id rule of a nightly run: the first record of a customer id is scored, every
later one is quarantined with reason `duplicate_id` (naming the row that was kept).

"First" is read order: row order in a file, `_id` order in MongoDB (the oldest document).
Ids are compared as the validator reads them, so the integer 12345, "12345" and " 12345"
are one customer; sharding reads ids the same way, so all of them meet in one shard.

Memory is about 16 bytes per customer (a sorted hash and the row it came from) plus the ids
themselves, which confirm a hash match before a record is called a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.sharding import hash_ids


@dataclass
class FirstSeen:
    """The ids one shard has already kept, across chunks."""

    _hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # sorted
    _where: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # index into _ids, by _hashes
    _rows: list[np.ndarray] = field(default_factory=list)  # source row of each kept id, in arrival order
    _ids: list[pa.Array] = field(default_factory=list)
    count: int = 0

    def repeats(self, ids: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For one chunk of validated ids and their source rows: (positions of the ids seen
        before, in this chunk or an earlier one; the source row that was kept for each)."""
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        n = len(ids)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        h = hash_ids(ids)
        # The chunk's distinct hashes, sorted, and where each first appears: looking those up in
        # order walks the kept hashes once (unsorted lookups would jump around a large array).
        distinct, first_index, inverse = np.unique(h, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        first = first_index[inverse]
        repeat = np.arange(n) != first
        kept_row = rows[first]
        # Against earlier chunks.
        earlier = np.zeros(n, dtype=bool)
        seen_before = np.zeros(distinct.size, dtype=bool)
        where: np.ndarray | None = None
        if self._hashes.size:
            at = np.minimum(np.searchsorted(self._hashes, distinct), self._hashes.size - 1)
            seen_before = self._hashes[at] == distinct
            if seen_before.any():
                earlier = seen_before[inverse]
                where = self._where[at][inverse]
                hit = np.flatnonzero(earlier)
                all_rows = np.concatenate(self._rows)
                kept_row[hit] = all_rows[where[hit]]
        repeat |= earlier
        candidates = np.flatnonzero(repeat)
        confirmed = candidates[self._same_ids(ids, candidates, earlier, first, where)]
        # Remember the first sightings of this chunk's new ids, numbered in read order; their
        # hashes (distinct, and none already kept) are merged into the sorted ones in one pass.
        fresh = np.flatnonzero(~seen_before)
        if fresh.size:
            is_new = np.zeros(n, dtype=bool)
            is_new[first_index[fresh]] = True
            new = np.flatnonzero(is_new)
            number = np.cumsum(is_new) - 1 + self.count  # read-order number of each first sighting
            self._hashes, self._where = _merged(self._hashes, self._where, distinct[fresh], number[first_index[fresh]])
            self._ids.append(ids.take(pa.array(new)))
            self._rows.append(rows[new].astype(np.int64))
            self.count += fresh.size
        return confirmed, kept_row[confirmed]

    def _same_ids(
        self,
        ids: pa.Array,
        candidates: np.ndarray,
        earlier: np.ndarray,
        first_in_chunk: np.ndarray,
        where: np.ndarray | None,
    ) -> np.ndarray:
        """Which hash matches are the same id (64-bit hashes almost never collide: check anyway)."""
        if candidates.size == 0:
            return np.zeros(0, dtype=bool)
        mine = ids.take(pa.array(candidates))
        from_chunk = ids.take(pa.array(first_in_chunk[candidates]))
        if where is not None and earlier[candidates].any():
            at = np.where(earlier[candidates], where[candidates], 0)
            seen = pa.chunked_array(self._ids, pa.string()).take(pa.array(at))
            other = pc.if_else(pa.array(earlier[candidates]), seen, from_chunk)
        else:
            other = from_chunk
        return np.asarray(pc.equal(mine, other).to_numpy(zero_copy_only=False), dtype=bool)


def _merged(
    hashes: np.ndarray, where: np.ndarray, new_hashes: np.ndarray, new_where: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted `hashes` (and their `where`) with sorted `new_hashes`, none already present, merged
    in one linear pass (no re-sort of what is kept)."""
    into = np.searchsorted(hashes, new_hashes) + np.arange(new_hashes.size)
    is_new = np.zeros(hashes.size + new_hashes.size, dtype=bool)
    is_new[into] = True
    merged_hashes = np.empty(is_new.size, dtype=hashes.dtype)
    merged_where = np.empty(is_new.size, dtype=np.int64)
    merged_hashes[into], merged_where[into] = new_hashes, new_where
    merged_hashes[~is_new], merged_where[~is_new] = hashes, where
    return merged_hashes, merged_where
