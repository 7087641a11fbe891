"""The churn model: one sklearn Pipeline (imputation, encoding, calibrated LightGBM).

The pipeline is what travels (MLflow logs it), so the exact preprocessing is never
re-implemented by hand elsewhere; `churn.compiled` reads its fitted state for speed and
is tested equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from lightgbm import LGBMClassifier, early_stopping
from sklearn.calibration import CalibratedClassifierCV, _CalibratedClassifier, _SigmoidCalibration
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import precision_recall_curve
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from churn import categories
from churn.params import Params
from churn.schema import Schema

if TYPE_CHECKING:
    from churn.crossfit import CrossFit

_IMPUTE = {"median": ("median", None), "mean": ("mean", None), "zero": ("constant", 0.0)}


@dataclass
class TrainedModel:
    """A fitted pipeline and what it needs to make decisions."""

    pipeline: Pipeline
    threshold: float
    schema: Schema
    encoding: str
    best_iteration: int
    calibration: str

    @property
    def classifier(self) -> LGBMClassifier:
        """The LightGBM classifier inside (below the calibrator, if any)."""
        step = self.pipeline.named_steps["classify"]
        if isinstance(step, CalibratedClassifierCV):
            return step.estimator.estimator  # FrozenEstimator -> LGBMClassifier
        return step

    @property
    def encoded_names(self) -> list[str]:
        return list(self.pipeline.named_steps["encode"].get_feature_names_out())

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability for each row."""
        return np.asarray(self.pipeline.predict_proba(frame)[:, 1])

    def predict_uncalibrated(self, frame: pd.DataFrame) -> np.ndarray:
        encoded = self.pipeline.named_steps["encode"].transform(frame)
        return np.asarray(self.classifier.predict_proba(encoded))[:, 1]


def to_frame(clean: pa.Table, schema: Schema) -> pd.DataFrame:
    """Features of a validated table as the DataFrame the pipeline expects.

    Categories are read by value into `schema`'s list (a table validated under another
    schema, or with values still to learn, is recoded as the validator reads it); a value
    outside the list is missing, as the pipeline's encoder would make it anyway.
    """
    data: dict[str, Any] = {}
    for spec in schema.features:
        column = clean.column(spec.name)
        if spec.is_numeric:
            data[spec.name] = column.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            found = categories.codes(column, spec)
            data[spec.name] = pd.Categorical.from_codes(np.where(np.isnan(found), -1, found).astype(np.int64),
                                                        categories=list(spec.values))
    return pd.DataFrame(data)


def labels(clean: pa.Table, schema: Schema) -> np.ndarray:
    return np.asarray(clean.column(schema.label_field).to_numpy(zero_copy_only=False), dtype=np.int8)


def build_encoder(schema: Schema, encoding: str, impute: str) -> ColumnTransformer:
    """Imputation for numbers, ordinal (native LightGBM) or one-hot codes for categories."""
    strategy, fill = _IMPUTE[impute]
    categories = [list(spec.values) for spec in schema.categorical]
    if encoding == "native":
        cat_encoder: Any = OrdinalEncoder(
            categories=categories,
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            dtype=np.float64,
        )
    else:
        cat_encoder = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy=strategy, fill_value=fill, keep_empty_features=True),
             [s.name for s in schema.numeric]),
            ("category", cat_encoder, [s.name for s in schema.categorical]),
        ],
        verbose_feature_names_out=False,
        sparse_threshold=0.0,
    )


# A fit on fewer rows than this per thread gets fewer threads: on a busy 2-core machine a
# 5-fold cross-fit of 2,000 rows took 0.7 s with one thread and 4.7 s with two (OpenMP
# threads waiting on each other cost more than small histograms gain).
ROWS_PER_THREAD = 50_000


def build_classifier(
    params: Params, overrides: dict[str, Any] | None = None, rows: int | None = None
) -> LGBMClassifier:
    """LightGBM with the params' hyperparameters (plus overrides), seed and threads for `rows` rows."""
    hp = {**params.hyperparameters, **(overrides or {})}
    threads = params.n_jobs if rows is None else max(1, min(params.n_jobs, rows // ROWS_PER_THREAD + 1))
    return LGBMClassifier(
        **hp,
        n_jobs=threads,  # explicit: the default oversubscribes small machines badly
        random_state=params.seed,
        verbose=-1,
    )


def best_f1_threshold(y_true: np.ndarray, probability: np.ndarray) -> float:
    """The probability cut that maximises F1 on the given (validation) rows."""
    precision, recall, thresholds = precision_recall_curve(y_true, probability)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1[:-1])) if thresholds.size else 0
    return float(thresholds[best]) if thresholds.size else 0.5


