"""Training end to end on validated data: split, cross-fit (and search), refit, evaluate, profile.

Pure core: no MLflow or storage here; stages in jobs/ persist what this returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.model_selection import train_test_split

from churn import categories, evaluation, profile, tuning
from churn.compiled import CompiledModel
from churn.errors import InvalidInput
from churn.model import TrainedModel, fit, labels, out_of_fold_probability, to_frame
from churn.params import Params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    """The untouched test part and the non-test rows, filed as train and valid (the model uses both)."""

    train: pa.Table
    valid: pa.Table
    test: pa.Table


def class_counts(y: np.ndarray) -> tuple[int, int]:
    """(churned, retained) rows."""
    churned = int(np.count_nonzero(y))
    return churned, int(y.size) - churned


def check_sizes(rows: int, churned: int, params: Params, test_share: float | None = None) -> None:
    """InvalidInput (exit 3) naming the count when a table is too small to train and judge on.

    Every class must reach `split.min_class_rows` in the test part and in each of the K folds
    of the non-test rows; with `test_share` None the rows given are the non-test rows alone.
    """
    config = params.split
    retained = rows - churned
    if rows < config.min_rows:
        raise InvalidInput(f"training needs at least {config.min_rows} labelled rows (split.min_rows); got {rows}",
                           rows=rows)
    if churned == 0 or retained == 0:
        raise InvalidInput(f"training needs both classes; got {churned} churned and {retained} retained rows",
                           churned=churned, retained=retained)
    share = test_share or 0.0
    for name, count in (("churned", churned), ("retained", retained)):
        in_test = count * share
        per_fold = count * (1 - share) / config.folds
        if (test_share is not None and in_test < config.min_class_rows) or per_fold < config.min_class_rows:
            need = int(np.ceil(config.min_class_rows * config.folds / (1 - share)))
            raise InvalidInput(
                f"training needs at least {need} {name} rows ({config.min_class_rows} in the test part and in each "
                f"of {config.folds} folds, split.min_class_rows); got {count}",
                **{name: count},
            )


def split(clean: pa.Table, params: Params, valid: pa.Table | None = None) -> Splits:
    """Stratified train / validation / test split, fixed by the seed in params.

    With a separate validation table (SageMaker's `validation` channel) only train and
    test are cut from `clean`. Too few rows, or a class too rare to fill the test part
    and every fold, is InvalidInput (exit 3) naming the count.
    """
    config = params.split
    y = labels(clean, params.schema)
    churned, _ = class_counts(y)
    extra = valid.num_rows if valid is not None else 0
    extra_churned = class_counts(labels(valid, params.schema))[0] if valid is not None else 0
    check_sizes(clean.num_rows + extra, churned + extra_churned, params,
                test_share=config.test_size * clean.num_rows / max(clean.num_rows + extra, 1))
    index = np.arange(clean.num_rows)
    rest, test = train_test_split(index, test_size=config.test_size, random_state=config.seed, stratify=y)
    if valid is not None:
        return Splits(clean.take(np.sort(rest)), valid, clean.take(np.sort(test)))
    valid_share = config.validation_size / (1 - config.test_size)
    train, valid = train_test_split(rest, test_size=valid_share, random_state=config.seed, stratify=y[rest])
    return Splits(clean.take(np.sort(train)), clean.take(np.sort(valid)), clean.take(np.sort(test)))


@dataclass
class TrainingOutcome:
    model: TrainedModel
    seconds: float
    valid_metrics: dict[str, Any]  # out-of-fold, over every non-test row
    reference_profile: dict[str, Any]
    importance: dict[str, float]
    cv: dict[str, float] = field(default_factory=dict)
    search: tuning.SearchResult | None = None
    chosen: dict[str, Any] = field(default_factory=dict)
    learned: dict[str, categories.Learned] = field(default_factory=dict)  # categories whose values were learned


def non_test(train_table: pa.Table, valid_table: pa.Table) -> pa.Table:
    """Every row the model may learn from: the train and validation parts together."""
    return pa.concat_tables([train_table, valid_table], promote_options="permissive")


def train(params: Params, train_table: pa.Table, valid_table: pa.Table) -> TrainingOutcome:
    """Search (if enabled) on the K folds of every non-test row, refit on all of them, build the profile.

    Calibration, the threshold and the reported `valid_metrics` come from out-of-fold
    predictions; the test split is not an argument, so it cannot leak in. Categories without
    `values:` learn them here, from these rows only; the model carries the learned schema.
    """
    started = time.perf_counter()
    rows = non_test(train_table, valid_table)
    schema, learned = categories.learn(params.schema, rows)
    params = replace(params, schema=schema)
    rows = categories.recode(rows, schema)
    frame, y = to_frame(rows, schema), labels(rows, schema)
    check_sizes(rows.num_rows, class_counts(y)[0], params)
    found = tuning.search(params, frame, y)
    model = fit(params, frame, y, found.crossfit, found.best)
    seconds = time.perf_counter() - started
    oof = out_of_fold_probability(model.pipeline, found.crossfit)
    valid_metrics = evaluation.metrics(y, oof, model.threshold)
    compiled = CompiledModel.from_trained(model) if model.encoding == "native" else None
    features = feature_arrays(rows, params, compiled)
    reference = profile.build_profile(schema, features, model.predict_proba(frame))
    gains = model.classifier.booster_.feature_importance(importance_type="gain")
    importance = {name: float(g) for name, g in zip(encoded_to_features(model), gains)}
    log.info(
        "trained model",
        extra={"seconds": round(seconds, 2), "rows": rows.num_rows, "trees": model.best_iteration,
               "trials": len(found.trials), "oof_f1": round(valid_metrics["f1"], 4)},
    )
    return TrainingOutcome(model, seconds, valid_metrics, reference, importance, found.crossfit.scores(), found,
                           found.best, learned)


def encoded_to_features(model: TrainedModel) -> list[str]:
    """Name of the original feature behind each encoded column."""
    names = model.encoded_names
    if model.encoding == "native":
        return names
    out = []
    categorical = {s.name for s in model.schema.categorical}
    for name in names:
        base = next((c for c in categorical if name.startswith(c + "_")), name)
        out.append(base)
    return out


def feature_arrays(table: pa.Table, params: Params, compiled: CompiledModel | None = None) -> dict[str, np.ndarray]:
    """Each feature as a float array (categories as codes, missing as NaN) for profiling.

    Kept for callers of this name; the one implementation is `profile.feature_arrays`."""
    return profile.feature_arrays(table, params.schema)


def evaluate(model: TrainedModel, test_table: pa.Table) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Test metrics at the model's threshold, plus Brier before calibration for comparison."""
    frame = to_frame(test_table, model.schema)
    y = labels(test_table, model.schema)
    probability = model.predict_proba(frame)
    uncalibrated = model.predict_uncalibrated(frame)
    result = evaluation.metrics(y, probability, model.threshold)
    result["brier_uncalibrated"] = float(np.mean((uncalibrated - y) ** 2))
    result["trees"] = model.best_iteration
    return result, probability, uncalibrated


def rejects_by_reason(rejected: pa.Table) -> dict[str, int]:
    """Rejected rows per (first) reason, commonest first."""
    counts: dict[str, int] = {}
    for reason in rejected.column("reason").to_pylist() if rejected.num_rows else []:
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def unknown_categories(rejected: pa.Table) -> dict[str, dict[str, int]]:
    """Per category feature, each value not in the schema and how many rejected rows hold it."""
    import json

    found: dict[str, dict[str, int]] = {}
    for errors in rejected.column("errors").to_pylist() if rejected.num_rows else []:
        for problem in json.loads(errors):
            if problem.get("reason") == "unknown_category":
                values = found.setdefault(str(problem["field"]), {})
                value = str(problem.get("value"))
                values[value] = values.get(value, 0) + 1
    return {name: dict(sorted(values.items(), key=lambda kv: -kv[1])) for name, values in sorted(found.items())}


def describe_unknown(unknown: dict[str, dict[str, int]], limit: int = 5) -> str:
    """`contract='Monthly' x40, ...`: the commonest unknown values with their counts."""
    parts = [f"{name}={value!r} x{count}" for name, values in unknown.items() for value, count in values.items()]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (f" and {more} more" if more > 0 else "")
