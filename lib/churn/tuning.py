"""Cross-validation and a budgeted hyperparameter search on the training part only.

Optuna (TPE) is used because it enforces both a trial budget and a wall-clock budget
natively and ships with MLflow's dependency set; every trial is scored by stratified
K-fold ROC-AUC with early stopping inside each fold, so neither the validation split
(calibration, threshold) nor the test split is ever touched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from churn.model import build_classifier, build_encoder, fit_classifier
from churn.params import Params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CvResult:
    roc_auc_mean: float
    roc_auc_std: float
    brier_mean: float
    brier_std: float
    trees_mean: float
    folds: int

    def to_dict(self) -> dict[str, float]:
        return {
            "roc_auc_mean": self.roc_auc_mean,
            "roc_auc_std": self.roc_auc_std,
            "brier_mean": self.brier_mean,
            "brier_std": self.brier_std,
            "trees_mean": self.trees_mean,
            "folds": self.folds,
        }


@dataclass
class SearchResult:
    best: dict[str, Any]
    best_cv: CvResult | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def cross_validate(
    params: Params, frame: pd.DataFrame, y: np.ndarray, overrides: dict[str, Any] | None = None
) -> CvResult:
    """Stratified K-fold ROC-AUC and Brier (uncalibrated) of one configuration."""
    section = params.section("tuning")
    folds = int(section.get("cv_folds", 3))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=params.seed)
    model_section = params.section("model")
    aucs, briers, trees = [], [], []
    for fit_rows, held_rows in splitter.split(frame, y):
        encoder = build_encoder(params.schema, str(model_section.get("encoding", "native")),
                                str(model_section.get("impute", "median")))
        x_fit = encoder.fit_transform(frame.iloc[fit_rows])
        x_held = encoder.transform(frame.iloc[held_rows])
        classifier = build_classifier(params, overrides)
        best = fit_classifier(params, classifier, x_fit, y[fit_rows], x_held, y[held_rows])
        probability = np.asarray(classifier.predict_proba(x_held))[:, 1]
        aucs.append(roc_auc_score(y[held_rows], probability))
        briers.append(brier_score_loss(y[held_rows], probability))
        trees.append(best)
    return CvResult(
        roc_auc_mean=float(np.mean(aucs)),
        roc_auc_std=float(np.std(aucs)),
        brier_mean=float(np.mean(briers)),
        brier_std=float(np.std(briers)),
        trees_mean=float(np.mean(trees)),
        folds=folds,
    )


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one configuration from the search space declared in params.yaml."""
    chosen: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            chosen[name] = trial.suggest_categorical(name, spec)
        elif spec.get("type") == "int":
            chosen[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        else:
            chosen[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return chosen


def search(params: Params, frame: pd.DataFrame, y: np.ndarray) -> SearchResult:
    """Run the budgeted search (trials and seconds from params.yaml `tuning:`)."""
    import optuna

    section = params.section("tuning")
    if not section.get("enabled", False):
        return SearchResult(best={}, best_cv=None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dict(section.get("space", {}))
    trials: list[dict[str, Any]] = []
    started = time.perf_counter()

    def objective(trial: Any) -> float:
        chosen = _suggest(trial, space)
        t0 = time.perf_counter()
        result = cross_validate(params, frame, y, chosen)
        trials.append({"number": trial.number, "params": chosen, "cv": result.to_dict(),
                       "seconds": time.perf_counter() - t0})
        log.info("tuning trial", extra={"trial": trial.number, "cv_roc_auc": round(result.roc_auc_mean, 4)})
        return result.roc_auc_mean

    sampler = optuna.samplers.TPESampler(seed=params.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(
        objective,
        n_trials=int(section.get("max_trials", 20)),
        timeout=float(section.get("timeout_seconds", 300)),
        gc_after_trial=False,
    )
    best_trial = max(trials, key=lambda t: t["cv"]["roc_auc_mean"])
    cv = best_trial["cv"]
    best_cv = CvResult(**{k: cv[k] for k in CvResult.__dataclass_fields__})
    return SearchResult(best=best_trial["params"], best_cv=best_cv, trials=trials,
                        seconds=time.perf_counter() - started)
