"""Why a customer got their score, in words a retention manager reads, with the numbers alongside.

Each feature's exact TreeSHAP contribution (CompiledModel.contributions) moves the model's
log-odds of churning up or down from the average customer's (the bias). Here those
contributions become sentences: "contract Month-to-month strongly raises risk (+1.18)",
"tenure 52 months lowers risk (-0.64)". Pure core: no client library, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.compiled import CompiledModel
from churn.profile import feature_arrays
from churn.schema import FeatureSpec, Schema

# How strongly a contribution (log-odds) moves risk, for the words: at least this much.
# 1.0 log-odds multiplies the odds by e (2.7x); 0.05 is about a 5% change in the odds.
STRONG = 1.0
NOTABLE = 0.25
SLIGHT = 0.05
MISSING = "missing"


def value_text(value: Any, spec: FeatureSpec | None = None) -> str:
    """A feature value as a person writes it: '52 months', '89.1', 'Fiber optic', 'missing'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    text = str(value) if isinstance(value, int) else _number(f"{value:.2f}")
    unit = spec.unit if spec is not None else None
    return f"{text} {unit}" if unit else text


def _number(fixed: str) -> str:
    """'89.10' -> '89.1', '52.00' -> '52': two decimals at most, no trailing zeros."""
    return fixed.rstrip("0").rstrip(".") if "." in fixed else fixed


def effect_words(contribution: float) -> str:
    """'strongly raises risk', 'raises risk', 'slightly lowers risk', 'hardly changes risk'."""
    size = abs(contribution)
    if size < SLIGHT:
        return "hardly changes risk"
    verb = "raises" if contribution > 0 else "lowers"
    if size >= STRONG:
        return f"strongly {verb} risk"
    if size >= NOTABLE:
        return f"{verb} risk"
    return f"slightly {verb} risk"


def readable_name(feature: str) -> str:
    """Column names as words: monthly_charges -> 'monthly charges'."""
    return feature.replace("_", " ").strip()


@dataclass(frozen=True)
class Effect:
    """One feature's part in a score: its value and signed contribution to the log-odds."""

    feature: str
    value: Any  # the customer's value (number, category name, None when missing); absent for stored reasons
    contribution: float
    spec: FeatureSpec | None = None
    has_value: bool = True

    @property
    def words(self) -> str:
        """'contract Month-to-month raises risk'; without a value: 'contract raises risk'."""
        subject = readable_name(self.feature)
        if self.has_value:
            subject = f"{subject} {value_text(self.value, self.spec)}"
        return f"{subject} {effect_words(self.contribution)}"

    @property
    def sentence(self) -> str:
        """The words with the number alongside: 'contract Month-to-month raises risk (+0.84)'."""
        return f"{self.words} ({self.contribution:+.2f})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"feature": self.feature}
        if self.has_value:
            out["value"] = self.value
        out.update({"contribution": self.contribution, "words": self.words})
        return out


def stored_effects(reasons: Sequence[Mapping[str, Any]] | None, schema: Schema | None = None) -> list[Effect]:
    """Effects of the risk table's stored reasons (feature and contribution: no value is stored)."""
    specs = schema.by_name if schema is not None else {}
    return [
        Effect(r["feature"], None, float(r["contribution"]), specs.get(r["feature"]), has_value=False)
        for r in reasons or []
    ]


def decoded_values(features: Mapping[str, np.ndarray], schema: Schema) -> dict[str, list[Any]]:
    """`profile.feature_arrays` columns back to values: ints, floats, category names, None for missing."""
    out: dict[str, list[Any]] = {}
    for spec in schema.features:
        column = np.asarray(features[spec.name], dtype=np.float64)
        present = np.isfinite(column)
        if spec.is_numeric:
            kind: Any = int if spec.type == "int" else float
            out[spec.name] = [kind(v) if ok else None for v, ok in zip(column.tolist(), present.tolist())]
        else:
            out[spec.name] = [spec.values[int(v)] if ok else None for v, ok in zip(column.tolist(), present.tolist())]
    return out


@dataclass(frozen=True)
class Explanation:
    """A customer's score and every feature's effect, largest first."""

    customer_id: str
    probability: float
    churn: bool  # at or above the model's decision threshold
    band: str | None
    base: float  # the average customer's log-odds (TreeSHAP bias)
    effects: tuple[Effect, ...]

    @property
    def margin(self) -> float:
        """The model's log-odds for this customer: the base plus every effect."""
        return self.base + sum(e.contribution for e in self.effects)

    def lines(self) -> list[str]:
        """The explanation as text: a headline, one line per feature, how the numbers add up."""
        verdict = "likely to churn" if self.churn else "not predicted to churn"
        band = f", {self.band} risk band" if self.band else ""
        out = [f"customer {self.customer_id}: churn probability {self.probability:.2f} ({verdict}{band})", ""]
        out.append("why, largest effect first (the number: contribution to the log-odds of churning):")
        width = max((len(e.words) for e in self.effects), default=0)
        for effect in self.effects:
            mark = "+" if effect.contribution > 0 else "-" if effect.contribution < 0 else " "
            out.append(f"  {mark} {effect.words:<{width}}  {effect.contribution:+.3f}")
        out.append("")
        out.append(
            f"an average customer starts at {self.base:+.3f}; with these effects {self.margin:+.3f} log-odds, "
            f"which the model's calibration turns into the probability {self.probability:.3f}"
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "churn_probability": self.probability,
            "churn_prediction": self.churn,
            "risk_band": self.band,
            "base_log_odds": self.base,
            "log_odds": self.margin,
            "effects": [e.to_dict() for e in self.effects],
        }


