"""Scores to response bodies: JSON (the seed's object for one record), CSV and JSON lines.

Every record gets prediction, probability and risk band; the customer id when the request
gave one; the top reasons (feature, value, signed contribution to the log-odds) when asked.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn.media import Format

CHURN, NO_CHURN = "Churn", "No Churn"


@dataclass(frozen=True)
class Scores:
    """The outcome for each scored record, in request order."""

    probability: np.ndarray
    churn: np.ndarray  # bool: probability at or above the model's threshold
    band: list[str]
    ids: list[str | None]  # None where the request gave no id
    reasons: list[list[dict[str, Any]]] | None = None  # None when not asked for
    reasons_wanted: int = 0


def records(scores: Scores) -> list[dict[str, Any]]:
    """One answer object per record."""
    out = []
    for i, probability in enumerate(scores.probability.tolist()):
        item: dict[str, Any] = {
            "prediction": CHURN if scores.churn[i] else NO_CHURN,
            "probability": probability,
            "risk_band": scores.band[i],
        }
        if scores.ids[i] is not None:
            item["customer_id"] = scores.ids[i]
        if scores.reasons is not None:
            item["reasons"] = scores.reasons[i]
        out.append(item)
    return out


def render(scores: Scores, fmt: Format, single: bool) -> bytes:
    """The response body: JSON gives the bare object for a single-object request."""
    items = records(scores)
    if fmt == "json":
        payload: Any = items[0] if single else {"predictions": items}
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    if fmt == "jsonlines":
        return "".join(json.dumps(item, separators=(",", ":"), allow_nan=False) + "\n" for item in items).encode()
    return _csv(items, scores)


def _csv(items: list[dict[str, Any]], scores: Scores) -> bytes:
    with_ids = any(i is not None for i in scores.ids)
    header = (["customer_id"] if with_ids else []) + ["prediction", "probability", "risk_band"]
    for k in range(1, scores.reasons_wanted + 1 if scores.reasons is not None else 1):
        header += [f"reason_{k}", f"reason_{k}_value", f"reason_{k}_contribution"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for item in items:
        row: list[Any] = [item.get("customer_id", "")] if with_ids else []
        row += [item["prediction"], repr(item["probability"]), item["risk_band"]]
        for reason in item.get("reasons", []):
            row += [reason["feature"], "" if reason["value"] is None else reason["value"], repr(reason["contribution"])]
        writer.writerow(row)
    return buffer.getvalue().encode()

