"""Typed sections of params.yaml for the training side, each built and checked once.

`Params` builds these when it loads the file, so a default lives in exactly one place
(the dataclass field) and a typo in any section fails with the key and its closest known
name instead of training silently on the default. The shared key and value rules are in
`churn.param_checks`; `scoring:` keeps its own typed class in `churn.scoring`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from churn.errors import ConfigError
from churn.param_checks import (
    check_hyperparameters,
    check_keys,
    hyperparameter_names,
    integer,
    number,
    one_of,
    section,
)

CALIBRATION_METHODS = ("isotonic", "sigmoid", "none")
ENCODINGS = ("native", "onehot")
IMPUTATIONS = ("median", "mean", "zero")
OBJECTIVES = ("log_loss", "roc_auc")


@dataclass(frozen=True)
class DataConfig:
    """`data:`: synthetic customers for the local pipeline's generate stage."""

    customers: int = 20_000
    seed: int = 42
    dirty_rate: float = 0.0

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> DataConfig:
        s = section(raw, "data", cls)
        return cls(
            customers=integer("data.customers", s.get("customers", cls.customers), 1),
            seed=integer("data.seed", s.get("seed", cls.seed), 0),
            dirty_rate=number("data.dirty_rate", s.get("dirty_rate", cls.dirty_rate)),
        )


@dataclass(frozen=True)
class SplitConfig:
    """`split:`: the untouched test part, the K folds over the rest, and the minimum sizes."""

    test_size: float = 0.2
    validation_size: float = 0.2
    seed: int = 42
    folds: int = 5
    min_rows: int = 200
    min_class_rows: int = 10

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> SplitConfig:
        s = section(raw, "split", cls)
        for key in ("test_size", "validation_size"):
            value = s.get(key, getattr(cls, key))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
                raise ConfigError(f"split.{key}={value!r} must be a number in (0, 0.5)", key=f"split.{key}")
        return cls(
            test_size=float(s.get("test_size", cls.test_size)),
            validation_size=float(s.get("validation_size", cls.validation_size)),
            seed=integer("split.seed", s.get("seed", cls.seed), 0),
            folds=integer("split.folds", s.get("folds", cls.folds), 2),
            min_rows=integer("split.min_rows", s.get("min_rows", cls.min_rows), 1),
            min_class_rows=integer("split.min_class_rows", s.get("min_class_rows", cls.min_class_rows), 1),
        )


@dataclass(frozen=True)
class ModelConfig:
    """`model:`: preprocessing, threads, seed, early stopping and LightGBM's hyperparameters."""

    encoding: str = "native"
    impute: str = "median"
    n_jobs: int = 2
    seed: int = 42
    early_stopping_rounds: int = 50
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> ModelConfig:
        s = section(raw, "model", cls)
        hp = s.get("hyperparameters") or {}
        if not isinstance(hp, dict):
            raise ConfigError("model.hyperparameters must be a mapping", key="model.hyperparameters")
        check_hyperparameters("model.hyperparameters", hp)
        return cls(
            encoding=one_of("model.encoding", s.get("encoding", cls.encoding), ENCODINGS),
            impute=one_of("model.impute", s.get("impute", cls.impute), IMPUTATIONS),
            n_jobs=integer("model.n_jobs", s.get("n_jobs", cls.n_jobs), 1),
            seed=integer("model.seed", s.get("seed", cls.seed), 0),
            early_stopping_rounds=integer(
                "model.early_stopping_rounds", s.get("early_stopping_rounds", cls.early_stopping_rounds), 0
            ),
            hyperparameters=dict(hp),
        )


@dataclass(frozen=True)
class Budget:
    """Wall-clock seconds of the search, growing with the rows it searches on."""

    base_seconds: float = 30.0
    seconds_per_1k_rows: float = 10.0
    max_seconds: float = 900.0

    def seconds(self, rows: int) -> float:
        return min(self.max_seconds, self.base_seconds + self.seconds_per_1k_rows * rows / 1000)


