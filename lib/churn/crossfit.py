"""K-fold cross-fit over every non-test row: out-of-fold margins and the early-stopped tree count.

Each fold's model is fitted on K-1 folds and stops early on the one it then predicts, so
every row gets a margin from a model that never saw it. Those out-of-fold margins are
what the calibrator, the decision threshold and the search's objective are computed on;
the folds' mean tree count sizes the final refit on all rows. The test split is never
passed here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import _SigmoidCalibration
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from churn.model import build_classifier, build_encoder, fit_classifier
from churn.params import Params


class BudgetSpent(Exception):
    """The search's deadline passed between two folds: the trial is abandoned."""


@dataclass
class CrossFit:
    """Out-of-fold raw margins (row order of the input), the labels and each fold's trees."""

    y: np.ndarray
    margin: np.ndarray
    trees: list[int]
    # (encoder, classifier) per fold, kept only on request (the fold-ensemble measurement).
    models: list[tuple[Any, Any]] = field(default_factory=list, repr=False)

    @property
    def folds(self) -> int:
        return len(self.trees)

    @property
    def tree_count(self) -> int:
        """Trees of the final refit: the folds' mean early-stopped count."""
        return max(1, round(float(np.mean(self.trees))))

    def probability(self) -> np.ndarray:
        """Out-of-fold probabilities after a sigmoid fitted on them (what the search compares)."""
        calibrator = _SigmoidCalibration().fit(self.margin, self.y)
        return np.asarray(calibrator.predict(self.margin), dtype=np.float64)

    def row_losses(self) -> np.ndarray:
        """Each row's log-loss under `probability()` (for paired comparisons of two cross-fits)."""
        p = np.clip(self.probability(), 1e-7, 1 - 1e-7)
        return np.asarray(-(self.y * np.log(p) + (1 - self.y) * np.log(1 - p)))

    def scores(self) -> dict[str, float]:
        """Out-of-fold log-loss and ROC-AUC, plus the mean tree count."""
        probability = np.clip(self.probability(), 1e-7, 1 - 1e-7)
        return {
            "log_loss": float(log_loss(self.y, probability, labels=[0, 1])),
            "roc_auc": float(roc_auc_score(self.y, self.margin)),
            "trees_mean": float(np.mean(self.trees)),
            "folds": float(self.folds),
        }

    def loss(self, objective: str) -> float:
        """What the search minimises: log-loss, or 1 - ROC-AUC."""
        scores = self.scores()
        return scores["log_loss"] if objective == "log_loss" else 1.0 - scores["roc_auc"]


def folds(params: Params, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The stratified K folds of the non-test rows, fixed by split.seed (the same for every trial)."""
    splitter = StratifiedKFold(n_splits=params.split.folds, shuffle=True, random_state=params.split.seed)
    return list(splitter.split(np.zeros(len(y)), y))


def cross_fit(
    params: Params,
    frame: pd.DataFrame,
    y: np.ndarray,
    overrides: dict[str, Any] | None = None,
    keep_models: bool = False,
    deadline: float | None = None,
) -> CrossFit:
    """Fit one model per fold (early stopping on the held fold) and collect out-of-fold margins.

    With a `deadline` (time.perf_counter() seconds), BudgetSpent is raised once it has passed
    after a fold, so a search never overruns its budget by more than one fold.
    """
    margin = np.empty(len(y), dtype=np.float64)
    trees: list[int] = []
    models: list[tuple[Any, Any]] = []
    for fit_rows, held_rows in folds(params, y):
        encoder = build_encoder(params.schema, params.model.encoding, params.model.impute)
        x_fit = encoder.fit_transform(frame.iloc[fit_rows])
        x_held = encoder.transform(frame.iloc[held_rows])
        classifier = build_classifier(params, overrides, rows=len(fit_rows))
        trees.append(fit_classifier(params, classifier, x_fit, y[fit_rows], x_held, y[held_rows]))
        margin[held_rows] = np.asarray(classifier.predict(x_held, raw_score=True))
        if keep_models:
            models.append((encoder, classifier))
        if deadline is not None and time.perf_counter() > deadline:
            raise BudgetSpent(f"budget spent after {len(trees)} of {params.split.folds} folds")
    return CrossFit(y=np.asarray(y), margin=margin, trees=trees, models=models)
