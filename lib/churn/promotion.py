"""Champion/challenger: promote only a model that beats production on the same test rows, beyond chance.

Both models score the identical fresh test rows; a paired bootstrap (the same resampled
rows for both) gives a confidence interval of the metric's difference. The challenger
wins only when the difference is above `promotion.min_improvement`, the interval's lower
bound is above zero (a small or noisy test set cannot decide), and its ROC-AUC is not
worse than the champion's beyond `promotion.roc_auc_tolerance`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from churn.config import PromotionConfig

Rule = PromotionConfig  # the `promotion:` section is the rule

# Resamples per vectorised batch: bounds memory at BATCH x rows indices.
BATCH = 64


@dataclass(frozen=True)
class Predictions:
    """One model's probabilities and decision threshold on the test rows (labels `y`)."""

    y: np.ndarray
    probability: np.ndarray
    threshold: float

    def score(self, metric: str, rows: np.ndarray | None = None) -> float:
        y, p = (self.y, self.probability) if rows is None else (self.y[rows], self.probability[rows])
        if metric == "f1":
            return _f1(y.astype(bool), p >= self.threshold)
        if len(np.unique(y)) < 2:
            return float("nan")
        scorer: Callable[..., Any] = roc_auc_score if metric == "roc_auc" else average_precision_score
        return float(scorer(y, p))


@dataclass(frozen=True)
class Interval:
    """The challenger-minus-champion difference and its paired-bootstrap interval."""

    delta: float
    low: float
    high: float
    confidence: float
    samples: int


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
    delta: float | None = None
    delta_low: float | None = None
    delta_high: float | None = None
    confidence: float | None = None
    test_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f1(y: np.ndarray, predicted: np.ndarray) -> float:
    tp = int(np.count_nonzero(y & predicted))
    wrong = int(np.count_nonzero(y != predicted))
    return 2 * tp / (2 * tp + wrong) if tp else 0.0


def paired_bootstrap(challenger: Predictions, champion: Predictions, metric: str, samples: int,
                     confidence: float, seed: int = 0) -> Interval:
    """Percentile interval of metric(challenger) - metric(champion) over rows resampled with replacement,
    the same rows for both models in every resample (so their shared noise cancels)."""
    n = challenger.y.size
    rng = np.random.default_rng(seed)
    deltas = np.empty(samples)
    if metric == "f1":
        y = challenger.y.astype(bool)
        a, b = challenger.probability >= challenger.threshold, champion.probability >= champion.threshold
        done = 0
        while done < samples:
            take = min(BATCH, samples - done)
            rows = rng.integers(0, n, size=(take, n))
            ys, pa_, pb = y[rows], a[rows], b[rows]
            deltas[done:done + take] = _f1_rows(ys, pa_) - _f1_rows(ys, pb)
            done += take
    else:
        for i in range(samples):
            rows = rng.integers(0, n, size=n)
            deltas[i] = challenger.score(metric, rows) - champion.score(metric, rows)
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(deltas, [tail, 100 - tail])
    delta = challenger.score(metric) - champion.score(metric)
    return Interval(float(delta), float(low), float(high), confidence, samples)


def _f1_rows(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of each row of a (resamples, rows) batch."""
    tp = np.count_nonzero(y & predicted, axis=1)
    wrong = np.count_nonzero(y != predicted, axis=1)
    return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)


def decide(challenger: Predictions, champion: Predictions | None, rule: Rule, seed: int = 0) -> Decision:
    """Compare two models on the same test rows; the first model is always promoted."""
    score = challenger.score(rule.metric)
    auc = challenger.score("roc_auc")
    rows = int(challenger.y.size)
    if champion is None:
        return Decision(True, "no production model yet", rule.metric, score, None, rule.min_improvement, auc, None,
                        test_rows=rows)
    if champion.y.shape != challenger.y.shape or not np.array_equal(champion.y, challenger.y):
        raise ValueError("champion and challenger must be judged on the same test rows")
    best, best_auc = champion.score(rule.metric), champion.score("roc_auc")
    interval = paired_bootstrap(challenger, champion, rule.metric, rule.bootstrap_samples, rule.confidence, seed)
    shown = f"{rule.metric} {score:.4f} vs production {best:.4f} (difference {interval.delta:+.4f}, " \
            f"{interval.confidence:.0%} interval [{interval.low:+.4f}, {interval.high:+.4f}] on {rows} rows)"
    if not interval.delta > rule.min_improvement:
        promote, reason = False, f"{shown}: does not beat production by more than {rule.min_improvement}"
    elif not interval.low > 0:
        promote, reason = False, f"{shown}: the interval reaches 0, too close to call on this test set"
    elif auc < best_auc - rule.roc_auc_tolerance:
        promote, reason = False, (f"roc_auc {auc:.4f} is worse than production {best_auc:.4f} beyond tolerance "
                                  f"{rule.roc_auc_tolerance}")
    else:
        promote, reason = True, f"{shown}: beats production by more than {rule.min_improvement}"
    return Decision(promote, reason, rule.metric, score, best, rule.min_improvement, auc, best_auc,
                    interval.delta, interval.low, interval.high, interval.confidence, rows)
