"""Model quality on generated data: the seed's hyperparameters vs the project's defaults vs the oracle.

Usage: python bench/bench_quality.py [--sizes 5000 50000 500000] [--seed 1] [--tune]

For each size, both configurations train on the same splits with the same pipeline
(isotonic calibration and F1 threshold on the validation split); the oracle is the
generator's true probability scored on the same test rows. `--tune` also runs the
budgeted search of params.yaml `tuning:` (enabled) and prints the winner.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from churn import evaluation, generator, training
from churn.model import labels
from churn.params import Params, load_params
from churn.validation import validate

REPO = Path(__file__).resolve().parents[1]
SEED_CONFIG = {
    "n_estimators": 200, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20,
    "reg_alpha": 0.0, "reg_lambda": 0.0, "colsample_bytree": 1.0, "subsample": 1.0, "subsample_freq": 0,
    "class_weight": "balanced", "model.early_stopping_rounds": 0,
}


def with_values(params: Params, values: dict[str, object]) -> Params:
    return params.with_overrides({k: str(v) if v is not None else "null" for k, v in values.items()})


def run(params: Params, splits: training.Splits, truth: dict[str, float]) -> dict[str, float]:
    started = time.perf_counter()
    outcome = training.train(params, splits.train, splits.valid)
    seconds = time.perf_counter() - started
    metrics, _, _ = training.evaluate(outcome.model, splits.test)
    y = labels(splits.test, params.schema)
    p_true = np.array([truth[c] for c in splits.test.column(params.schema.id_field).to_pylist()])
    best = evaluation.oracle(y, p_true)
    return {
        "roc_auc": metrics["roc_auc"], "pr_auc": metrics["pr_auc"], "f1": metrics["f1"], "brier": metrics["brier"],
        "brier_uncal": metrics["brier_uncalibrated"], "trees": metrics["trees"], "seconds": seconds,
        "oracle_auc": best["roc_auc"], "oracle_brier": best["brier"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000, 500_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tune", action="store_true")
    args = parser.parse_args()
    base = with_values(load_params(REPO / "params.yaml"), {"tuning.cv_folds": 1})
    configs = {"seed": with_values(base, SEED_CONFIG), "project": base}
    header = (f"{'customers':>9} {'config':<8} {'roc_auc':>7} {'pr_auc':>6} {'f1':>6} {'brier':>6} {'brier_raw':>9} "
              f"{'trees':>5} {'train_s':>7} {'oracle_auc':>10} {'oracle_brier':>12} {'auc_gap':>7}")
    print(header)
    for size in args.sizes:
        table = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=size, seed=args.seed)))
        truth = dict(zip(table.column("customer_id").to_pylist(), table.column("true_probability").to_pylist()))
        splits = training.split(validate(table, base.schema, require_label=True).clean, base)
        for name, params in configs.items():
            r = run(params, splits, truth)
            print(f"{size:>9} {name:<8} {r['roc_auc']:>7.4f} {r['pr_auc']:>6.4f} {r['f1']:>6.4f} {r['brier']:>6.4f} "
                  f"{r['brier_uncal']:>9.4f} {r['trees']:>5} {r['seconds']:>7.1f} {r['oracle_auc']:>10.4f} "
                  f"{r['oracle_brier']:>12.4f} {r['oracle_auc'] - r['roc_auc']:>7.4f}", flush=True)
        if args.tune:
            tuned = with_values(base, {"tuning.enabled": True, "tuning.cv_folds": 3})
            found = training.tuning.search(tuned, *_frame(splits.train, tuned))
            print(f"  search at {size}: {len(found.trials)} trials in {found.seconds:.0f}s, best CV AUC "
                  f"{found.best_cv.roc_auc_mean if found.best_cv else float('nan'):.4f}: {found.best}", flush=True)


def _frame(table: pa.Table, params: Params) -> tuple:
    from churn.model import to_frame

    return to_frame(table, params.schema), labels(table, params.schema)


if __name__ == "__main__":
    main()
