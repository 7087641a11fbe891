"""Exact path-dependent TreeSHAP for a LightGBM binary model, tabulated so a row costs lookups.

LightGBM's `pred_contrib` walks every leaf of every tree for every row (about 1k rows/s
here for 200 trees of 31 leaves). Its values are constant on the cells that a tree's split
thresholds cut the feature space into, so each tree is cut into subtrees of few cells, each
subtree's exact Shapley contributions are tabulated per cell once, and a row then costs
integer lookups (value -> bin -> cell key -> table row) and one sparse sum. The numbers are
`pred_contrib`'s to rounding (tested); rows the tables cannot place (NaN, negative or
fractional category codes) go to `pred_contrib`.

The trees as per-bin nodes and weighted leaves are built in treeshap_trees, the tables and
lookups in treeshap_tables; this module is the evaluator that sums a row's table entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
from lightgbm import Booster

from churn.treeshap_tables import Unit, lookup_groups, plan
from churn.treeshap_trees import Node, Unsupported, parse_tree, shapley_weights, split_features

__all__ = ["MAX_CELLS", "TreeShap", "Unsupported", "shapley_weights"]

MAX_CELLS = 4096  # cells per subtree table: more means fewer lookups per row but more memory
_BLOCK_ROWS = 2048  # rows per block: bounds the (rows x subtrees) key matrix


class TreeShap:
    """Tables built once from a booster; `contributions(x)` equals `pred_contrib` row for row.

    `n_threads` threads share the blocks of rows of one call (and LightGBM's fallback)."""

    def __init__(self, booster: Booster, num_iteration: int = 0, n_threads: int = 2) -> None:
        dump = booster.dump_model(num_iteration=num_iteration if num_iteration > 0 else None)
        if int(dump.get("num_tree_per_iteration", 1)) != 1:
            raise Unsupported("only single-output models")
        self.booster = booster
        self.num_iteration = num_iteration
        self.n_threads = n_threads
        self.n_features = int(dump["max_feature_idx"]) + 1
        self.features = split_features(dump["tree_info"], self.n_features)
        units: list[Unit] = []
        self.bias = 0.0
        for tree in dump["tree_info"]:
            root, _, expected = parse_tree(tree["tree_structure"], self.features)
            self.bias += expected
            if isinstance(root, Node):
                plan(root, {}, self.features, units, MAX_CELLS)
        sizes = [u.table.shape[0] for u in units]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
        self.table = np.concatenate([u.table for u in units]) if units else np.zeros((1, self.n_features))
        self.groups = lookup_groups(self.features, units, offsets) if units else []
        self.n_units = len(units)

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes + sum(g.lut.nbytes for g in self.groups))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(rows, n_features + 1): each feature's contribution to the raw margin, then the bias."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((x.shape[0], self.n_features + 1))
        bins = np.empty(x.shape, dtype=np.int32)
        placed = np.ones(x.shape[0], dtype=bool)
        for j, spec in enumerate(self.features):
            bins[:, j], ok = spec.bins(x[:, j])
            placed &= ok
        if placed.all():
            blocks: list[Any] = [slice(start, start + _BLOCK_ROWS) for start in range(0, x.shape[0], _BLOCK_ROWS)]
        else:
            good = np.flatnonzero(placed)
            blocks = [good[start : start + _BLOCK_ROWS] for start in range(0, good.size, _BLOCK_ROWS)]

        def fill(block: Any) -> None:
            out[block, :-1] = self._sum(bins[block])

        _each(fill, blocks, self.n_threads)
        out[:, -1] = self.bias
        rest = np.flatnonzero(~placed)
        if rest.size:
            out[rest] = self.booster.predict(
                x[rest], pred_contrib=True, num_iteration=self.num_iteration, num_threads=self.n_threads
            )
        return out

    def _sum(self, bins: np.ndarray) -> np.ndarray:
        """Contributions of binned rows: one table row per subtree, summed as a sparse product."""
        n = bins.shape[0]
        if not self.groups:
            return np.zeros((n, self.n_features))
        keys: np.ndarray | None = None
        for group in self.groups:
            joint = bins[:, group.features[0]].astype(np.intp)
            for j, mult in zip(group.features[1:], group.mults[1:]):
                joint = joint + bins[:, j] * mult
            part = group.lut[joint]
            keys = part if keys is None else keys + part
        assert keys is not None
        picks = sp.csr_matrix(
            (np.ones(keys.size), keys.reshape(-1), np.arange(0, keys.size + 1, self.n_units)),
            shape=(n, self.table.shape[0]),
        )
        return np.asarray(picks @ self.table)


def _each(work: Callable[[Any], None], items: Sequence[Any], n_threads: int) -> None:
    """`work(item)` for every item, spread over up to `n_threads` threads: the lookups and the
    sparse sum run in numpy and scipy without the GIL, so blocks of rows proceed in parallel."""
    lanes = max(1, min(n_threads, len(items)))
    if lanes == 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="churn-treeshap") as pool:
        for _ in pool.map(work, items):  # consumed so that a block's error is raised here
            pass
