"""The feature schema: names, types, bounds and allowed values, read from params.yaml.

Nothing here knows the nine seed fields: a user points the system at other columns by
editing `schema:` in params.yaml. A category may leave out `values:`: training learns them
from the non-test rows (churn.categories) and the model carries the resolved schema, so
scoring and serving judge against exactly the values the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from churn.errors import ConfigError

FieldType = Literal["int", "float", "category"]
Unknown = Literal["missing", "reject"]
_TYPES = ("int", "float", "category")
UNKNOWN_POLICIES = ("missing", "reject")
# Learned values kept per category when `max_values` is not given: a 50-state column fits
# with room to spare; a column of identifiers does not (churn.categories refuses those).
MAX_VALUES = 200


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature and the rules a value must satisfy."""

    name: str
    type: FieldType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] = ()
    unit: str | None = None  # what a number counts ("months"), for explanations in words
    # A category value the model was not trained on: scored as missing, or the record rejected.
    unknown: Unknown = "missing"
    max_values: int = MAX_VALUES  # learned values kept at most (the rest are unseen)
    learned: bool = False  # the values were learned from training rows, not listed in params.yaml

    @property
    def is_numeric(self) -> bool:
        return self.type != "category"

    @property
    def to_learn(self) -> bool:
        """A category whose values training has still to learn (params.yaml left them out)."""
        return not self.is_numeric and not self.values

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.is_numeric:
            out.update({"min": self.min, "max": self.max})
            if self.unit:
                out["unit"] = self.unit
        else:
            out.update({"values": list(self.values), "unknown": self.unknown})
            if self.learned or self.to_learn:
                out.update({"learned": True, "max_values": self.max_values})
        return out


@dataclass(frozen=True)
class Schema:
    """The id, label and status fields plus the ordered features."""

    features: tuple[FeatureSpec, ...]
    id_field: str = "customer_id"
    label_field: str = "churned"
    status_field: str = "status"
    active_status: str = "active"
    revenue_field: str | None = None
    by_name: dict[str, FeatureSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.features})

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.is_numeric]

    @property
    def categorical(self) -> list[FeatureSpec]:
        return [f for f in self.features if not f.is_numeric]

    @property
    def to_learn(self) -> list[FeatureSpec]:
        """Categories whose values training learns (left out of params.yaml)."""
        return [f for f in self.features if f.to_learn]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Schema:
        """Build and check a schema from the `schema:` mapping of params.yaml."""
        if not isinstance(raw, dict) or not raw.get("features"):
            raise ConfigError("schema.features must be a non-empty list")
        specs = []
        for i, item in enumerate(raw["features"]):
            where = f"schema.features[{i}]"
            if not isinstance(item, dict) or "name" not in item:
                raise ConfigError(f"{where} needs a name")
            ftype = item.get("type")
            if ftype not in _TYPES:
                raise ConfigError(f"{where}.type={ftype!r} is not one of {_TYPES}")
            raw_values = item.get("values")
            if raw_values is not None and (not isinstance(raw_values, (list, tuple)) or not raw_values):
                raise ConfigError(f"{where}.values ({item['name']}) must be a non-empty list; leave it out to "
                                  "learn the values from the training data")
            values = tuple(str(v) for v in raw_values or ())
            if values and ftype != "category":
                raise ConfigError(f"{where}.values ({item['name']}) is only for a category")
            if len(set(values)) != len(values):
                raise ConfigError(f"{where} ({item['name']}) repeats a value")
            unknown, max_values = _category_rules(where, item, ftype, values)
            lo, hi = item.get("min"), item.get("max")
            for bound, value in (("min", lo), ("max", hi)):
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ConfigError(f"{where}.{bound}={value!r} ({item['name']}) must be a number")
            if lo is not None and hi is not None and float(lo) > float(hi):
                raise ConfigError(f"{where} ({item['name']}) has min > max")
            unit = item.get("unit")
            if unit is not None and (ftype == "category" or not isinstance(unit, str) or not unit.strip()):
                raise ConfigError(f"{where}.unit={unit!r} ({item['name']}) must be a word for a number, e.g. months")
            specs.append(
                FeatureSpec(
                    name=str(item["name"]),
                    type=ftype,
                    nullable=bool(item.get("nullable", False)),
                    min=None if lo is None else float(lo),
                    max=None if hi is None else float(hi),
                    values=values,
                    unit=unit.strip() if unit else None,
                    unknown=unknown,
                    max_values=max_values,
                    learned=bool(item.get("learned", False)) and bool(values),
                )
            )
        names = [s.name for s in specs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"schema.features repeats {', '.join(repeated)}")
        schema = cls(
            features=tuple(specs),
            id_field=str(raw.get("id_field", "customer_id")),
            label_field=str(raw.get("label_field", "churned")),
            status_field=str(raw.get("status_field", "status")),
            active_status=str(raw.get("active_status", "active")),
            revenue_field=raw.get("revenue_field"),
        )
        if schema.revenue_field is not None and schema.revenue_field not in schema.by_name:
            raise ConfigError(f"schema.revenue_field={schema.revenue_field!r} is not a feature")
        return schema

    def to_dict(self) -> dict[str, Any]:
        return {
            "id_field": self.id_field,
            "label_field": self.label_field,
            "status_field": self.status_field,
            "active_status": self.active_status,
            "revenue_field": self.revenue_field,
            "features": [f.to_dict() for f in self.features],
        }


def _category_rules(where: str, item: dict[str, Any], ftype: str, values: tuple[str, ...]) -> tuple[Unknown, int]:
    """`unknown` (reject | missing) and `max_values` (learned values only), checked."""
    name = item["name"]
    for key in ("unknown", "max_values"):
        if key in item and ftype != "category":
            raise ConfigError(f"{where}.{key} ({name}) is only for a category")
    unknown = item.get("unknown", "missing")
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"{where}.unknown={unknown!r} ({name}) must be one of {', '.join(UNKNOWN_POLICIES)}")
    policy: Unknown = "reject" if unknown == "reject" else "missing"
    max_values = item.get("max_values", MAX_VALUES)
    if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 1:
        raise ConfigError(f"{where}.max_values={max_values!r} ({name}) must be an integer >= 1")
    if "max_values" in item and values and not item.get("learned"):
        raise ConfigError(f"{where}.max_values ({name}) caps learned values: leave out `values:` to learn them, "
                          "or drop max_values")
    return policy, int(max_values)
