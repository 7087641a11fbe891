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
        # Within the chunk: the first position of each hash.
        _, first_index, inverse = np.unique(h, return_index=True, return_inverse=True)
        repeat = np.arange(n) != first_index[inverse]
        kept_row = rows[first_index[inverse]]
        # Against earlier chunks.
        earlier = np.zeros(n, dtype=bool)
        where: np.ndarray | None = None
        if self._hashes.size:
            at = np.minimum(np.searchsorted(self._hashes, h), self._hashes.size - 1)
            earlier = self._hashes[at] == h
            where = self._where[at]
            if earlier.any():
                hit = np.flatnonzero(earlier)
                all_rows = np.concatenate(self._rows)
                kept_row[hit] = all_rows[where[hit]]
        repeat |= earlier
        candidates = np.flatnonzero(repeat)
        confirmed = candidates[self._same_ids(ids, candidates, earlier, first_index[inverse], where)]
        # Remember the first sightings of this chunk's new ids.
        new = np.sort(first_index[~earlier[first_index]])
        if new.size:
            positions = np.arange(self.count, self.count + new.size, dtype=np.int64)
            hashes = np.concatenate([self._hashes, h[new]])
            order = np.argsort(hashes, kind="stable")
            self._hashes = hashes[order]
            self._where = np.concatenate([self._where, positions])[order]
            self._ids.append(ids.take(pa.array(new)))
            self._rows.append(rows[new].astype(np.int64))
            self.count += new.size
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
