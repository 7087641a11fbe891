"""params.yaml: loading, typed access and overrides (SageMaker hyperparameters, CLI).

The file is the single source of what changes the model; this module reads it, checks
every key (a typo names the closest known key), builds the typed sections of
`churn.config` once, and casts string overrides against the types the keys have.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from churn.config import (
    CalibrationConfig,
    DataConfig,
    ModelConfig,
    PromotionConfig,
    SplitConfig,
    ThresholdConfig,
    TuningConfig,
)
from churn.errors import ConfigError
from churn.param_checks import check_keys, check_other_sections, number
from churn.schema import Schema

__all__ = ["Params", "cast_like", "default_params_path", "load_params", "number"]

SECTIONS = ("schema", "data", "split", "model", "tuning", "calibration", "threshold", "promotion", "scoring",
            "serving")


def default_params_path() -> Path:
    """The params.yaml shipped inside the package (the repo's own params.yaml)."""
    return Path(str(resources.files("churn") / "defaults" / "params.yaml"))


@dataclass(frozen=True)
class Params:
    """The parsed params.yaml: `raw` keeps the plain mapping for logging and hashing; the typed
    sections, built once by `from_dict`, are what the code reads."""

    raw: dict[str, Any]
    schema: Schema
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)

    def section(self, name: str) -> dict[str, Any]:
        """The plain mapping of one section (for sections typed elsewhere, e.g. `scoring:`)."""
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.model.hyperparameters)

    @property
    def n_jobs(self) -> int:
        return self.model.n_jobs

    @property
    def seed(self) -> int:
        return self.model.seed

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Params:
        if not isinstance(raw, dict):
            raise ConfigError("params must be a mapping at the top level")
        raw = copy.deepcopy(raw)
        check_keys("", raw, SECTIONS)
        check_other_sections(raw)
        params = cls(
            raw=raw,
            schema=Schema.from_dict(raw.get("schema", {})),
            data=DataConfig.from_raw(raw),
            split=SplitConfig.from_raw(raw),
            model=ModelConfig.from_raw(raw),
            tuning=TuningConfig.from_raw(raw),
            calibration=CalibrationConfig.from_raw(raw),
            threshold=ThresholdConfig.from_raw(raw),
            promotion=PromotionConfig.from_raw(raw),
        )
        params._check()
        return params

    def _check(self) -> None:
        bands = self.section("scoring").get("risk_bands", {})
        if not isinstance(bands, dict) or not bands:
            raise ConfigError("scoring.risk_bands must map band names to lower bounds")
        if min(number(f"scoring.risk_bands.{k}", v) for k, v in bands.items()) != 0.0:
            raise ConfigError("scoring.risk_bands needs one band starting at 0.0")

    def with_overrides(self, overrides: dict[str, Any]) -> Params:
        """A copy with overrides applied: keys are hyperparameter names or dotted paths.

        String values (SageMaker sends only strings) are cast to the type the key has (in
        the file, or the typed section's default when the file leaves it out); an unknown
        key or an uncastable value raises ConfigError naming the key.
        """
        raw = copy.deepcopy(self.raw)
        hp = raw.setdefault("model", {}).setdefault("hyperparameters", {})
        for key, value in overrides.items():
            if "." in key:
                *parents, leaf = key.split(".")
                node: Any = raw
                for part in parents:
                    if isinstance(node, dict) and part not in node and self._default(key) is not _MISSING:
                        node[part] = {}
                    node = node.get(part) if isinstance(node, dict) else None
                current = node.get(leaf, _MISSING) if isinstance(node, dict) else _MISSING
                if current is _MISSING:
                    current = self._default(key)
                if not isinstance(node, dict) or current is _MISSING:
                    raise ConfigError(f"unknown parameter {key!r}", key=key)
                node[leaf] = cast_like(key, value, current)
            elif key in hp:
                hp[key] = cast_like(key, value, hp[key])
            else:
                raise ConfigError(
                    f"unknown hyperparameter {key!r}; known: {', '.join(sorted(hp))} or dotted params paths",
                    key=key,
                )
        return Params.from_dict(raw)

    def _default(self, key: str) -> Any:
        """The typed sections' value at a dotted path (a key the file may leave out)."""
        node: Any = self
        for part in key.split("."):
            if part not in getattr(node, "__dataclass_fields__", {}):
                return _MISSING
            node = getattr(node, part)
        return _MISSING if isinstance(node, dict) or hasattr(node, "__dataclass_fields__") else node


_MISSING: Any = object()


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
