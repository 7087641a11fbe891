"""The budgeted hyperparameter search, scored on the cross-fit's out-of-fold predictions.

Optuna (TPE) proposes configurations; each is cross-fitted on the same K folds of the
non-test rows and judged by its out-of-fold log-loss (or 1 - ROC-AUC, `tuning.objective`),
so neither the test split nor any row a model was fitted on is used to judge it. The
defaults of params.yaml are the first trial, so the search never ships worse than them on
its own objective, and (log-loss) a winner must beat them by more than one standard error
of the paired per-row difference: on a small table the best of 60 trials is partly luck,
and the defaults are the robust choice then. The wall-clock budget grows with the rows; the
search also stops after `max_trials`, or `patience` trials in a row without improvement.
When the budget runs out before any trial finishes, training falls back to the defaults
and says so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churn.crossfit import BudgetSpent, CrossFit, cross_fit
from churn.params import Params

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """The winning overrides and their cross-fit, every trial, and whether the defaults were forced."""

    best: dict[str, Any]
    crossfit: CrossFit
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    budget_seconds: float = 0.0
    fallback: str = ""  # why the defaults were used without a finished trial ("" when not)

    @property
    def searched(self) -> bool:
        return bool(self.trials)


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


def starting_points(params: Params) -> list[dict[str, Any]]:
    """Trials run first: the shipped defaults, then a deeper, less subsampled model (flag x usage
    interactions need more leaves and columns per tree than the additive defaults give)."""
    space = params.tuning.space
    hp = params.hyperparameters
    deeper = {"num_leaves": 31, "min_child_samples": 20, "colsample_bytree": 0.9, "subsample": 0.9,
              "learning_rate": 0.05, "reg_alpha": 0.01, "reg_lambda": 0.1, "class_weight": None}
    points = []
    for source in (hp, {**hp, **deeper}):
        point = {}
        for name, spec in space.items():
            if name not in source:
                continue
            value = source[name]
            if isinstance(spec, list):
                if value in spec:
                    point[name] = value
            else:
                point[name] = min(max(value, spec["low"]), spec["high"])
        points.append(point)
    return points


def search(params: Params, frame: pd.DataFrame, y: np.ndarray) -> SearchResult:
    """Cross-fit the defaults (search off) or run the budgeted search (search on)."""
    config = params.tuning
    started = time.perf_counter()
    if not config.enabled:
        return SearchResult(best={}, crossfit=cross_fit(params, frame, y), seconds=time.perf_counter() - started)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = config.budget.seconds(len(y))
    deadline = started + budget
    trials: list[dict[str, Any]] = []
    fits: dict[int, CrossFit] = {}

    def objective(trial: Any) -> float:
        chosen = _suggest(trial, config.space)
        t0 = time.perf_counter()
        try:
            fitted = cross_fit(params, frame, y, chosen, deadline=deadline)
        except BudgetSpent as err:
            trial.study.stop()
            raise optuna.TrialPruned("budget spent") from err
        loss = fitted.loss(config.objective)
        scores = fitted.scores()
        fits[trial.number] = fitted
        trials.append({"number": trial.number, "params": chosen, "cv": scores, "loss": loss,
                       "seconds": time.perf_counter() - t0})
        log.info("tuning trial", extra={
            "trial": trial.number, "objective": config.objective, "loss": round(loss, 5),
            "cv_roc_auc": round(scores["roc_auc"], 4), "trees": round(scores["trees_mean"]),
            "elapsed_s": round(time.perf_counter() - started, 1), "budget_s": round(budget, 1),
        })
        return loss

    def patience(study: Any, trial: Any) -> None:
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done and trial.number - study.best_trial.number >= config.patience:
            study.stop()

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=params.seed))
    for point in starting_points(params):
        study.enqueue_trial(point, skip_if_exists=True)
    study.optimize(objective, n_trials=config.max_trials, timeout=budget, callbacks=[patience],
                   gc_after_trial=False)
    if not trials:
        reason = f"search budget of {budget:.0f}s ran out before one trial finished: the defaults are used"
        log.warning("search fell back to the defaults", extra={"reason": reason, "budget_s": round(budget, 1)})
        return SearchResult(best={}, crossfit=cross_fit(params, frame, y), seconds=time.perf_counter() - started,
                            budget_seconds=budget, fallback=reason)
    best = choose(trials, fits, config.objective)
    log.info("search finished", extra={"trials": len(trials), "best_trial": best["number"],
                                       "loss": round(best["loss"], 5), "seconds": round(time.perf_counter() - started)})
    return SearchResult(best=best["params"], crossfit=fits[best["number"]], trials=trials,
                        seconds=time.perf_counter() - started, budget_seconds=budget)


def choose(trials: list[dict[str, Any]], fits: dict[int, CrossFit], objective: str) -> dict[str, Any]:
    """The trial with the lowest loss, unless (log-loss) it beats the defaults' trial (number 0)
    by less than one standard error of their paired per-row loss difference."""
    best = min(trials, key=lambda t: t["loss"])
    default = next((t for t in trials if t["number"] == 0), None)
    if objective != "log_loss" or default is None or best is default:
        return best
    gain = fits[0].row_losses() - fits[best["number"]].row_losses()
    error = float(np.std(gain, ddof=1) / np.sqrt(gain.size))
    if float(np.mean(gain)) > error:
        return best
    log.info("search keeps the defaults: the best trial is within one standard error of them",
             extra={"best_trial": best["number"], "gain": round(float(np.mean(gain)), 5), "error": round(error, 5)})
    return default
