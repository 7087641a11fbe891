"""The fitted pipeline compiled down to arrays and the raw LightGBM booster.

Batch scoring and the single-record HTTP path run through here instead of pandas and
sklearn: validated Arrow columns become a float matrix (imputed numbers, category codes),
the booster gives the raw margin, and the fitted calibrator maps it to a probability.
Tests prove the result equals `Pipeline.predict_proba` to 1e-9.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from lightgbm import Booster
from sklearn.calibration import CalibratedClassifierCV

from churn.model import TrainedModel
from churn.profile import feature_arrays
from churn.schema import Schema
from churn.treeshap import TreeShap, Unsupported

# Below this many rows LightGBM's own pred_contrib is quicker than building the tables once.
FAST_CONTRIB_ROWS = 256


@dataclass(frozen=True)
class Calibrator:
    """Isotonic (piecewise linear) or sigmoid map from raw margin to probability."""

    method: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    a: float = 0.0
    b: float = 0.0

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            assert self.x is not None and self.y is not None
            # sklearn clips to the fitted range, then interpolates linearly.
            return np.interp(np.clip(margin, self.x[0], self.x[-1]), self.x, self.y)
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(self.a * margin + self.b))
        return 1.0 / (1.0 + np.exp(-margin))

    @classmethod
    def from_step(cls, step: Any) -> Calibrator:
        if not isinstance(step, CalibratedClassifierCV):
            return cls("none")
        fitted = step.calibrated_classifiers_[0].calibrators[0]
        if step.method == "isotonic":
            return cls("isotonic", x=np.asarray(fitted.X_thresholds_), y=np.asarray(fitted.y_thresholds_))
        return cls("sigmoid", a=float(fitted.a_), b=float(fitted.b_))


@dataclass(frozen=True)
class CompiledModel:
    """Everything scoring needs, as plain arrays plus the booster."""

    schema: Schema
    booster: Booster
    best_iteration: int
    fill: np.ndarray  # imputation value per numeric feature, in schema order
    calibrator: Calibrator
    threshold: float
    encoded_names: tuple[str, ...]
    n_threads: int = 2
    # The TreeSHAP tables, built on first use by a batch of contributions (see treeshap.py).
    _explainer: dict[str, TreeShap | None] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_trained(cls, model: TrainedModel, n_threads: int = 2) -> CompiledModel:
        if model.encoding != "native":
            raise ValueError("the compiled path needs native categorical encoding")
        encode = model.pipeline.named_steps["encode"]
        imputer = encode.named_transformers_["numeric"]
        return cls(
            schema=model.schema,
            booster=model.classifier.booster_,
            best_iteration=model.best_iteration,
            fill=np.asarray(imputer.statistics_, dtype=np.float64),
            calibrator=Calibrator.from_step(model.pipeline.named_steps["classify"]),
            threshold=model.threshold,
            encoded_names=tuple(encode.get_feature_names_out()),
            n_threads=n_threads,
        )

    @property
    def feature_order(self) -> list[str]:
        """Original feature names in the column order of the encoded matrix."""
        return [s.name for s in self.schema.numeric] + [s.name for s in self.schema.categorical]

    def matrix(self, clean: pa.Table) -> np.ndarray:
        """The encoded float matrix of a validated table (numbers imputed, categories coded)."""
        return self.encode(feature_arrays(clean, self.schema))

    def encode(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """The matrix from `profile.feature_arrays` columns: imputed numbers, then category codes."""
        numeric, categorical = self.schema.numeric, self.schema.categorical
        n = len(features[self.schema.features[0].name]) if self.schema.features else 0
        out = np.empty((n, len(numeric) + len(categorical)), dtype=np.float64)
        for j, spec in enumerate(numeric):
            column = features[spec.name]
            out[:, j] = np.where(np.isnan(column), self.fill[j], column)
        for j, spec in enumerate(categorical):
            out[:, len(numeric) + j] = features[spec.name]
        return out

    def margin(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.booster.predict(x, raw_score=True, num_iteration=self.best_iteration, num_threads=self.n_threads)
        )

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Calibrated churn probability for each row of an encoded matrix."""
        return self.calibrator(self.margin(x))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP contributions to the raw margin: one column per feature, then the bias.

        Equal to LightGBM's `pred_contrib` (tested); large batches use the tabulated TreeShap,
        which is about 50x faster, small ones and unsupported models use `pred_contrib`.
        """
        explainer = self.explainer() if x.shape[0] >= FAST_CONTRIB_ROWS else None
        if explainer is not None:
            return explainer.contributions(x)
        return np.asarray(
            self.booster.predict(x, pred_contrib=True, num_iteration=self.best_iteration, num_threads=self.n_threads)
        )

    def explainer(self) -> TreeShap | None:
        """The TreeSHAP tables (built once, a few seconds), or None when the model is not supported."""
        with self._lock:
            if "tables" not in self._explainer:
                try:
                    self._explainer["tables"] = TreeShap(self.booster, self.best_iteration, self.n_threads)
                except Unsupported:
                    self._explainer["tables"] = None
            return self._explainer["tables"]

    def top_reasons(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices (into feature_order) and signed contributions of the k largest |contributions|."""
        contrib = self.contributions(x)[:, :-1]
        k = min(k, contrib.shape[1])
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(contrib, order, axis=1)