@dataclass(frozen=True)
class TuningConfig:
    """`tuning:`: the budgeted search over LightGBM's hyperparameters (on the K folds)."""

    enabled: bool = True
    objective: str = "log_loss"
    max_trials: int = 60
    patience: int = 15
    budget: Budget = field(default_factory=Budget)
    space: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> TuningConfig:
        s = section(raw, "tuning", cls)
        b = s.get("budget") or {}
        if not isinstance(b, dict):
            raise ConfigError("tuning.budget must be a mapping", key="tuning.budget")
        check_keys("tuning.budget", b, [f.name for f in fields(Budget)])
        budget = Budget(**{k: number(f"tuning.budget.{k}", v) for k, v in b.items()})
        if min(budget.base_seconds, budget.seconds_per_1k_rows, budget.max_seconds) < 0:
            raise ConfigError("tuning.budget seconds must be >= 0", key="tuning.budget")
        space = s.get("space") or {}
        if not isinstance(space, dict):
            raise ConfigError("tuning.space must be a mapping", key="tuning.space")
        check_keys("tuning.space", space, hyperparameter_names())
        for name, spec in space.items():
            if isinstance(spec, list):
                continue
            if not isinstance(spec, dict) or spec.get("type") not in ("int", "float"):
                raise ConfigError(f"tuning.space.{name} must be a list of choices or {{type: int|float, low, high}}",
                                  key=f"tuning.space.{name}")
            check_keys(f"tuning.space.{name}", spec, ("type", "low", "high", "log"))
            if number(f"tuning.space.{name}.low", spec.get("low")) > number(f"tuning.space.{name}.high",
                                                                             spec.get("high")):
                raise ConfigError(f"tuning.space.{name} has low > high", key=f"tuning.space.{name}")
        enabled = s.get("enabled", cls.enabled)
        if not isinstance(enabled, bool):
            raise ConfigError(f"tuning.enabled={enabled!r} must be true or false", key="tuning.enabled")
        return cls(
            enabled=enabled,
            objective=one_of("tuning.objective", s.get("objective", cls.objective), OBJECTIVES),
            max_trials=integer("tuning.max_trials", s.get("max_trials", cls.max_trials), 1),
            patience=integer("tuning.patience", s.get("patience", cls.patience), 1),
            budget=budget,
            space=dict(space),
        )


@dataclass(frozen=True)
class CalibrationConfig:
    """`calibration:`: how out-of-fold margins become probabilities."""

    method: str = "sigmoid"

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> CalibrationConfig:
        s = section(raw, "calibration", cls)
        return cls(method=one_of("calibration.method", s.get("method", cls.method), CALIBRATION_METHODS))


@dataclass(frozen=True)
class ThresholdConfig:
    """`threshold:`: the metric the decision threshold maximises on out-of-fold predictions."""

    metric: str = "f1"

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> ThresholdConfig:
        s = section(raw, "threshold", cls)
        return cls(metric=one_of("threshold.metric", s.get("metric", cls.metric), ("f1",)))


@dataclass(frozen=True)
class PromotionConfig:
    """`promotion:`: the champion/challenger rule and whether the pipeline may act on it."""

    metric: str = "f1"
    min_improvement: float = 0.0
    roc_auc_tolerance: float = 0.01
    confidence: float = 0.95
    bootstrap_samples: int = 1000
    apply: bool = False

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> PromotionConfig:
        s = section(raw, "promotion", cls)
        for key in ("min_improvement", "roc_auc_tolerance"):
            if number(f"promotion.{key}", s.get(key, 0.0)) < 0:
                raise ConfigError(f"promotion.{key}={s.get(key)!r} must be a number >= 0", key=f"promotion.{key}")
        confidence = number("promotion.confidence", s.get("confidence", cls.confidence))
        if not 0 < confidence < 1:
            raise ConfigError(f"promotion.confidence={confidence!r} must be in (0, 1)", key="promotion.confidence")
        apply = s.get("apply", cls.apply)
        if not isinstance(apply, bool):
            raise ConfigError(f"promotion.apply={apply!r} must be true or false", key="promotion.apply")
        return cls(
            metric=one_of("promotion.metric", s.get("metric", cls.metric), ("f1", "pr_auc", "roc_auc")),
            min_improvement=number("promotion.min_improvement", s.get("min_improvement", cls.min_improvement)),
            roc_auc_tolerance=number("promotion.roc_auc_tolerance", s.get("roc_auc_tolerance", cls.roc_auc_tolerance)),
            confidence=confidence,
            bootstrap_samples=integer("promotion.bootstrap_samples",
                                      s.get("bootstrap_samples", cls.bootstrap_samples), 100),
            apply=apply,
        )
