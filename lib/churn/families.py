"""Families of synthetic churn tables with known true probabilities, for judging defaults broadly.

The main generator (`churn.generator`) draws one telecom population whose churn log-odds
are nearly additive; defaults tuned on it alone can lose on tables whose churn comes from
interactions, thresholds or duplicated columns. Each family here is a documented process
with its own columns (a params.yaml `schema:` mapping), a few pure-noise columns, a target
churn rate, and the true probability of every row (the oracle). Output depends only on
(family, rows, seed).

- additive: today's generator (its nine seed fields), ~25% churners.
- interaction: plan flags times usage (an international plan with many international
  minutes, heavy day use without a voice-mail plan), little else; ~14% churners.
- threshold: step effects on counts (risk jumps past the 4th service call, past 2 outages,
  inside the first 6 months), small smooth effects; ~18% churners.
- redundant: charges that are products of minutes and rates, and totals that are sums of
  them; churn depends on the total bill and on charge per call; ~22% churners.
- telecom: all of the above at once in 19 feature columns, like a public telecom churn table
  (3.3k rows, 14% churners in the real one); ~14% churners.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from churn import generator

LABEL_NOISE = 0.02
NAMES = ("additive", "interaction", "threshold", "redundant", "telecom")


@dataclass(frozen=True)
class Family:
    """One generated table: the rows (id, features, label, true_probability) and its schema."""

    name: str
    table: pa.Table
    schema: dict[str, Any]

    @property
    def churn_rate(self) -> float:
        return float(np.mean(self.table.column("churned").to_numpy(zero_copy_only=False)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@functools.cache
def _shift(name: str) -> float:
    """The family's intercept: the log-odds shift that gives its target churn rate on a fixed
    reference sample of 100,000 rows, so every seed and size draws from one process."""
    _, _, z, rate = _PROCESSES[name](np.random.default_rng([0, NAMES.index(name), 99]), 100_000)
    return _intercept(z, rate)


def _intercept(z: np.ndarray, rate: float) -> float:
    """The shift of the log-odds that gives the target churn rate on these rows (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if np.mean(LABEL_NOISE + (1 - 2 * LABEL_NOISE) * _sigmoid(z + mid)) < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _num(name: str, kind: str = "float", low: float = 0.0, high: float = 1e9) -> dict[str, Any]:
    return {"name": name, "type": kind, "min": low, "max": high}


def _cat(name: str, values: tuple[str, ...]) -> dict[str, Any]:
    return {"name": name, "type": "category", "values": list(values)}


def _noise(rng: np.random.Generator, n: int, cols: dict[str, Any], specs: list[dict[str, Any]]) -> None:
    """Three columns no churn depends on: two numbers and a category."""
    cols["noise_score"] = np.round(rng.normal(50, 15, n).clip(0, 100), 2)
    cols["noise_count"] = rng.poisson(3, n)
    cols["noise_region"] = rng.choice(["north", "south", "east", "west"], n)
    specs += [_num("noise_score", "float", 0, 100), _num("noise_count", "int", 0, 1000),
              _cat("noise_region", ("north", "south", "east", "west"))]


def _usage(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Telecom usage shared by several families: plans, minutes, calls, account length."""
    return {
        "intl_plan": rng.random(n) < 0.1,
        "vmail_plan": rng.random(n) < 0.28,
        "day_minutes": np.round(rng.normal(180, 54, n).clip(0, 400), 1),
        "eve_minutes": np.round(rng.normal(200, 50, n).clip(0, 400), 1),
        "night_minutes": np.round(rng.normal(200, 50, n).clip(0, 400), 1),
        "intl_minutes": np.round(rng.normal(10, 2.8, n).clip(0, 25), 1),
        "intl_calls": rng.poisson(4.5, n),
        "service_calls": rng.poisson(1.5, n),
        "account_length": rng.integers(1, 240, n),
    }


YES_NO = ("yes", "no")


def _yes_no(flag: np.ndarray) -> np.ndarray:
    return np.where(flag, "yes", "no")


def _interaction(rng: np.random.Generator, n: int) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray, float]:
    u = _usage(rng, n)
    z = (4.5 * u["intl_plan"] * (u["intl_minutes"] > 13) + 3.5 * u["intl_plan"] * (u["intl_calls"] < 3)
         + 4.0 * (~u["vmail_plan"]) * (u["day_minutes"] > 245) - 1.5 * u["vmail_plan"] * (u["day_minutes"] < 150)
         + 0.006 * (u["eve_minutes"] - 200))
    cols = {"intl_plan": _yes_no(u["intl_plan"]), "vmail_plan": _yes_no(u["vmail_plan"]),
            **{k: u[k] for k in ("day_minutes", "eve_minutes", "intl_minutes", "intl_calls", "account_length")}}
    specs = [_cat("intl_plan", YES_NO), _cat("vmail_plan", YES_NO), _num("day_minutes", "float", 0, 1000),
             _num("eve_minutes", "float", 0, 1000), _num("intl_minutes", "float", 0, 100),
             _num("intl_calls", "int", 0, 1000), _num("account_length", "int", 0, 10000)]
    return cols, specs, z, 0.14


def _threshold(rng: np.random.Generator, n: int) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray, float]:
    u = _usage(rng, n)
    outages = rng.poisson(0.8, n)
    tenure = rng.integers(0, 73, n)
    plan = rng.choice(["basic", "plus", "premium"], n, p=[0.5, 0.3, 0.2])
    z = (4.0 * (u["service_calls"] >= 4) + 2.5 * (outages >= 3) + 2.0 * (tenure < 6)
         + 0.006 * (u["day_minutes"] - 180) - 0.8 * (plan == "premium") + 0.15 * u["service_calls"])
    cols = {"service_calls": u["service_calls"], "outages": outages, "tenure": tenure, "plan": plan,
            "day_minutes": u["day_minutes"], "account_length": u["account_length"]}
    specs = [_num("service_calls", "int", 0, 1000), _num("outages", "int", 0, 1000), _num("tenure", "int", 0, 1200),
             _cat("plan", ("basic", "plus", "premium")), _num("day_minutes", "float", 0, 1000),
             _num("account_length", "int", 0, 10000)]
    return cols, specs, z, 0.18


def _charges(u: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Charges as minutes times a rate, and the totals as their sums (redundant on purpose)."""
    day, eve, night = (np.round(u[f"{k}_minutes"] * r, 2) for k, r in (("day", 0.17), ("eve", 0.085),
                                                                       ("night", 0.045)))
    intl = np.round(u["intl_minutes"] * 0.27, 2)
    total_minutes = np.round(u["day_minutes"] + u["eve_minutes"] + u["night_minutes"] + u["intl_minutes"], 1)
    return {"day_charge": day, "eve_charge": eve, "night_charge": night, "intl_charge": intl,
            "total_minutes": total_minutes, "total_charge": np.round(day + eve + night + intl, 2)}


def _redundant(rng: np.random.Generator, n: int) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray, float]:
    u = _usage(rng, n)
    c = _charges(u)
    calls = u["service_calls"]
    per_call = np.round(c["total_charge"] / (1 + calls), 2)
    z = 4.0 * _sigmoid((c["total_charge"] - 75) / 2) + 1.5 * (per_call < 15) + 0.04 * (c["day_charge"] - 30)
    cols = {**{k: u[k] for k in ("day_minutes", "eve_minutes", "night_minutes", "intl_minutes")}, **c,
            "service_calls": calls, "charge_per_call": per_call}
    specs = [_num(k, "float", 0, 10000) for k in ("day_minutes", "eve_minutes", "night_minutes", "intl_minutes",
                                                  "day_charge", "eve_charge", "night_charge", "intl_charge",
                                                  "total_minutes", "total_charge")]
    specs += [_num("service_calls", "int", 0, 1000), _num("charge_per_call", "float", 0, 10000)]
    return cols, specs, z, 0.22


def _telecom(rng: np.random.Generator, n: int) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray, float]:
    u = _usage(rng, n)
    c = _charges(u)
    vmail_messages = np.where(u["vmail_plan"], rng.poisson(28, n), 0)
    state = rng.choice(["CA", "NY", "TX", "WV", "NJ", "OH", "MN", "AL"], n)
    z = (4.0 * (u["service_calls"] >= 4) + 4.5 * u["intl_plan"] * (u["intl_minutes"] > 13)
         + 3.5 * u["intl_plan"] * (u["intl_calls"] < 3) + 4.0 * _sigmoid((c["total_charge"] - 76) / 2)
         * (~u["vmail_plan"]) - 1.0 * u["vmail_plan"] + 0.3 * (state == "NJ"))
    cols = {"account_length": u["account_length"], "state": state, "intl_plan": _yes_no(u["intl_plan"]),
            "vmail_plan": _yes_no(u["vmail_plan"]), "vmail_messages": vmail_messages,
            **{k: u[k] for k in ("day_minutes", "eve_minutes", "night_minutes", "intl_minutes", "intl_calls")},
            **{k: c[k] for k in ("day_charge", "eve_charge", "night_charge", "intl_charge", "total_charge")},
            "service_calls": u["service_calls"]}
    specs = [_num("account_length", "int", 0, 10000), _cat("state", ("CA", "NY", "TX", "WV", "NJ", "OH", "MN", "AL")),
             _cat("intl_plan", YES_NO), _cat("vmail_plan", YES_NO), _num("vmail_messages", "int", 0, 1000)]
    specs += [_num(k, "float", 0, 10000) for k in ("day_minutes", "eve_minutes", "night_minutes", "intl_minutes")]
    specs += [_num("intl_calls", "int", 0, 1000)]
    specs += [_num(k, "float", 0, 10000) for k in ("day_charge", "eve_charge", "night_charge", "intl_charge",
                                                   "total_charge")]
    specs += [_num("service_calls", "int", 0, 1000)]
    return cols, specs, z, 0.14


