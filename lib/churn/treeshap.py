"""Exact path-dependent TreeSHAP for a LightGBM binary model, tabulated so a row costs lookups.

LightGBM's `pred_contrib` walks every leaf of every tree for every row (about 1k rows/s
here for 200 trees of 31 leaves). Its values are constant on the cells that a tree's split
thresholds cut the feature space into, so each tree is cut into subtrees of few cells, each
subtree's exact Shapley contributions are tabulated per cell once, and a row then costs
integer lookups (value -> bin -> cell key -> table row) and one sparse sum. The numbers are
`pred_contrib`'s to rounding (tested); rows the tables cannot place (NaN, negative or
fractional category codes) go to `pred_contrib`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from lightgbm import Booster

MAX_CELLS = 4096  # cells per subtree table: more means fewer lookups per row but more memory
_MAX_GROUP_BINS = 2048  # columns with few bins are looked up jointly, up to this many joint bins
_BLOCK_ROWS = 2048  # rows per block: bounds the (rows x subtrees) key matrix


class Unsupported(ValueError):
    """The booster has a shape the tables do not cover (multiclass, linear trees, zero-as-missing)."""


@dataclass(frozen=True)
class _Feature:
    """How one column's values map to bins on which every split of the model is constant."""

    categorical: bool
    thresholds: np.ndarray  # numeric: sorted distinct split thresholds
    n_bins: int  # numeric: thresholds + 1; categorical: largest code in a split + 2 (last = "other")

    def bins(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bin of each value, and which values the tables can place."""
        if not self.categorical:
            # LightGBM sends x <= threshold left: the bin is the count of thresholds below x.
            return np.searchsorted(self.thresholds, values, side="left").astype(np.int32), ~np.isnan(values)
        with np.errstate(invalid="ignore"):
            ok = (values >= 0) & (values == np.floor(values))
        codes = np.where(ok, values, 0).astype(np.int64)
        return np.minimum(codes, self.n_bins - 1).astype(np.int32), ok


@dataclass(eq=False)
class _Node:
    feature: int
    cond: np.ndarray  # per bin of the feature: True where a value goes left
    left: Any = None
    right: Any = None


@dataclass(eq=False)
class _Leaf:
    """A leaf with what its TreeSHAP terms need: its distinct path features and their masks."""

    value: float
    features: list[int] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)  # per feature: bins satisfying its path splits
    ratios: list[float] = field(default_factory=list)  # per feature: share of training rows its splits keep
    weights: np.ndarray | None = None  # (2**d, d): value * shapley_weights, filled later


def shapley_weights(ratios: np.ndarray) -> np.ndarray:
    """TreeSHAP weight of each path feature for every pattern of which path features x satisfies.

    `ratios` is (leaves, d). Returns (leaves, 2**d, d) holding, for pattern bits a,
    (a_i - r_i) * sum over S of |S|!(d-|S|-1)!/d! * prod_{j in S} a_j * prod_{j not in S+i} r_j:
    the Shapley value of feature i in the game v(S) = prod_{j in S} a_j * prod_{j not in S} r_j
    that path-dependent TreeSHAP plays for each leaf.
    """
    n, d = ratios.shape
    a = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)[None]  # (1, P, d)
    r = ratios[:, None, :]
    coef = np.array([math.factorial(k) * math.factorial(d - 1 - k) / math.factorial(d) for k in range(d)])
    out = np.empty((n, 2**d, d))
    for i in range(d):
        poly = np.zeros((n, 2**d, d))  # coefficients of prod_{j != i} (r_j + a_j z)
        poly[..., 0] = 1.0
        for j in range(d):
            if j != i:
                shifted = np.zeros_like(poly)
                shifted[..., 1:] = poly[..., :-1] * a[..., j : j + 1]
                poly = poly * r[..., j : j + 1] + shifted
        out[..., i] = (a[..., i] - r[..., i]) * (poly @ coef)
    return out


def _features(trees: list[dict[str, Any]], n_features: int) -> list[_Feature]:
    thresholds: list[set[float]] = [set() for _ in range(n_features)]
    max_code = [-1] * n_features
    categorical = [False] * n_features
    stack = [t["tree_structure"] for t in trees]
    while stack:
        node = stack.pop()
        if "leaf_coeff" in node:
            raise Unsupported("linear trees")
        if "split_feature" not in node:
            continue
        j = int(node["split_feature"])
        if node["missing_type"] == "Zero":
            raise Unsupported("zero-as-missing splits")
        if node["decision_type"] == "==":
            categorical[j] = True
            max_code[j] = max(max_code[j], *(int(v) for v in str(node["threshold"]).split("||")))
        else:
            thresholds[j].add(float(node["threshold"]))
        stack.extend((node["left_child"], node["right_child"]))
    out = []
    for j in range(n_features):
        if categorical[j] and thresholds[j]:
            raise Unsupported(f"feature {j} has both categorical and numeric splits")
        values = np.array(sorted(thresholds[j]), dtype=np.float64)
        out.append(_Feature(categorical[j], values, max_code[j] + 2 if categorical[j] else values.size + 1))
    return out


def _parse_tree(raw: dict[str, Any], features: list[_Feature]) -> tuple[Any, list[_Leaf], float]:
    """The tree as nodes with per-bin conditions, its leaves, and its expected value (the bias)."""
    leaves: list[_Leaf] = []
    root_count = float(raw.get("internal_count", raw.get("leaf_count", 1)) or 1)
    expected = 0.0

    def build(node: dict[str, Any], path: list[tuple[_Node, bool, float]]) -> Any:
        nonlocal expected
        if "split_feature" not in node:
            count = float(node.get("leaf_count", 0))
            leaf = _Leaf(float(node["leaf_value"]))
            counts = [c for _, _, c in path] + [count]
            for k, (parent, left, _) in enumerate(path):
                j = parent.feature
                share = counts[k + 1] / counts[k] if counts[k] > 0 else 0.0
                side = parent.cond if left else ~parent.cond
                if j not in leaf.features:
                    leaf.features.append(j)
                    leaf.masks.append(side.copy())
                    leaf.ratios.append(share)
                else:
                    at = leaf.features.index(j)
                    leaf.masks[at] &= side
                    leaf.ratios[at] *= share
            leaves.append(leaf)
            expected += leaf.value * count / root_count
            return leaf
        j = int(node["split_feature"])
        spec = features[j]
        if node["decision_type"] == "==":
            cond = np.isin(np.arange(spec.n_bins), [int(v) for v in str(node["threshold"]).split("||")])
            cond[-1] = False  # the "other" bin: codes no split names go right
        else:
            cond = np.arange(spec.n_bins) <= np.searchsorted(spec.thresholds, float(node["threshold"]))
        out = _Node(j, cond)
        count = float(node["internal_count"])
        out.left = build(node["left_child"], [*path, (out, True, count)])
        out.right = build(node["right_child"], [*path, (out, False, count)])
        return out

    root = build(raw, [])
    if not leaves[0].features:  # a single-leaf tree is all bias
        return root, [], leaves[0].value
    by_width: dict[int, list[_Leaf]] = {}
    for leaf in leaves:
        by_width.setdefault(len(leaf.features), []).append(leaf)
    for group in by_width.values():
        weights = shapley_weights(np.array([leaf.ratios for leaf in group]))
        for leaf, w in zip(group, weights):
            leaf.weights = w * leaf.value
    return root, leaves, expected


@dataclass
class _Unit:
    """A subtree whose leaves' summed contributions are tabulated over its cells."""

    class_of_bin: dict[int, np.ndarray]  # feature -> class per bin, for features with > 1 class
    strides: dict[int, int]
    table: np.ndarray  # (cells, n_features)


def _subtree(node: Any) -> tuple[list[_Node], list[_Leaf]]:
    nodes: list[_Node] = []
    leaves: list[_Leaf] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, _Leaf):
            leaves.append(item)
        else:
            nodes.append(item)
            stack.extend((item.right, item.left))
    return nodes, leaves


