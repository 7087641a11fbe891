"""Sharding: every customer in exactly one shard, the same shard on every machine and run."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from churn import sharding

IDS = pa.array([f"C{i:08d}" for i in range(20_000)] + ["", "é-ünïcode", "x" * 40, "42"])


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_union_of_shards_is_every_id_exactly_once(count: int) -> None:
    masks = np.stack([sharding.in_shard(IDS, i, count) for i in range(count)])

    assert (masks.sum(axis=0) == 1).all()


def test_vectorised_hash_equals_the_plain_python_reference() -> None:
    hashes = sharding.hash_ids(IDS)

    assert [int(h) for h in hashes] == [sharding.hash_id(i) for i in IDS.to_pylist()]


def test_hash_values_are_pinned_so_other_machines_and_versions_agree() -> None:
    # Literal values: a change here moves customers between shards, so only ever on purpose.
    assert sharding.hash_id("C00000001") == 0x35BAED997988232B
    ids = pa.array(["C00000001", "C00000002", "C00000003", "C00000004"])
    assert sharding.shard_of(ids, 4).tolist() == [3, 2, 3, 2]


def test_shards_are_balanced() -> None:
    counts = np.bincount(sharding.shard_of(IDS, 4), minlength=4)

    assert counts.min() > 0.9 * len(IDS) / 4


def test_sliced_chunked_and_null_ids_hash_like_their_values() -> None:
    chunked = pa.chunked_array([IDS.slice(0, 10), IDS.slice(10, 5)])

    assert sharding.hash_ids(chunked).tolist() == sharding.hash_ids(IDS.slice(0, 15)).tolist()
    assert sharding.hash_ids(IDS.slice(3, 4)).tolist() == sharding.hash_ids(IDS).tolist()[3:7]
    assert sharding.hash_ids(pa.array([None], pa.string())).tolist() == sharding.hash_ids(pa.array([""])).tolist()
