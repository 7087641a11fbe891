"""Champion/challenger: promote only a model that beats production on the same test rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    metric: str = "f1"
    min_improvement: float = 0.0
    roc_auc_tolerance: float = 0.01

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> Rule:
        return cls(
            metric=str(section.get("metric", "f1")),
            min_improvement=float(section.get("min_improvement", 0.0)),
            roc_auc_tolerance=float(section.get("roc_auc_tolerance", 0.01)),
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    margin: float
    challenger_roc_auc: float
    champion_roc_auc: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, rule: Rule) -> Decision:
    """Compare metrics computed on the same test set; the first model is always promoted."""
    score = float(challenger[rule.metric])
    auc = float(challenger["roc_auc"])
    if champion is None:
        return Decision(True, "no production model yet", rule.metric, score, None, rule.min_improvement, auc, None)
    best = float(champion[rule.metric])
    best_auc = float(champion["roc_auc"])
    if not score > best + rule.min_improvement:
        reason = f"{rule.metric} {score:.4f} does not beat production {best:.4f} by more than {rule.min_improvement}"
        return Decision(False, reason, rule.metric, score, best, rule.min_improvement, auc, best_auc)
    if auc < best_auc - rule.roc_auc_tolerance:
        reason = f"roc_auc {auc:.4f} is worse than production {best_auc:.4f} beyond tolerance {rule.roc_auc_tolerance}"
        return Decision(False, reason, rule.metric, score, best, rule.min_improvement, auc, best_auc)
    reason = f"{rule.metric} {score:.4f} beats production {best:.4f} by more than {rule.min_improvement}"
    return Decision(True, reason, rule.metric, score, best, rule.min_improvement, auc, best_auc)
