"""A model card: what one registered version is, what it was trained on and how it tested.

Built from registry facts by churn.adapters.model_cards; rendered here as plain text for
a terminal (`churn model show VERSION`) and as Markdown for MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# How interval bounds of a metric M may be named next to it (M.low/M.high, M_ci_low/M_ci_high...).
_BOUNDS = ((".low", ".high"), ("_low", "_high"), (".ci_low", ".ci_high"), ("_ci_low", "_ci_high"),
           (".lower", ".upper"), ("_lower", "_upper"))


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    low: float | None = None
    high: float | None = None

    def shown(self) -> str:
        value = _number(self.value)
        if self.low is None or self.high is None:
            return value
        return f"{value} [{_number(self.low)}, {_number(self.high)}]"


@dataclass(frozen=True)
class ModelCard:
    """The facts of one version, gathered from its registry entry, its run and its MLmodel."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    created: str
    verdict: str
    verdict_reason: str
    data_hash: str
    data_source: str
    sizes: dict[str, int]
    features: list[dict[str, Any]]
    threshold: float | None
    calibration: str
    params: dict[str, str]
    metrics: list[Metric]
    plots: list[str]
    model_sha256: str
    git_commit: str
    trained_at: str
    moves: dict[str, str] = field(default_factory=dict)

    def facts(self) -> list[tuple[str, str]]:
        return [
            ("model", f"{self.name} version {self.version}"),
            ("aliases", ", ".join(self.aliases) or "-"),
            ("verdict", f"{self.verdict or '-'}" + (f" ({self.verdict_reason})" if self.verdict_reason else "")),
            ("threshold", "-" if self.threshold is None else _number(self.threshold)),
            ("calibration", self.calibration or "-"),
            ("data hash", self.data_hash or "-"),
            ("data source", self.data_source or "-"),
            ("data size", ", ".join(f"{k} {v:,}" for k, v in self.sizes.items()) or "-"),
            ("trained at", self.trained_at or "-"),
            ("registered", self.created or "-"),
            ("git commit", self.git_commit or "-"),
            ("run", self.run_id or "-"),
            ("model sha256", self.model_sha256 or "-"),
            *sorted(self.moves.items()),
        ]

    def text(self) -> str:
        width = max(len(k) for k, _ in self.facts())
        lines = [f"{key:<{width}}  {value}" for key, value in self.facts()]
        lines += ["", "test metrics:"] + [f"  {m.name:<24} {m.shown()}" for m in self.metrics]
        lines += ["", "features:"] + [f"  {_feature(f)}" for f in self.features]
        lines += ["", "params:"] + [f"  {k} = {v}" for k, v in sorted(self.params.items())]
        lines += ["", "plots:"] + [f"  {p}" for p in self.plots]
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        out = [f"# Model card: {self.name} version {self.version}", "", "| | |", "| --- | --- |"]
        out += [f"| {key} | {_cell(value)} |" for key, value in self.facts()]
        out += ["", "## Test metrics", "", "| metric | value [interval] |", "| --- | --- |"]
        out += [f"| {m.name} | {m.shown()} |" for m in self.metrics]
        out += ["", "## Features", "", "| name | type | rule |", "| --- | --- | --- |"]
        out += [f"| {f['name']} | {f.get('type', '')} | {_cell(_rule(f))} |" for f in self.features]
        out += ["", "## Parameters", "", "| name | value |", "| --- | --- |"]
        out += [f"| {k} | {_cell(v)} |" for k, v in sorted(self.params.items())]
        out += ["", "## Plots", ""] + [f"- {p}" for p in self.plots]
        return "\n".join(out) + "\n"


def metrics_with_intervals(metrics: dict[str, float], prefix: str = "test.") -> list[Metric]:
    """The metrics under `prefix`, each with its interval when bounds are logged beside it."""
    chosen = {k: v for k, v in metrics.items() if k.startswith(prefix)}
    bound_keys: set[str] = set()
    found: list[Metric] = []
    for name in sorted(chosen):
        for low_suffix, high_suffix in _BOUNDS:
            if name + low_suffix in chosen and name + high_suffix in chosen:
                bound_keys |= {name + low_suffix, name + high_suffix}
                found.append(Metric(name, chosen[name], chosen[name + low_suffix], chosen[name + high_suffix]))
                break
        else:
            found.append(Metric(name, chosen[name]))
    return [m for m in found if m.name not in bound_keys]


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:,.0f}"


def _rule(feature: dict[str, Any]) -> str:
    if feature.get("values"):
        return "one of " + ", ".join(str(v) for v in feature["values"])
    bounds = [f">= {_plain(feature['min'])}" if feature.get("min") is not None else "",
              f"<= {_plain(feature['max'])}" if feature.get("max") is not None else ""]
    rule = " and ".join(b for b in bounds if b)
    return rule + ("; may be missing" if feature.get("nullable") else "")


def _plain(bound: Any) -> Any:
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound


def _feature(feature: dict[str, Any]) -> str:
    return f"{feature['name']} ({feature.get('type', '?')}): {_rule(feature) or '-'}"


def _cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
