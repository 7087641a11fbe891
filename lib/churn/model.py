"""The churn model: one sklearn Pipeline (imputation, encoding, calibrated LightGBM).

The pipeline is what travels (MLflow logs it), so the exact preprocessing is never
re-implemented by hand elsewhere; `churn.compiled` reads its fitted state for speed and
is tested equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from lightgbm import LGBMClassifier, early_stopping
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from churn.params import Params
from churn.schema import Schema

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
    """Features of a validated table as the DataFrame the pipeline expects."""
    data: dict[str, Any] = {}
    for spec in schema.features:
        column = clean.column(spec.name)
        if spec.is_numeric:
            data[spec.name] = column.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            data[spec.name] = pd.Categorical(column.to_pylist(), categories=list(spec.values))
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


def build_classifier(params: Params, overrides: dict[str, Any] | None = None) -> LGBMClassifier:
    hp = {**params.hyperparameters, **(overrides or {})}
    return LGBMClassifier(
        **hp,
        n_jobs=params.n_jobs,  # explicit: the default oversubscribes small machines badly
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
    """Fit LightGBM, stopping early on (x_stop, y_stop) or on a slice of the fitting rows.

    Returns the number of trees kept; `n_estimators` is only a cap when early stopping is on.
    """
    section = params.section("model")
    fit_kwargs: dict[str, Any] = {}
    if section.get("encoding", "native") == "native":
        n_numeric = len(params.schema.numeric)
        fit_kwargs["categorical_feature"] = list(range(n_numeric, n_numeric + len(params.schema.categorical)))
    rounds = int(section.get("early_stopping_rounds", 0) or 0)
    if rounds > 0:
        if x_stop is None or y_stop is None:
            # Hold out a stratified slice of the fitting rows: the validation split stays
            # unseen for calibration and the threshold.
            share = float(section.get("early_stopping_share", 0.15))
            fit_rows, stop_rows = train_test_split(
                np.arange(len(y)), test_size=share, random_state=params.seed, stratify=y
            )
            x, x_stop, y, y_stop = x[fit_rows], x[stop_rows], y[fit_rows], y[stop_rows]
        fit_kwargs["eval_X"] = (x_stop,)
        fit_kwargs["eval_y"] = (y_stop,)
        fit_kwargs["eval_metric"] = "binary_logloss"
        fit_kwargs["callbacks"] = [early_stopping(rounds, verbose=False)]
    classifier.fit(x, y, **fit_kwargs)
    return int(classifier.best_iteration_ or classifier.n_estimators)


def fit(
    params: Params,
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    overrides: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit encoder and LightGBM on train (early stopping on a slice of it); calibrate and
    tune the threshold on valid.

    The test split is never passed here, so neither the calibrator nor the threshold can
    see it; the validation split is not used for fitting or stopping.
    """
    schema = params.schema
    model_section = params.section("model")
    encoding = str(model_section.get("encoding", "native"))
    encoder = build_encoder(schema, encoding, str(model_section.get("impute", "median")))
    x_train = encoder.fit_transform(train)
    x_valid = encoder.transform(valid)

    classifier = build_classifier(params, overrides)
    best = fit_classifier(params, classifier, x_train, y_train)

    method = str(params.section("calibration").get("method", "isotonic"))
    classify: Any = classifier
    if method != "none":
        classify = CalibratedClassifierCV(FrozenEstimator(classifier), method=method)
        classify.fit(x_valid, y_valid)
    pipeline = Pipeline([("encode", encoder), ("classify", classify)])
    valid_probability = np.asarray(pipeline.predict_proba(valid)[:, 1])
    threshold = best_f1_threshold(y_valid, valid_probability)
    return TrainedModel(
        pipeline=pipeline,
        threshold=threshold,
        schema=schema,
        encoding=encoding,
        best_iteration=best,
        calibration=method,
    )