def _classes(n_bins: int, mask: np.ndarray | None, splits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group bins that every split in a subtree treats alike; bins its ancestors exclude are one group.

    (Outside the ancestors' interval every leaf below has a 0 for this feature, whatever the
    subtree's own splits say.) Returns the class of each bin and a representative bin per class.
    """
    inside = np.ones(n_bins, dtype=bool) if mask is None else mask
    # One integer per bin: its side of each split as bits (a tree has far fewer than 63 splits),
    # plus a top bit for bins outside the ancestors' interval, which all share one signature.
    signature = np.zeros(n_bins, dtype=np.int64)
    for k, cond in enumerate(splits):
        signature |= cond.astype(np.int64) << k
    signature[~inside] = np.int64(1) << 62
    _, reps, classes = np.unique(signature, return_index=True, return_inverse=True)
    order = np.argsort(reps)  # number classes in bin order, so tables are reproducible
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[classes.reshape(-1)], reps[order]


def _plan(node: Any, anc: dict[int, np.ndarray], features: list[_Feature], units: list[_Unit]) -> None:
    """Tabulate the subtree at `node` if its cells fit MAX_CELLS, else split it (a leaf always fits)."""
    nodes, leaves = _subtree(node)
    used = sorted(set(anc) | {n.feature for n in nodes})
    classes = {j: _classes(features[j].n_bins, anc.get(j), [n.cond for n in nodes if n.feature == j]) for j in used}
    size = math.prod(classes[j][1].size for j in used)
    if size > MAX_CELLS and isinstance(node, _Node):
        base = anc.get(node.feature, np.ones(features[node.feature].n_bins, dtype=bool))
        _plan(node.left, {**anc, node.feature: base & node.cond}, features, units)
        _plan(node.right, {**anc, node.feature: base & ~node.cond}, features, units)
        return
    strides, step = {}, 1
    for j in used:
        if classes[j][1].size > 1:
            strides[j] = step
            step *= classes[j][1].size
    cells = np.arange(size)
    rep = {
        j: classes[j][1][(cells // strides[j]) % classes[j][1].size]
        if j in strides
        else np.full(size, classes[j][1][0])
        for j in used
    }
    table = np.zeros((size, len(features)))
    for leaf in leaves:
        if leaf.weights is None:
            continue
        pattern = np.zeros(size, dtype=np.int64)
        for k, (j, mask) in enumerate(zip(leaf.features, leaf.masks)):
            pattern |= mask[rep[j]].astype(np.int64) << k
        table[:, leaf.features] += leaf.weights[pattern]
    units.append(_Unit({j: classes[j][0] for j in strides}, strides, table))


@dataclass(frozen=True)
class _Group:
    """Columns looked up together: joint bin = sum(bin_j * mult_j); lut[joint, unit] = key part."""

    features: list[int]
    mults: list[int]
    lut: np.ndarray  # (joint bins, units) int32


def _groups(features: list[_Feature], units: list[_Unit], offsets: np.ndarray) -> list[_Group]:
    order = sorted(range(len(features)), key=lambda j: features[j].n_bins)
    members: list[list[int]] = []
    joint = _MAX_GROUP_BINS + 1
    for j in order:
        if members and joint * features[j].n_bins <= _MAX_GROUP_BINS:
            members[-1].append(j)
            joint *= features[j].n_bins
        else:
            members.append([j])
            joint = features[j].n_bins
    groups = []
    for g, feats in enumerate(members):
        mults = [math.prod(features[k].n_bins for k in feats[:i]) for i in range(len(feats))]
        grid = np.arange(math.prod(features[k].n_bins for k in feats))
        # The first group also carries each unit's offset into the stacked tables.
        lut = np.broadcast_to(offsets if g == 0 else np.zeros_like(offsets), (grid.size, len(units))).copy()
        for j, mult in zip(feats, mults):
            bins = (grid // mult) % features[j].n_bins
            for u, unit in enumerate(units):
                if j in unit.strides:
                    lut[:, u] += (unit.class_of_bin[j][bins] * unit.strides[j]).astype(np.int32)
        groups.append(_Group(feats, mults, lut))
    return groups


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
        self.features = _features(dump["tree_info"], self.n_features)
        units: list[_Unit] = []
        self.bias = 0.0
        for tree in dump["tree_info"]:
            root, _, expected = _parse_tree(tree["tree_structure"], self.features)
            self.bias += expected
            if isinstance(root, _Node):
                _plan(root, {}, self.features, units)
        sizes = [u.table.shape[0] for u in units]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
        self.table = np.concatenate([u.table for u in units]) if units else np.zeros((1, self.n_features))
        self.groups = _groups(self.features, units, offsets) if units else []
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
