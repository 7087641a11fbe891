"""The spelling and value rules every params.yaml section shares, kept apart from the typed sections.

A typo names the closest known key; a bad value names its key and what it must be. The
sections typed elsewhere (`scoring:`, `serving:`) and the schema are only spell-checked here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from churn.errors import ConfigError

# Sections whose typed class lives elsewhere: only their keys are checked here.
SCORING_KEYS = ("chunk_rows", "risk_bands", "reason_threshold", "top_reasons", "max_reject_share", "keep_days")
SERVING_KEYS = ("max_rows",)
SCHEMA_KEYS = ("id_field", "label_field", "status_field", "active_status", "revenue_field", "features")
FEATURE_KEYS = ("name", "type", "nullable", "min", "max", "values", "unit", "unknown", "max_values")


def check_keys(where: str, given: Iterable[str], known: Iterable[str]) -> None:
    """ConfigError naming the first unknown key and the closest known one."""
    known = list(known)
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
            name = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"unknown parameter {name!r}{hint}", key=name)


def number(key: str, value: Any) -> float:
    """A finite number from params.yaml, or ConfigError naming the key."""
    try:
        result = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}={value!r} must be a number", key=key) from err
    if isinstance(value, bool) or not math.isfinite(result):
        raise ConfigError(f"{key}={value!r} must be a finite number", key=key)
    return result


def integer(key: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ConfigError(f"{key}={value!r} must be an integer", key=key)
    if low is not None and int(value) < low:
        raise ConfigError(f"{key}={value!r} must be an integer >= {low}", key=key)
    return int(value)


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} must be one of {', '.join(allowed)}", key=key)
    return str(value)


def section(raw: Mapping[str, Any], name: str, cls: type) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping", key=name)
    check_keys(name, value, [f.name for f in fields(cls)])
    return value


def hyperparameter_names() -> set[str]:
    """Every name LightGBM accepts: LGBMClassifier's arguments plus the booster's parameters."""
    import inspect

    from lightgbm import LGBMClassifier

    names = {p for p in inspect.signature(LGBMClassifier.__init__).parameters if p not in ("self", "kwargs")}
    try:  # LightGBM's own table of parameters and their aliases (private, so guarded)
        from lightgbm.basic import _ConfigAliases

        for canonical, aliases in _ConfigAliases._get_all_param_aliases().items():
            names.add(canonical)
            names.update(aliases)
    except (ImportError, AttributeError):
        pass
    return names


def check_hyperparameters(where: str, hp: Mapping[str, Any]) -> None:
    """Names LightGBM knows, and the values this project relies on."""
    check_keys(where, hp, hyperparameter_names())
    trees = hp.get("n_estimators", 1)
    if isinstance(trees, bool) or not isinstance(trees, int) or trees < 1:
        raise ConfigError(f"{where}.n_estimators={trees!r} must be an integer >= 1", key=f"{where}.n_estimators")
    rate = number(f"{where}.learning_rate", hp.get("learning_rate", 0.1))
    if not 0 < rate <= 1:
        raise ConfigError(f"{where}.learning_rate={rate!r} must be in (0, 1]", key=f"{where}.learning_rate")
    if hp.get("class_weight") not in (None, "balanced"):
        raise ConfigError(f"{where}.class_weight={hp.get('class_weight')!r} must be balanced or null",
                          key=f"{where}.class_weight")


def check_other_sections(raw: Mapping[str, Any]) -> None:
    """Spelling of the sections typed elsewhere (scoring, serving) and of the schema."""
    for name, known in (("scoring", SCORING_KEYS), ("serving", SERVING_KEYS), ("schema", SCHEMA_KEYS)):
        section = raw.get(name) or {}
        if isinstance(section, dict):
            check_keys(name, section, known)
    features = (raw.get("schema") or {}).get("features") or []
    for i, item in enumerate(features if isinstance(features, list) else []):
        if isinstance(item, dict):
            check_keys(f"schema.features[{i}]", item, FEATURE_KEYS)
