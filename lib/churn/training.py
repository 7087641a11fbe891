"""Training end to end on validated data: split, fit, evaluate, profile.

Pure core: no MLflow or storage here; stages in jobs/ persist what this returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.model_selection import train_test_split

from churn import evaluation, profile, tuning
from churn.compiled import CompiledModel
from churn.model import TrainedModel, fit, labels, to_frame
from churn.params import Params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    train: pa.Table
    valid: pa.Table
    test: pa.Table


def split(clean: pa.Table, params: Params, valid: pa.Table | None = None) -> Splits:
    """Stratified train / validation / test split, fixed by the seed in params.

    With a separate validation table (SageMaker's `validation` channel) only train and
    test are cut from `clean`.
    """
    section = params.section("split")
    seed = int(section.get("seed", 42))
    y = labels(clean, params.schema)
    index = np.arange(clean.num_rows)
    if np.bincount(y, minlength=2).min() < 3:
        raise ValueError("training needs at least 3 churned and 3 retained customers")
    rest, test = train_test_split(index, test_size=float(section.get("test_size", 0.2)), random_state=seed, stratify=y)
    if valid is not None:
        return Splits(clean.take(np.sort(rest)), valid, clean.take(np.sort(test)))
    valid_share = float(section.get("validation_size", 0.2)) / (1 - float(section.get("test_size", 0.2)))
    train, valid = train_test_split(rest, test_size=valid_share, random_state=seed, stratify=y[rest])
    return Splits(clean.take(np.sort(train)), clean.take(np.sort(valid)), clean.take(np.sort(test)))


@dataclass
class TrainingOutcome:
    model: TrainedModel
    seconds: float
    valid_metrics: dict[str, Any]
    reference_profile: dict[str, Any]
    importance: dict[str, float]
    cv: tuning.CvResult | None = None
    search: tuning.SearchResult | None = None
    chosen: dict[str, Any] = field(default_factory=dict)


def train(params: Params, train_table: pa.Table, valid_table: pa.Table) -> TrainingOutcome:
    """Search (if enabled) and cross-validate on train, fit, and build the reference profile.

    Search and CV see only the training part; the validation split is for calibration
    and the threshold, the test split for evaluation.
    """
    schema = params.schema
    started = time.perf_counter()
    frame, y = to_frame(train_table, schema), labels(train_table, schema)
    found = tuning.search(params, frame, y)
    cv = found.best_cv
    if cv is None and int(params.section("tuning").get("cv_folds", 3)) > 1:
        cv = tuning.cross_validate(params, frame, y, found.best)
    model = fit(params, frame, y, to_frame(valid_table, schema), labels(valid_table, schema), found.best)
    seconds = time.perf_counter() - started
    valid_frame = to_frame(valid_table, schema)
    valid_probability = model.predict_proba(valid_frame)
    valid_metrics = evaluation.metrics(labels(valid_table, schema), valid_probability, model.threshold)
    compiled = CompiledModel.from_trained(model) if model.encoding == "native" else None
    features = feature_arrays(train_table, params, compiled)
    train_scores = model.predict_proba(to_frame(train_table, schema))
    reference = profile.build_profile(schema, features, train_scores)
    gains = model.classifier.booster_.feature_importance(importance_type="gain")
    importance = {name: float(g) for name, g in zip(encoded_to_features(model), gains)}
    log.info(
        "trained model",
        extra={"seconds": round(seconds, 2), "trees": model.best_iteration, "valid_f1": round(valid_metrics["f1"], 4)},
    )
    return TrainingOutcome(model, seconds, valid_metrics, reference, importance, cv, found, found.best)


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
