"""TreeSHAP tables: subtrees tabulated over their cells, and the lookups that find a row's cell.

A subtree (of the nodes and leaves of treeshap_trees) is tabulated once over every cell its
splits cut the bins into (`plan`); columns with few bins share one lookup table that gives each
subtree's key part (`lookup_groups`), so a row costs a few integer lookups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn.treeshap_trees import Feature, Leaf, Node

_MAX_GROUP_BINS = 2048  # columns with few bins are looked up jointly, up to this many joint bins


@dataclass
class Unit:
    """A subtree whose leaves' summed contributions are tabulated over its cells."""

    class_of_bin: dict[int, np.ndarray]  # feature -> class per bin, for features with > 1 class
    strides: dict[int, int]
    table: np.ndarray  # (cells, n_features)


def _subtree(node: Any) -> tuple[list[Node], list[Leaf]]:
    """The nodes and the leaves below `node`."""
    nodes: list[Node] = []
    leaves: list[Leaf] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Leaf):
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


def plan(node: Any, anc: dict[int, np.ndarray], features: list[Feature], units: list[Unit], max_cells: int) -> None:
    """Tabulate the subtree at `node` if its cells fit `max_cells`, else split it (a leaf always fits)."""
    nodes, leaves = _subtree(node)
    used = sorted(set(anc) | {n.feature for n in nodes})
    classes = {j: _classes(features[j].n_bins, anc.get(j), [n.cond for n in nodes if n.feature == j]) for j in used}
    size = math.prod(classes[j][1].size for j in used)
    if size > max_cells and isinstance(node, Node):
        base = anc.get(node.feature, np.ones(features[node.feature].n_bins, dtype=bool))
        plan(node.left, {**anc, node.feature: base & node.cond}, features, units, max_cells)
        plan(node.right, {**anc, node.feature: base & ~node.cond}, features, units, max_cells)
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
    units.append(Unit({j: classes[j][0] for j in strides}, strides, table))


@dataclass(frozen=True)
class Group:
    """Columns looked up together: joint bin = sum(bin_j * mult_j); lut[joint, unit] = key part."""

    features: list[int]
    mults: list[int]
    lut: np.ndarray  # (joint bins, units) int32


def lookup_groups(features: list[Feature], units: list[Unit], offsets: np.ndarray) -> list[Group]:
    """Columns packed into groups of at most _MAX_GROUP_BINS joint bins, each with its lookup table."""
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
        groups.append(Group(feats, mults, lut))
    return groups