_PROCESSES: dict[str, Callable[[np.random.Generator, int], tuple[dict[str, Any], list[dict[str, Any]],
                                                                  np.ndarray, float]]] = {
    "interaction": _interaction, "threshold": _threshold, "redundant": _redundant, "telecom": _telecom,
}


def additive_schema() -> dict[str, Any]:
    """The seed's nine fields (what `generator` writes), as a params.yaml `schema:` mapping."""
    from churn.params import load_params

    return load_params().schema.to_dict()


def make(name: str, rows: int, seed: int = 1) -> Family:
    """The `name` family's table of `rows` customers, reproducible from `seed`."""
    if name == "additive":
        table = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=rows, seed=seed)))
        keep = ["customer_id", *generator.FEATURES, "churned", "true_probability"]
        return Family(name, table.select(keep), additive_schema())
    if name not in _PROCESSES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(NAMES)}")
    rng = np.random.default_rng([seed, NAMES.index(name)])
    cols, specs, z, _ = _PROCESSES[name](rng, rows)
    _noise(rng, rows, cols, specs)
    z = z + _shift(name)
    probability = LABEL_NOISE + (1 - 2 * LABEL_NOISE) * _sigmoid(z)
    churned = rng.random(rows) < probability
    table = pa.table({"customer_id": [f"{name[0].upper()}{i:07d}" for i in range(rows)],
                      **{k: pa.array(v) for k, v in cols.items()},
                      "churned": pa.array(churned), "true_probability": pa.array(probability)})
    schema = {"id_field": "customer_id", "label_field": "churned", "features": specs}
    return Family(name, table, schema)
