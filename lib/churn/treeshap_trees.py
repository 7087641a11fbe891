"""A LightGBM model's trees for TreeSHAP: per-bin split conditions, and each leaf's Shapley weights.

Each feature's values are cut into bins on which every split of the model is constant
(`split_features`); `parse_tree` turns a dumped tree into nodes whose conditions are per bin
and leaves that carry their path features, masks and TreeSHAP weights. treeshap_tables then
tabulates subtrees of these over their cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Unsupported(ValueError):
    """The booster has a shape the tables do not cover (multiclass, linear trees, zero-as-missing)."""


@dataclass(frozen=True)
class Feature:
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
class Node:
    """A split: the feature it tests and, per bin of that feature, which side a value takes."""

    feature: int
    cond: np.ndarray  # per bin of the feature: True where a value goes left
    left: Any = None
    right: Any = None


@dataclass(eq=False)
class Leaf:
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


def split_features(trees: list[dict[str, Any]], n_features: int) -> list[Feature]:
    """Each column's bins from every split of the dumped trees; Unsupported for shapes not covered."""
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
        out.append(Feature(categorical[j], values, max_code[j] + 2 if categorical[j] else values.size + 1))
    return out


def parse_tree(raw: dict[str, Any], features: list[Feature]) -> tuple[Any, list[Leaf], float]:
    """The tree as nodes with per-bin conditions, its leaves, and its expected value (the bias)."""
    leaves: list[Leaf] = []
    root_count = float(raw.get("internal_count", raw.get("leaf_count", 1)) or 1)
    expected = 0.0

    def build(node: dict[str, Any], path: list[tuple[Node, bool, float]]) -> Any:
        nonlocal expected
        if "split_feature" not in node:
            count = float(node.get("leaf_count", 0))
            leaf = Leaf(float(node["leaf_value"]))
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
        out = Node(j, cond)
        count = float(node["internal_count"])
        out.left = build(node["left_child"], [*path, (out, True, count)])
        out.right = build(node["right_child"], [*path, (out, False, count)])
        return out

    root = build(raw, [])
    if not leaves[0].features:  # a single-leaf tree is all bias
        return root, [], leaves[0].value
    by_width: dict[int, list[Leaf]] = {}
    for leaf in leaves:
        by_width.setdefault(len(leaf.features), []).append(leaf)
    for group in by_width.values():
        weights = shapley_weights(np.array([leaf.ratios for leaf in group]))
        for leaf, w in zip(group, weights):
            leaf.weights = w * leaf.value
    return root, leaves, expected
