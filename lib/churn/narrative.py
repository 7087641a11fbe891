"""What `churn explain` tells a retention manager about one customer, in sentences.

Three stories: the nightly risk row (its probability, band and the top reasons it stored,
which carry no values), a rejection (why the customer has no row), and how a full
re-scored explanation relates to the stored row. Pure core: dicts in, lines out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from churn.explanation import Explanation, stored_effects
from churn.schema import Schema

SAME = 1e-9  # probabilities closer than this are the same score


def verdict(probability: float, churn: bool | None, band: str | None) -> str:
    """'churn probability 0.58 (likely to churn, high risk band)'."""
    parts = ["likely to churn" if churn else "not predicted to churn"] if churn is not None else []
    if band:
        parts.append(f"{band} risk band")
    return f"churn probability {probability:.2f}" + (f" ({', '.join(parts)})" if parts else "")


def stored_lines(
    row: Mapping[str, Any],
    schema: Schema | None,
    reason_threshold: float,
    full_hint: str | None = None,
) -> list[str]:
    """The nightly row of one customer: score, rank, model and the stored reasons in words."""
    day = _day(row.get("run_date"))
    out = [f"customer {row['customer_id']} on {day}: "
           f"{verdict(row['churn_probability'], row.get('churn_prediction'), row.get('risk_band'))}"]
    details = []
    if row.get("rank") is not None:
        count = int(row.get("shard_count") or 1)
        where = "" if count == 1 else f" within shard {row.get('shard')} of {count}"
        details.append(f"rank {row['rank']}{where}")
    if row.get("revenue_at_risk") is not None:
        details.append(f"revenue at risk {row['revenue_at_risk']:.2f}")
    details.append(f"scored by model {row.get('model_name', '?')} version {row.get('model_version', '?')}")
    out.append("; ".join(details))
    effects = stored_effects(row.get("reasons"), schema)
    out.append("")
    if effects:
        out.append("top reasons stored by the nightly run (largest first; the number: contribution to the log-odds):")
        width = max(len(e.words) for e in effects)
        out += [f"  {'+' if e.contribution > 0 else '-'} {e.words:<{width}}  {e.contribution:+.3f}" for e in effects]
        out.append("")
        out.append(
            f"the risk table keeps only the top {len(effects)} reasons, without the customer's values, and only "
            f"for customers at or above probability {reason_threshold:.2f} (params scoring.reason_threshold)"
        )
    else:
        out.append(
            f"no reasons stored: the nightly run keeps them only for customers at or above probability "
            f"{reason_threshold:.2f} (params scoring.reason_threshold)"
        )
    if full_hint:
        out.append(f"for every feature with its value: {full_hint}")
    return out


def rejected_lines(customer_id: str, run_date: Any, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why a customer has no risk row: each rejected record's failing fields, values and rules."""
    out = [f"customer {customer_id} on {_day(run_date)}: not scored, its record was rejected by validation"]
    for record in records:
        errors = record.get("errors")
        problems = json.loads(errors) if isinstance(errors, str) else (errors or [])
        for problem in problems:
            out.append(f"  {problem_text(problem)}")
    out.append("fix the record at its source; the next nightly run scores it")
    return out


def comparison(stored: Mapping[str, Any], explained: Explanation, version: str) -> list[str]:
    """How a re-scored explanation relates to the stored row (same model? same record?)."""
    stored_version = str(stored.get("model_version"))
    day = _day(stored.get("run_date"))
    if stored_version != str(version):
        return [
            f"note: the stored row was scored by model version {stored_version}; this explanation uses version "
            f"{version} (the model found now: pass --model-uri to choose another), so its numbers can differ"
        ]
    if abs(float(stored["churn_probability"]) - explained.probability) <= SAME:
        return [f"re-scored with the same model (version {version}) to the same probability: these are the "
                f"effects behind the score of {day}"]
    return [
        f"note: the same model now gives {explained.probability:.3f}, the stored score of {day} is "
        f"{float(stored['churn_probability']):.3f}: the customer's record changed since; the effects below explain "
        "the record as it is now"
    ]


def problem_text(problem: Mapping[str, Any]) -> str:
    """'tenure: out_of_bounds (value -5); must be between 0 and 1200'."""
    return f"{problem.get('field')}: {problem.get('reason')}{_given(problem)}{_rule(problem)}"


def _given(problem: Mapping[str, Any]) -> str:
    if "value" not in problem or (problem["value"] is None and problem.get("reason") == "missing"):
        return ""
    return f" (value {json.dumps(problem['value'], default=str)[:80]})"


def _rule(problem: Mapping[str, Any]) -> str:
    if problem.get("allowed"):
        return f"; allowed: {', '.join(str(v) for v in problem['allowed'])}"
    low, high = problem.get("min"), problem.get("max")
    if low is not None and high is not None:
        return f"; must be between {low:g} and {high:g}"
    if low is not None:
        return f"; must be at least {low:g}"
    if high is not None:
        return f"; must be at most {high:g}"
    return ""


def _day(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