def fit_classifier(
    params: Params,
    classifier: LGBMClassifier,
    x: np.ndarray,
    y: np.ndarray,
    x_stop: np.ndarray | None = None,
    y_stop: np.ndarray | None = None,
) -> int:
    """Fit LightGBM, stopping early on held-out rows (x_stop, y_stop) when they are given.

    Returns the number of trees kept; `n_estimators` is only a cap when early stopping is on.
    """
    fit_kwargs: dict[str, Any] = {}
    if params.model.encoding == "native":
        n_numeric = len(params.schema.numeric)
        fit_kwargs["categorical_feature"] = list(range(n_numeric, n_numeric + len(params.schema.categorical)))
    rounds = params.model.early_stopping_rounds
    if rounds > 0 and x_stop is not None and y_stop is not None:
        fit_kwargs["eval_X"] = (x_stop,)
        fit_kwargs["eval_y"] = (y_stop,)
        fit_kwargs["eval_metric"] = "binary_logloss"
        fit_kwargs["callbacks"] = [early_stopping(rounds, verbose=False)]
    classifier.fit(x, y, **fit_kwargs)
    return int(classifier.best_iteration_ or classifier.n_estimators)


def fit_calibrator(margin: np.ndarray, y: np.ndarray, method: str) -> Any:
    """A sigmoid or isotonic map from raw margin to probability, fitted on these (out-of-fold) rows."""
    if method == "isotonic":
        return IsotonicRegression(out_of_bounds="clip").fit(margin, y)
    return _SigmoidCalibration().fit(margin, y)


def calibrated(classifier: LGBMClassifier, calibrator: Any, method: str) -> CalibratedClassifierCV:
    """The fitted classifier behind a calibrator fitted elsewhere, as sklearn's own calibrated type.

    `CalibratedClassifierCV.fit` can only calibrate on the fitted model's own predictions;
    here the calibrator was fitted on the out-of-fold margins of the cross-fit, which is
    what the refit's margins on unseen rows look like. The result is the same sklearn
    object `fit` would build, so skops, MLflow and `churn.compiled` read it unchanged.
    """
    frozen = FrozenEstimator(classifier)
    step = CalibratedClassifierCV(frozen, method=method)
    classes = np.asarray(classifier.classes_)
    step.calibrated_classifiers_ = [_CalibratedClassifier(frozen, [calibrator], method=method, classes=classes)]
    step.classes_ = classes
    step.n_features_in_ = classifier.n_features_in_
    return step


def fit(
    params: Params,
    frame: pd.DataFrame,
    y: np.ndarray,
    crossfit: CrossFit,
    overrides: dict[str, Any] | None = None,
) -> TrainedModel:
    """Refit on every given (non-test) row with the cross-validated tree count; calibrate and
    pick the threshold on the cross-fit's out-of-fold predictions.

    The test split is never passed here, so neither the calibrator nor the threshold can
    see it; no row is predicted by a model that was fitted on it.
    """
    schema = params.schema
    encoding = params.model.encoding
    encoder = build_encoder(schema, encoding, params.model.impute)
    x = encoder.fit_transform(frame)
    trees = crossfit.tree_count
    classifier = build_classifier(params, {**(overrides or {}), "n_estimators": trees}, rows=len(y))
    fit_classifier(params, classifier, x, y)

    method = params.calibration.method
    classify: Any = classifier
    if method != "none":
        classify = calibrated(classifier, fit_calibrator(crossfit.margin, crossfit.y, method), method)
    pipeline = Pipeline([("encode", encoder), ("classify", classify)])
    threshold = best_f1_threshold(crossfit.y, out_of_fold_probability(pipeline, crossfit))
    return TrainedModel(
        pipeline=pipeline,
        threshold=threshold,
        schema=schema,
        encoding=encoding,
        best_iteration=trees,
        calibration=method,
    )


def out_of_fold_probability(pipeline: Pipeline, crossfit: CrossFit) -> np.ndarray:
    """The pipeline's calibration applied to the cross-fit's out-of-fold margins."""
    step = pipeline.named_steps["classify"]
    if isinstance(step, CalibratedClassifierCV):
        return np.asarray(step.calibrated_classifiers_[0].calibrators[0].predict(crossfit.margin), dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-crossfit.margin)))
