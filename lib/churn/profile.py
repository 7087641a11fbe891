"""Reference profiles of features and scores, and the population stability index (PSI).

A profile is saved with each model at training time; the nightly job compares each run
against it, so drift is measured against what the model actually learned from.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pyarrow as pa

from churn.schema import Schema

_EPS = 1e-4  # keeps empty bins from making PSI infinite
SCORE_EDGES = [i / 10 for i in range(11)]


def feature_arrays(table: pa.Table, schema: Schema) -> dict[str, np.ndarray]:
    """Each feature of a validated table as floats: numbers as they are (missing as NaN),
    categories as their codes in the schema's value order (missing as NaN). The profile counts
    these; CompiledModel.encode imputes and stacks them into the model's matrix."""
    out = {}
    for spec in schema.features:
        column = table.column(spec.name)
        if spec.is_numeric:
            out[spec.name] = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        else:
            out[spec.name] = category_codes(column)
    return out


def category_codes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The dictionary codes of a validated category column as floats, NaN where missing."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    codes = array.indices.to_numpy(zero_copy_only=False).astype(np.float64)
    if array.null_count:
        codes[np.asarray(array.is_null().to_numpy(zero_copy_only=False))] = np.nan
    return codes


def _numeric_edges(values: np.ndarray, bins: int) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    inner = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    return [float(v) for v in inner]


def _shares_numeric(values: np.ndarray, edges: list[float]) -> list[float]:
    """Shares per bin; the last bin counts missing values."""
    missing = ~np.isfinite(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
    total = max(values.size, 1)
    return [float(c) / total for c in counts] + [float(missing.sum()) / total]


def _shares_codes(codes: np.ndarray, n_values: int) -> list[float]:
    """Shares per category; the last bin counts missing values."""
    missing = ~np.isfinite(codes)
    counts = np.bincount(codes[~missing].astype(np.int64), minlength=n_values)
    total = max(codes.size, 1)
    return [float(c) / total for c in counts] + [float(missing.sum()) / total]


def build_profile(
    schema: Schema, features: dict[str, np.ndarray], scores: np.ndarray, bins: int = 10
) -> dict[str, Any]:
    """A JSON-able profile: per-feature bin edges and shares, and score shares."""
    profile: dict[str, Any] = {"features": {}, "score": {"edges": SCORE_EDGES[1:-1]}}
    for spec in schema.features:
        values = features[spec.name]
        if spec.is_numeric:
            edges = _numeric_edges(values, bins)
            profile["features"][spec.name] = {"edges": edges, "shares": _shares_numeric(values, edges)}
        else:
            shares = _shares_codes(values, len(spec.values))
            profile["features"][spec.name] = {"values": list(spec.values), "shares": shares}
    profile["score"]["shares"] = _shares_numeric(scores, profile["score"]["edges"])[:-1]
    return profile


class ProfileCounter:
    """Accumulates bin counts chunk by chunk, so memory does not grow with rows."""

    def __init__(self, schema: Schema, profile: dict[str, Any]) -> None:
        self.schema = schema
        self.profile = copy.deepcopy(profile)  # padded below; the caller's copy stays as saved
        self.counts: dict[str, np.ndarray] = {}
        for spec in schema.features:
            ref = self.profile["features"][spec.name]
            if not spec.is_numeric and len(ref["shares"]) == len(ref["values"]):
                # Profiles saved before categories had a missing bin: nothing was missing then.
                ref["shares"] = [*ref["shares"], 0.0]
            size = len(ref["edges"]) + 2 if spec.is_numeric else len(ref["values"]) + 1
            self.counts[spec.name] = np.zeros(size)
        self.score_counts = np.zeros(len(profile["score"]["edges"]) + 1)
        self.rows = 0

    def add(self, features: dict[str, np.ndarray], scores: np.ndarray) -> None:
        for spec in self.schema.features:
            values = features[spec.name]
            ref = self.profile["features"][spec.name]
            if spec.is_numeric:
                missing = ~np.isfinite(values)
                idx = np.searchsorted(ref["edges"], values[~missing], side="right")
                counts = np.bincount(idx, minlength=len(ref["edges"]) + 1)
                self.counts[spec.name][:-1] += counts
                self.counts[spec.name][-1] += missing.sum()
            else:
                missing = ~np.isfinite(values)
                self.counts[spec.name][:-1] += np.bincount(values[~missing].astype(np.int64),
                                                           minlength=len(ref["values"]))
                self.counts[spec.name][-1] += missing.sum()
        idx = np.searchsorted(self.profile["score"]["edges"], scores, side="right")
        self.score_counts += np.bincount(idx, minlength=self.score_counts.size)
        self.rows += scores.size

    def psi(self) -> tuple[dict[str, float], float]:
        """PSI of each feature and of the score against the reference."""
        out = {}
        for spec in self.schema.features:
            out[spec.name] = psi(self.profile["features"][spec.name]["shares"], self.counts[spec.name])
        return out, psi(self.profile["score"]["shares"], self.score_counts)


def psi(expected_shares: list[float], actual_counts: np.ndarray) -> float:
    """Population stability index: sum((a - e) * ln(a / e)) over bins."""
    expected = np.asarray(expected_shares, dtype=np.float64)
    total = actual_counts.sum()
    if total == 0:
        return 0.0
    actual = actual_counts / total
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))
