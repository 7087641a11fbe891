"""Model quality across data families: the seed's hyperparameters, today's defaults, the new default path.

Usage:
  python bench/bench_quality.py [--families additive interaction threshold redundant telecom]
                                [--sizes 2000 5000 20000] [--repeats 2] [--holdout 50000] [--seed 1]
                                [--objectives] [--ensemble]
Sizes up to 500,000 work (the search budget is then capped at tuning.budget.max_seconds).

Every configuration trains on the same table (cut like production: 20% test split, the rest
to learn from) and is judged on a large fresh holdout of the same family (50,000 rows drawn
with another seed), so the figures measure the models, not the noise of a small test set.
Sizes up to 5,000 rows are repeated with --repeats seeds and averaged. The configurations:
- seed:   the seed's hyperparameters (200 trees, 31 leaves, balanced classes) on the path of
          the project before issue 10: fit on 60% of the rows, calibration and the F1
          threshold on the 20% validation part;
- today:  the hyperparameters of params.yaml on that same path (early stopping on a 15%
          slice of the training part);
- cf:     the new path without search: 5-fold cross-fit over every non-test row (out-of-fold
          calibration, threshold, tree count), refit on all of them;
- new:    the shipped params.yaml as production runs it: the budgeted search (objective
          log-loss) on the cross-fit, then the refit;
- new_auc (--objectives): the same search judged by ROC-AUC instead;
- ens (--ensemble): the fold ensemble of the new path's winner instead of the refit, with
          its size and scoring time next to the refit's;
- oracle: the family's true probabilities (F1 at the threshold that is best on the non-test rows).
F1 is at each model's own threshold. fit_s is the whole training (search included). The
machine may be shared: compare fit_s within one run only.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from churn import crossfit, evaluation, families, training
from churn.model import (
    TrainedModel,
    best_f1_threshold,
    build_classifier,
    build_encoder,
    fit_calibrator,
    fit_classifier,
    labels,
    to_frame,
)
from churn.params import Params, load_params
from churn.validation import validate

SEED_CONFIG = {
    "n_estimators": 200, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20,
    "reg_alpha": 0.0, "reg_lambda": 0.0, "colsample_bytree": 1.0, "subsample": 1.0, "subsample_freq": 0,
    "class_weight": "balanced", "model.early_stopping_rounds": 0,
}


def with_values(params: Params, values: dict[str, object]) -> Params:
    return params.with_overrides({k: str(v) if v is not None else "null" for k, v in values.items()})


def previous_path(params: Params, splits: training.Splits) -> TrainedModel:
    """Training as the project did before issue 10: 60% to fit, 20% to calibrate and pick the threshold."""
    schema = params.schema
    frame, y = to_frame(splits.train, schema), labels(splits.train, schema)
    encoder = build_encoder(schema, params.model.encoding, params.model.impute)
    x = encoder.fit_transform(frame)
    classifier = build_classifier(params, rows=len(y))
    if params.model.early_stopping_rounds > 0:
        fit_rows, stop_rows = train_test_split(np.arange(len(y)), test_size=0.15, random_state=params.seed, stratify=y)
        best = fit_classifier(params, classifier, x[fit_rows], y[fit_rows], x[stop_rows], y[stop_rows])
    else:
        best = fit_classifier(params, classifier, x, y)
    valid, y_valid = to_frame(splits.valid, schema), labels(splits.valid, schema)
    method = params.calibration.method
    classify: Any = CalibratedClassifierCV(FrozenEstimator(classifier), method=method).fit(
        encoder.transform(valid), y_valid)
    pipeline = Pipeline([("encode", encoder), ("classify", classify)])
    threshold = best_f1_threshold(y_valid, np.asarray(pipeline.predict_proba(valid)[:, 1]))
    return TrainedModel(pipeline, threshold, schema, params.model.encoding, best, method)


def judge(model: TrainedModel, holdout: pa.Table, seconds: float, trials: int = 0) -> dict[str, Any]:
    result, _, _ = training.evaluate(model, holdout)
    return {**{k: result[k] for k in ("roc_auc", "pr_auc", "f1", "brier")}, "seconds": seconds,
            "trees": model.best_iteration, "trials": trials}


def new_path(params: Params, splits: training.Splits, holdout: pa.Table) -> tuple[dict[str, Any],
                                                                                  training.TrainingOutcome]:
    started = time.perf_counter()
    outcome = training.train(params, splits.train, splits.valid)
    trials = len(outcome.search.trials) if outcome.search else 0
    return judge(outcome.model, holdout, time.perf_counter() - started, trials), outcome


def ensemble(params: Params, splits: training.Splits, outcome: training.TrainingOutcome,
             holdout: pa.Table) -> dict[str, Any]:
    """The winner's fold ensemble (mean margin of the K fold models, calibrated out of fold) vs its refit."""
    rows = training.non_test(splits.train, splits.valid)
    frame, y = to_frame(rows, params.schema), labels(rows, params.schema)
    started = time.perf_counter()
    fitted = crossfit.cross_fit(params, frame, y, outcome.chosen, keep_models=True)
    calibrator = fit_calibrator(fitted.margin, fitted.y, params.calibration.method)
    threshold = best_f1_threshold(fitted.y, calibrator.predict(fitted.margin))
    seconds = time.perf_counter() - started
    test = to_frame(holdout, params.schema)
    y_test = labels(holdout, params.schema)
    big = test
    t0 = time.perf_counter()
    for encoder, classifier in fitted.models:
        classifier.predict(encoder.transform(big), raw_score=True)
    ens_score_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    outcome.model.predict_proba(big)
    refit_score_s = time.perf_counter() - t0
    margin = np.mean([c.predict(e.transform(test), raw_score=True) for e, c in fitted.models], axis=0)
    probability = calibrator.predict(margin)
    result = evaluation.metrics(y_test, probability, threshold)
    size = sum(len(c.booster_.model_to_string()) for _, c in fitted.models)
    refit_size = len(outcome.model.classifier.booster_.model_to_string())
    return {**{k: result[k] for k in ("roc_auc", "pr_auc", "f1", "brier")}, "seconds": seconds,
            "trees": sum(fitted.trees), "trials": 0,
            "note": f"model {size / 1e3:.0f} kB vs refit {refit_size / 1e3:.0f} kB; scoring {len(big)} rows "
                    f"{ens_score_s:.2f}s vs refit {refit_score_s:.2f}s"}