def explain(
    model: CompiledModel, clean: pa.Table, bands: Sequence[str] | None = None
) -> list[Explanation]:
    """Every feature's effect for each validated customer (the model's schema), largest first.

    `bands`: each row's risk band name, when the caller has one (scoring.ScoringConfig).
    """
    schema = model.schema
    features = feature_arrays(clean, schema)
    x = model.encode(features)
    if x.shape[0] == 0:
        return []
    probability = model.probability(x)
    contributions = model.contributions(x)
    values = decoded_values(features, schema)
    names = model.feature_order
    ids = clean.column(schema.id_field).to_pylist()
    out = []
    for i in range(x.shape[0]):
        row = contributions[i, :-1]
        order = np.argsort(-np.abs(row), kind="stable")
        effects = tuple(
            Effect(names[j], values[names[j]][i], float(row[j]), schema.by_name[names[j]]) for j in order.tolist()
        )
        out.append(
            Explanation(
                customer_id=str(ids[i]),
                probability=float(probability[i]),
                churn=bool(probability[i] >= model.threshold),
                band=bands[i] if bands is not None else None,
                base=float(contributions[i, -1]),
                effects=effects,
            )
        )
    return out


@dataclass(frozen=True)
class ReasonColumns:
    """The j-th largest effect of every row of a chunk, as columns (for files of many rows)."""

    feature: pa.Array  # string
    value: pa.Array  # string: value_text of the customer's value
    contribution: np.ndarray  # float64
    words: pa.Array  # string: Effect.sentence


_PHRASES = ("strongly lowers risk", "lowers risk", "slightly lowers risk", "hardly changes risk",
            "slightly raises risk", "raises risk", "strongly raises risk")


def reason_columns(model: CompiledModel, features: Mapping[str, np.ndarray], k: int) -> list[ReasonColumns]:
    """The k largest effects of each row of `profile.feature_arrays` columns, vectorised.

    The same choice as CompiledModel.top_reasons (the risk table's reasons) and the same words
    as Effect.sentence, built column-wise so a million-row file costs seconds, not minutes.
    """
    schema = model.schema
    n = len(features[schema.features[0].name]) if schema.features else 0
    k = min(k, len(model.feature_order))
    if k <= 0:
        return []
    if n:
        order, contribution = model.top_reasons(model.encode(dict(features)), k)
    else:
        order, contribution = np.zeros((0, k), dtype=np.int64), np.zeros((0, k))
    names = model.feature_order
    texts = [_value_texts(np.asarray(features[name], dtype=np.float64), schema.by_name[name]) for name in names]
    feature_names = pa.array(names, pa.string())
    readable = pa.array([readable_name(name) for name in names], pa.string())
    out = []
    for j in range(k):
        index = pa.array(order[:, j].astype(np.int32))
        value = pc.choose(index, *texts) if n else pa.array([], pa.string())
        c = np.ascontiguousarray(contribution[:, j], dtype=np.float64)
        phrase = pa.array(_PHRASES, pa.string()).take(pa.array(_phrase_index(c)))
        number = pa.array(np.char.mod("(%+.2f)", c) if n else [], pa.string())
        words = pc.binary_join_element_wise(readable.take(index), value, phrase, number, " ")
        out.append(ReasonColumns(feature_names.take(index), value, c, words))
    return out


def _phrase_index(contribution: np.ndarray) -> np.ndarray:
    """Index into _PHRASES of each contribution (the thresholds of effect_words)."""
    size = np.abs(contribution)
    steps = np.where(size >= STRONG, 3, np.where(size >= NOTABLE, 2, np.where(size >= SLIGHT, 1, 0)))
    return (3 + np.sign(contribution).astype(np.int32) * steps).astype(np.int32)


def _value_texts(column: np.ndarray, spec: FeatureSpec) -> pa.Array:
    """value_text of every value of one feature column (codes for categories, NaN for missing)."""
    present = np.isfinite(column)
    if spec.is_numeric:
        fixed = np.char.mod("%d", np.where(present, column, 0).astype(np.int64)) if spec.type == "int" else (
            np.char.rstrip(np.char.rstrip(np.char.mod("%.2f", np.where(present, column, 0.0)), "0"), ".")
        )
        text = pa.array(fixed if column.size else [], pa.string())
        if spec.unit:
            text = pc.binary_join_element_wise(text, pa.scalar(spec.unit), " ")
    else:
        codes = np.where(present, column, 0).astype(np.int32)
        text = pa.array(spec.values, pa.string()).take(pa.array(codes))
    return pc.if_else(pa.array(present), text, pa.scalar(MISSING))
