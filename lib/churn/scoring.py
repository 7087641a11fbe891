"""Scoring validated customers: probability, decision, risk band, revenue at risk, reasons, rank.

Pure core: a clean Arrow table and a CompiledModel in, risk-table rows (risk_table.RISK_SCHEMA)
out. Rows are scored chunk by chunk; `ranks` (in `churn.ranking`, importable from here) orders a
whole shard from its (probability, id) columns alone, and `Tally` keeps the run's counts, score
histogram and drift counters.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.compiled import CompiledModel
from churn.errors import ConfigError
from churn.params import Params
from churn.profile import ProfileCounter, feature_arrays
from churn.ranking import rank_order, ranks, with_rank
from churn.risk_table import REASON_TYPE, RISK_SCHEMA, constant
from churn.schema import Schema

__all__ = [
    "MAX_UNSEEN_VALUES",
    "OTHER_VALUES",
    "SCORE_BUCKETS",
    "RunInfo",
    "Scored",
    "ScoringConfig",
    "Tally",
    "rank_order",
    "ranks",
    "score",
    "with_rank",
]

log = logging.getLogger(__name__)

# Upper bounds of the score histogram (Prometheus buckets; +Inf is implied).
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
# Distinct unseen values a run remembers per feature (for the drift report); rows holding
# any other are still counted, under OTHER_VALUES, so a column of garbage cannot grow memory.
MAX_UNSEEN_VALUES = 1_000
OTHER_VALUES = "(other values)"


@dataclass(frozen=True)
class ScoringConfig:
    """The `scoring:` section of params.yaml, checked."""

    bands: tuple[tuple[str, float], ...]  # (name, lower bound), highest bound first
    reason_threshold: float
    top_reasons: int
    max_reject_share: float
    chunk_rows: int
    keep_days: int = 400  # run dates kept by `churn risk vacuum`; 0 keeps every date

    @classmethod
    def from_params(cls, params: Params) -> ScoringConfig:
        section = params.section("scoring")
        raw = section.get("risk_bands", {"high": 0.5, "medium": 0.2, "low": 0.0})
        bands = tuple(sorted(((str(k), float(v)) for k, v in raw.items()), key=lambda b: -b[1]))
        config = cls(
            bands=bands,
            reason_threshold=float(section.get("reason_threshold", 0.3)),
            top_reasons=int(section.get("top_reasons", 3)),
            max_reject_share=float(section.get("max_reject_share", 0.05)),
            chunk_rows=int(section.get("chunk_rows", 100_000)),
            keep_days=int(section.get("keep_days", 400)),
        )
        if (
            config.chunk_rows < 1
            or config.top_reasons < 0
            or config.keep_days < 0
            or not 0 <= config.max_reject_share <= 1
        ):
            raise ConfigError("scoring: chunk_rows >= 1, top_reasons >= 0, keep_days >= 0, max_reject_share in [0, 1]")
        return config

    @property
    def band_names(self) -> list[str]:
        return [name for name, _ in self.bands]

    def band_index(self, probability: np.ndarray) -> np.ndarray:
        """Index into `bands` of each probability: the first band whose lower bound it reaches."""
        lows = np.array([low for _, low in self.bands])
        return np.argmax(probability[:, None] >= lows[None, :], axis=1)


@dataclass(frozen=True)
class RunInfo:
    """What every row of one run shares."""

    run_date: dt.date
    scored_at: dt.datetime
    model_name: str
    model_version: str
    model_run_id: str
    shard: int = 0
    shard_count: int = 1


@dataclass(frozen=True)
class Scored:
    """One chunk's risk rows (rank still 0) and what the run's tallies need from it."""

    table: pa.Table
    probability: np.ndarray
    band: np.ndarray
    flagged: int
    features: dict[str, np.ndarray] = field(default_factory=dict)  # profile.feature_arrays of the chunk


def score(clean: pa.Table, model: CompiledModel, config: ScoringConfig, run: RunInfo, reasons: bool = True) -> Scored:
    """Risk rows for validated customers (the model's schema), in input order."""
    schema = model.schema
    n = clean.num_rows
    features = feature_arrays(clean, schema)
    x = model.encode(features)
    probability = model.probability(x) if n else np.zeros(0)
    band = config.band_index(probability)
    revenue: pa.Array | pa.ChunkedArray = pa.nulls(n, pa.float64())
    if schema.revenue_field:
        revenue = pc.multiply(clean.column(schema.revenue_field).cast(pa.float64()), pa.array(probability))
    flagged = (
        np.flatnonzero(probability >= config.reason_threshold) if reasons and config.top_reasons else np.zeros(0, int)
    )
    columns = {
        "customer_id": clean.column(schema.id_field),
        "run_date": constant(run.run_date, n, pa.date32()),
        "churn_probability": pa.array(probability),
        "churn_prediction": pa.array(probability >= model.threshold),
        "risk_band": pa.array(config.band_names, pa.string()).take(pa.array(band.astype(np.int32))),
        "rank": pa.array(np.zeros(n, dtype=np.int64)),
        "revenue_at_risk": revenue,
        "reasons": _reasons(model, x, flagged, config.top_reasons, n),
        "model_name": constant(run.model_name, n, pa.string()),
        "model_version": constant(run.model_version, n, pa.string()),
        "model_run_id": constant(run.model_run_id, n, pa.string()),
        "scored_at": constant(run.scored_at, n, pa.timestamp("us", tz="UTC")),
        "shard": constant(run.shard, n, pa.int32()),
        "shard_count": constant(run.shard_count, n, pa.int32()),
    }
    return Scored(pa.table(columns, schema=RISK_SCHEMA), probability, band, int(flagged.size), features)


def _reasons(model: CompiledModel, x: np.ndarray, flagged: np.ndarray, k: int, n: int) -> pa.Array:
    """Top-k (feature, contribution) lists for the flagged rows; null for the others."""
    k = min(k, len(model.feature_order))
    counts = np.zeros(n, dtype=np.int32)
    counts[flagged] = k
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    if flagged.size:
        order, contribution = model.top_reasons(x[flagged], k)
        names = pa.array(model.feature_order, pa.string()).take(pa.array(order.reshape(-1).astype(np.int32)))
        values = pa.StructArray.from_arrays([names, pa.array(contribution.reshape(-1))], fields=list(REASON_TYPE))
    else:
        values = pa.array([], REASON_TYPE)
    mask = np.ones(n, dtype=bool)
    mask[flagged] = False
    return pa.ListArray.from_arrays(offsets, values, type=pa.list_(REASON_TYPE), mask=pa.array(mask))


@dataclass
class Tally:
    """A run's counts, score histogram and drift counters, chunk by chunk."""

    config: ScoringConfig
    schema: Schema
    profile: ProfileCounter | None = None
    read: int = 0
    scored: int = 0
    rejected: int = 0
    written: int = 0
    flagged: int = 0
    bands: dict[str, int] = field(default_factory=dict)
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_BUCKETS) + 1, dtype=np.int64))
    score_sum: float = 0.0
    # Per category feature, values outside the model's list and the rows read that held them
    # (rejected under `unknown: reject`, scored as missing under `unknown: missing`).
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, scored: Scored, clean: pa.Table, rejected: int,
            unseen: dict[str, dict[str, int]] | None = None) -> None:
        self.read += clean.num_rows + rejected
        for name, values in (unseen or {}).items():
            self._count_unseen(name, values)
        self.rejected += rejected
        self.scored += clean.num_rows
        self.flagged += scored.flagged
        counts = np.bincount(scored.band, minlength=len(self.config.bands))
        for name, count in zip(self.config.band_names, counts.tolist()):
            self.bands[name] = self.bands.get(name, 0) + count
        # Cumulative-ready counts per bucket: index i counts p <= SCORE_BUCKETS[i] (and > the previous).
        self.buckets += np.bincount(
            np.searchsorted(SCORE_BUCKETS, scored.probability, side="left"), minlength=self.buckets.size
        )
        self.score_sum += float(scored.probability.sum())
        if self.profile is not None and clean.num_rows:
            features = scored.features or feature_arrays(clean, self.schema)
            self.profile.add(features, scored.probability)

    def _count_unseen(self, name: str, values: dict[str, int]) -> None:
        known = self.unseen.setdefault(name, {})
        for value, count in values.items():
            if value not in known and len(known) >= MAX_UNSEEN_VALUES:
                value = OTHER_VALUES
            known[value] = known.get(value, 0) + count

    @property
    def reject_share(self) -> float:
        return self.rejected / self.read if self.read else 0.0

    def unseen_share(self) -> dict[str, float]:
        """Share of the rows read whose value of each category feature the model never learned (0 if none)."""
        return {spec.name: sum(self.unseen.get(spec.name, {}).values()) / self.read if self.read else 0.0
                for spec in self.schema.categorical}

    def psi(self) -> tuple[dict[str, float], float] | None:
        """Drift against the model's reference profile; None (with a warning) if it cannot be compared.

        A profile saved by an older trainer may bin differently: drift is a diagnostic, and
        must not stop the morning's list from being published.
        """
        if self.profile is None or not self.profile.rows:
            return None
        try:
            return self.profile.psi()
        except (ValueError, KeyError) as err:
            log.warning("drift not computed: the reference profile does not match", extra={"error": str(err)})
            return None

    def summary(self) -> dict[str, Any]:
        return {
            "rows_read": self.read,
            "rows_scored": self.scored,
            "rows_rejected": self.rejected,
            "rows_written": self.written,
            "reject_share": round(self.reject_share, 6),
            "flagged_for_reasons": self.flagged,
            "bands": dict(self.bands),
        }
