"""`churn predict`'s rows: every input record back, in input order, scored or rejected with reasons.

The same validator, compiled model and scoring as the nightly job (validation.validate,
scoring.score); the reasons are the risk table's (CompiledModel.top_reasons) with each
feature's value and the words of churn.explanation. Pure core: Arrow chunks in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn import scoring
from churn.answers import CHURN, NO_CHURN
from churn.compiled import CompiledModel
from churn.explanation import reason_columns
from churn.validation import validate

SCORED, REJECTED = "scored", "rejected"


def prediction_schema(reasons: int) -> pa.Schema:
    """The output columns with `reasons` reason_k / reason_k_value / reason_k_contribution triples."""
    fields = [
        ("source_row", pa.int64()),  # 0-based position of the record in the input (data rows, header excluded)
        ("customer_id", pa.string()),
        ("status", pa.string()),  # scored | rejected
        ("churn_probability", pa.float64()),
        ("prediction", pa.string()),  # Churn | No Churn, at the model's threshold
        ("risk_band", pa.string()),
        ("revenue_at_risk", pa.float64()),
    ]
    for k in range(1, reasons + 1):
        fields += [(f"reason_{k}", pa.string()), (f"reason_{k}_value", pa.string()),
                   (f"reason_{k}_contribution", pa.float64())]
    if reasons:
        fields.append(("reasons", pa.string()))  # the reasons in words, largest first, '; '-separated
    fields += [
        ("rejected_field", pa.string()),  # a rejected record's first failing field
        ("rejected_reason", pa.string()),  # and its reason (missing, wrong_type, unknown_category, ...)
        ("errors", pa.string()),  # JSON: every failing field with its reason, value and rule
        ("model_version", pa.string()),
    ]
    return pa.schema(fields)


@dataclass(frozen=True)
class Predicted:
    """One chunk's output rows and its counts."""

    table: pa.Table
    scored: int
    rejected: int


class Predictor:
    """Validates and scores chunks of a file with one model and one scoring configuration."""

    def __init__(self, model: CompiledModel, config: scoring.ScoringConfig, run: scoring.RunInfo, reasons: int) -> None:
        self.model = model
        self.config = config
        self.run = run
        self.reasons = max(0, min(reasons, len(model.feature_order)))
        self.schema = prediction_schema(self.reasons)

    def chunk(self, data: pa.Table, offset: int) -> Predicted:
        """The rows of `data` (raw columns as read), whose first row is input row `offset`."""
        result = validate(data, self.model.schema)
        scored = scoring.score(result.clean, self.model, self.config, self.run, reasons=False)
        parts = [self._scored(result.clean_rows + offset, scored)]
        if result.rejected.num_rows:
            parts.append(self._rejected(result.rejected, offset))
        table = pa.concat_tables(parts).sort_by("source_row") if len(parts) > 1 else parts[0]
        return Predicted(table, result.clean.num_rows, result.rejected.num_rows)

    def _scored(self, rows: np.ndarray, scored: scoring.Scored) -> pa.Table:
        risk = scored.table
        n = risk.num_rows
        columns: dict[str, pa.Array | pa.ChunkedArray] = {
            "source_row": pa.array(rows.astype(np.int64)),
            "customer_id": risk.column("customer_id"),
            "status": _repeat(SCORED, n),
            "churn_probability": risk.column("churn_probability"),
            "prediction": pc.if_else(risk.column("churn_prediction"), CHURN, NO_CHURN),
            "risk_band": risk.column("risk_band"),
            "revenue_at_risk": risk.column("revenue_at_risk"),
        }
        reasons = reason_columns(self.model, scored.features, self.reasons) if n else []
        for k, reason in enumerate(reasons, start=1):
            columns[f"reason_{k}"] = reason.feature
            columns[f"reason_{k}_value"] = reason.value
            columns[f"reason_{k}_contribution"] = pa.array(reason.contribution)
        if self.reasons:
            columns["reasons"] = (
                pc.binary_join_element_wise(*(r.words for r in reasons), "; ") if n else pa.nulls(0, pa.string())
            )
        return _table(columns, self.schema, n, self.run.model_version)

    def _rejected(self, rejected: pa.Table, offset: int) -> pa.Table:
        n = rejected.num_rows
        columns: dict[str, pa.Array | pa.ChunkedArray] = {
            "source_row": pc.add(rejected.column("row"), offset),
            "customer_id": rejected.column("customer_id"),
            "status": _repeat(REJECTED, n),
            "rejected_field": rejected.column("field"),
            "rejected_reason": rejected.column("reason"),
            "errors": rejected.column("errors"),
        }
        return _table(columns, self.schema, n, self.run.model_version)


def _repeat(text: str, n: int) -> pa.Array:
    return pa.array([text], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32)))


def _table(columns: dict[str, pa.Array | pa.ChunkedArray], schema: pa.Schema, n: int, version: str) -> pa.Table:
    """`columns` in `schema`'s order, the absent ones null, model_version constant."""
    columns = {**columns, "model_version": _repeat(version, n)}
    return pa.table(
        [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema], schema=schema
    )
