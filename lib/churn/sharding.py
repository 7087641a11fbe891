"""Which shard of a run a customer belongs to: a stable hash of its id, the same everywhere.

FNV-1a (64-bit) over the UTF-8 bytes of the id, then the splitmix64 finalizer so every bit
mixes, then modulo the shard count. Pure integer arithmetic on bytes: identical across
processes, machines and Python versions (unlike `hash()`), and vectorised over an Arrow
string array's buffers so a million ids take tens of milliseconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_OFFSET = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * _M1
    h = h ^ (h >> np.uint64(27))
    h = h * _M2
    return h ^ (h >> np.uint64(31))


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash per id (nulls hash as the empty string)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    ids = pc.fill_null(ids.cast(pa.string()), "")
    n = len(ids)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=n + 1, offset=ids.offset * 4)
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8) if ids.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1].astype(np.int64)
    lengths = (offsets[1:] - offsets[:-1]).astype(np.int64)
    h = np.full(n, _OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        # Ids of one length form a (length x rows) byte matrix; fixed-width ids (the usual
        # case) are a plain reshape of the data buffer, others one gather.
        for length in np.unique(lengths).tolist():
            if length == 0:
                continue
            same = lengths == length
            rows = None if same.all() else np.flatnonzero(same)
            first = starts if rows is None else starts[rows]
            if rows is None and np.array_equal(np.diff(first), np.full(n - 1, length)):
                matrix = data[first[0] : first[0] + n * length].reshape(n, length).T.copy()
            else:
                matrix = data[first[None, :] + np.arange(length)[:, None]]
            part = np.full(first.size, _OFFSET, dtype=np.uint64)
            for column in matrix:
                part ^= column
                part *= _PRIME
            if rows is None:
                h = part
            else:
                h[rows] = part
        return _mix(h)


def hash_id(customer_id: str) -> int:
    """The same hash for one id, in plain Python: the reference the vectorised one is tested against."""
    h = int(_OFFSET)
    for byte in customer_id.encode("utf-8"):
        h = ((h ^ byte) * int(_PRIME)) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 30
    h = (h * int(_M1)) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 27
    h = (h * int(_M2)) & 0xFFFFFFFFFFFFFFFF
    return h ^ (h >> 31)


def shard_of(ids: pa.Array | pa.ChunkedArray, shard_count: int) -> np.ndarray:
    """The shard (0 .. shard_count-1) of each id."""
    if shard_count < 1:
        raise ValueError(f"shard_count must be >= 1, got {shard_count}")
    return (hash_ids(ids) % np.uint64(shard_count)).astype(np.int64)


def in_shard(ids: pa.Array | pa.ChunkedArray, shard_index: int, shard_count: int) -> np.ndarray:
    """Boolean mask of the ids that belong to shard `shard_index` of `shard_count`."""
    if shard_count == 1:
        return np.ones(len(ids), dtype=bool)
    return shard_of(ids, shard_count) == shard_index
