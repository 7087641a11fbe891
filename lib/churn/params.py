"""params.yaml: loading, typed access and overrides (SageMaker hyperparameters, CLI).

The file is the single source of what changes the model; this module only reads it,
checks it, and casts string overrides against the types the file already has.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from churn.errors import ConfigError
from churn.schema import Schema

_CALIBRATION = ("isotonic", "sigmoid", "none")
_ENCODING = ("native", "onehot")
_IMPUTE = ("median", "mean", "zero")


def default_params_path() -> Path:
    """The params.yaml shipped inside the package (the repo's own params.yaml)."""
    return Path(str(resources.files("churn") / "defaults" / "params.yaml"))


@dataclass(frozen=True)
class Params:
    """The parsed params.yaml; `raw` keeps the plain mapping for logging and hashing."""

    raw: dict[str, Any]
    schema: Schema

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.section("model").get("hyperparameters", {}))

    @property
    def n_jobs(self) -> int:
        return int(self.section("model").get("n_jobs", 2))

    @property
    def seed(self) -> int:
        return int(self.section("model").get("seed", 42))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Params:
        if not isinstance(raw, dict):
            raise ConfigError("params must be a mapping at the top level")
        raw = copy.deepcopy(raw)
        schema = Schema.from_dict(raw.get("schema", {}))
        params = cls(raw=raw, schema=schema)
        params._check()
        return params

    def _check(self) -> None:
        model = self.section("model")
        _one_of("model.encoding", model.get("encoding", "native"), _ENCODING)
        _one_of("model.impute", model.get("impute", "median"), _IMPUTE)
        _one_of("calibration.method", self.section("calibration").get("method", "isotonic"), _CALIBRATION)
        split = self.section("split")
        for key in ("test_size", "validation_size"):
            value = split.get(key, 0.2)
            if not isinstance(value, (int, float)) or not 0 < value < 0.5:
                raise ConfigError(f"split.{key}={value!r} must be a number in (0, 0.5)")
        hp = self.hyperparameters
        trees = hp.get("n_estimators", 1)
        if isinstance(trees, bool) or not isinstance(trees, int) or trees < 1:
            raise ConfigError(f"model.hyperparameters.n_estimators={trees!r} must be an integer >= 1")
        rate = number("model.hyperparameters.learning_rate", hp.get("learning_rate", 0.1))
        if not 0 < rate <= 1:
            raise ConfigError(f"model.hyperparameters.learning_rate={rate!r} must be in (0, 1]")
        if hp.get("class_weight") not in (None, "balanced"):
            raise ConfigError(f"model.hyperparameters.class_weight={hp.get('class_weight')!r} must be balanced or null")
        bands = self.section("scoring").get("risk_bands", {})
        if not isinstance(bands, dict) or not bands:
            raise ConfigError("scoring.risk_bands must map band names to lower bounds")
        if min(number(f"scoring.risk_bands.{k}", v) for k, v in bands.items()) != 0.0:
            raise ConfigError("scoring.risk_bands needs one band starting at 0.0")
        promotion = self.section("promotion")
        for key in ("min_improvement", "roc_auc_tolerance"):
            value = number(f"promotion.{key}", promotion.get(key, 0.0))
            if value < 0:
                raise ConfigError(f"promotion.{key}={value!r} must be a number >= 0")

    def with_overrides(self, overrides: dict[str, Any]) -> Params:
        """A copy with overrides applied: keys are hyperparameter names or dotted paths.

        String values (SageMaker sends only strings) are cast to the type the key already
        has; an unknown key or an uncastable value raises ConfigError naming the key.
        """
        raw = copy.deepcopy(self.raw)
        hp = raw.setdefault("model", {}).setdefault("hyperparameters", {})
        for key, value in overrides.items():
            if "." in key:
                *parents, leaf = key.split(".")
                node: Any = raw
                for part in parents:
                    node = node.get(part) if isinstance(node, dict) else None
                if not isinstance(node, dict) or leaf not in node:
                    raise ConfigError(f"unknown parameter {key!r}", key=key)
                node[leaf] = cast_like(key, value, node[leaf])
            elif key in hp:
                hp[key] = cast_like(key, value, hp[key])
            else:
                raise ConfigError(
                    f"unknown hyperparameter {key!r}; known: {', '.join(sorted(hp))} or dotted params paths",
                    key=key,
                )
        return Params.from_dict(raw)


def cast_like(key: str, value: Any, current: Any) -> Any:
    """Cast `value` (often a string) to the type of `current`, naming `key` on failure."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if isinstance(current, bool):
            lowered = text.lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(current, int):
            as_float = float(text)
            if not as_float.is_integer():
                raise ValueError(text)
            return int(as_float)
        if isinstance(current, float):
            return float(text)
        if current is None:
            return None if text.lower() in ("null", "none", "") else text
        if isinstance(current, str):
            # "null" is YAML's null (class_weight: null); "none" stays a value (calibration.method: none).
            return None if text.lower() in ("null", "") else text
    except ValueError as err:
        raise ConfigError(
            f"parameter {key!r}={value!r} is not a valid {type(current).__name__}", key=key
        ) from err
    raise ConfigError(f"parameter {key!r} cannot be overridden from a string", key=key)


def number(key: str, value: Any) -> float:
    """A finite number from params.yaml, or ConfigError naming the key."""
    try:
        result = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}={value!r} must be a number", key=key) from err
    if isinstance(value, bool) or not math.isfinite(result):
        raise ConfigError(f"{key}={value!r} must be a finite number", key=key)
    return result


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} must be one of {', '.join(allowed)}", key=key)


def load_params(path: str | Path | None = None) -> Params:
    """Read params.yaml from `path`, or the packaged default."""
    target = Path(path) if path else default_params_path()
    try:
        raw = yaml.safe_load(target.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"params file {str(target)!r} does not exist") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {str(target)!r} is not valid YAML: {err}") from err
    return Params.from_dict(raw)