def oracle(truth: np.ndarray, splits: training.Splits, holdout: pa.Table, params: Params,
           holdout_truth: np.ndarray) -> dict[str, Any]:
    """The true probabilities: scores on the holdout, F1 at the cut that is best on the non-test rows."""
    rows = training.non_test(splits.train, splits.valid)
    ids = rows.column("customer_id").to_pylist()
    threshold = best_f1_threshold(labels(rows, params.schema), np.array([truth[i] for i in ids]))
    y = labels(holdout, params.schema)
    best = evaluation.oracle(y, holdout_truth)
    return {**best, "f1": float(f1_score(y, holdout_truth >= threshold)), "seconds": 0.0, "trees": 0, "trials": 0}


def mean(results: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: float(np.mean([r[k] for r in results])) for k in ("roc_auc", "pr_auc", "f1", "brier", "seconds")}
    out["trees"] = round(float(np.mean([r["trees"] for r in results])))
    out["trials"] = round(float(np.mean([r["trials"] for r in results])))
    out["note"] = results[-1].get("note", "")
    return out


def clean_with_truth(family: families.Family, params: Params) -> tuple[pa.Table, np.ndarray]:
    result = validate(family.table, params.schema, require_label=True)
    truth = family.table.column("true_probability").to_numpy(zero_copy_only=False)[result.clean_rows]
    return result.clean, truth


def row(family: str, size: int, name: str, r: dict[str, Any]) -> str:
    return (f"{family:<11} {size:>7} {name:<8} {r['roc_auc']:>7.4f} {r['pr_auc']:>6.4f} {r['f1']:>6.4f} "
            f"{r['brier']:>6.4f} {r['seconds']:>7.1f} {r['trees']:>5} {r['trials']:>6}  {r.get('note', '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(families.NAMES), choices=families.NAMES)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 5_000, 20_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="seeds averaged for sizes up to 5,000 rows")
    parser.add_argument("--holdout", type=int, default=50_000)
    parser.add_argument("--objectives", action="store_true", help="also run the search judged by ROC-AUC")
    parser.add_argument("--ensemble", action="store_true", help="also measure the fold ensemble")
    args = parser.parse_args()
    print(f"{'family':<11} {'rows':>7} {'config':<8} {'roc_auc':>7} {'pr_auc':>6} {'f1':>6} {'brier':>6} "
          f"{'fit_s':>7} {'trees':>5} {'trials':>6}", flush=True)
    for name in args.families:
        for size in args.sizes:
            results: dict[str, list[dict[str, Any]]] = {}
            for rep in range(args.repeats if size <= 5_000 else 1):
                for label, r in run_once(name, size, args.seed + rep, args).items():
                    results.setdefault(label, []).append(r)
            for label, runs in results.items():
                print(row(name, size, label, mean(runs)), flush=True)


def run_once(name: str, size: int, seed: int, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every configuration on one table of the family, judged on one holdout."""
    family = families.make(name, size, seed)
    raw = copy.deepcopy(load_params().raw)
    raw["schema"] = family.schema
    params = Params.from_dict(raw)
    clean, truth = clean_with_truth(family, params)
    holdout, holdout_truth = clean_with_truth(families.make(name, args.holdout, seed + 10_000), params)
    splits = training.split(clean, params)
    out: dict[str, dict[str, Any]] = {}
    for label, config in (("seed", with_values(params, SEED_CONFIG)), ("today", params)):
        started = time.perf_counter()
        model = previous_path(config, splits)
        out[label] = judge(model, holdout, time.perf_counter() - started)
    out["cf"], _ = new_path(with_values(params, {"tuning.enabled": False}), splits, holdout)
    out["new"], outcome = new_path(params, splits, holdout)
    if args.objectives:
        out["new_auc"], _ = new_path(with_values(params, {"tuning.objective": "roc_auc"}), splits, holdout)
    if args.ensemble:
        out["ens"] = ensemble(params, splits, outcome, holdout)
    ids = clean.column("customer_id").to_pylist()
    out["oracle"] = oracle(dict(zip(ids, truth)), splits, holdout, params, holdout_truth)
    return out


if __name__ == "__main__":
    main()
