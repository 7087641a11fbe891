"""A loaded model made ready for requests: the record encoder built and a probe scored.

The probe is the gate for hot reload: a model whose fast path, compiled path and sklearn
Pipeline disagree on a plain record, or on one with category values the model never learned
(or give no probability), is never swapped in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn.errors import InvalidModel
from churn.fast_path import RecordEncoder
from churn.model import to_frame
from churn.model_source import LoadedModel
from churn.schema import Schema
from churn.single_row_predictor import SingleRowScorer
from churn.validation import validate

PROBE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ServingModel:
    """What a request needs from a model, built once per load."""

    loaded: LoadedModel
    encoder: RecordEncoder
    scorer: SingleRowScorer

    @property
    def schema(self) -> Schema:
        return self.loaded.compiled.schema

    @classmethod
    def prepare(cls, loaded: LoadedModel) -> ServingModel:
        """Build the encoder and check the model on probe records; InvalidModel if it fails."""
        try:
            served = cls(loaded, RecordEncoder(loaded.compiled), SingleRowScorer(loaded.compiled))
            for record in probe_records(loaded):
                served._probe(record)
        except InvalidModel:
            raise
        except Exception as err:  # a broken model can fail anywhere: report, never serve it
            raise InvalidModel(f"model {loaded.version} failed its probe: {type(err).__name__}: {err}") from err
        return served

    def _probe(self, record: dict[str, Any]) -> None:
        compiled = self.loaded.compiled
        encoded = self.encoder.encode(record)
        checked = validate([record], self.schema)
        if encoded is None or checked.clean.num_rows != 1:
            raise InvalidModel(f"model {self.loaded.version}: the probe record {record} does not validate")
        if set(encoded.unseen) != set(checked.unseen_in_clean()):
            raise InvalidModel(f"model {self.loaded.version}: the fast path and the validator disagree on which "
                               f"values of the probe record {record} are unseen")
        fast = float(self.scorer.probability(encoded.row)[0])
        general = float(compiled.probability(compiled.matrix(checked.clean))[0])
        reference = float(self.loaded.trained.predict_proba(to_frame(checked.clean, self.schema))[0])
        if not (0.0 <= fast <= 1.0 and math.isfinite(fast)):
            raise InvalidModel(f"model {self.loaded.version} gave probability {fast} on the probe record")
        if abs(fast - general) > PROBE_TOLERANCE or abs(fast - reference) > PROBE_TOLERANCE:
            raise InvalidModel(
                f"model {self.loaded.version} disagrees with itself on the probe record: "
                f"fast {fast!r}, compiled {general!r}, pipeline {reference!r}"
            )

    def describe(self) -> dict[str, Any]:
        """The model's identity and decision rule, for GET /version."""
        loaded = self.loaded
        return {
            "model_name": loaded.name,
            "model_version": loaded.version,
            "run_id": loaded.run_id,
            "source": loaded.source,
            "threshold": loaded.compiled.threshold,
            "calibration": loaded.trained.calibration,
            "features": loaded.compiled.feature_order,
            "data_hash": loaded.metadata.get("data_hash"),
        }


def probe_records(loaded: LoadedModel) -> list[dict[str, Any]]:
    """A typical record (training medians, first categories), a sparse one if any field may be missing,
    and one whose categories are values the model never learned if any is scored as missing."""
    schema = loaded.compiled.schema
    fills = dict(zip([s.name for s in schema.numeric], np.asarray(loaded.compiled.fill).tolist()))
    typical: dict[str, Any] = {schema.id_field: "probe"}
    for spec in schema.features:
        if spec.is_numeric:
            value = fills[spec.name]
            lo = -math.inf if spec.min is None else spec.min
            hi = math.inf if spec.max is None else spec.max
            value = min(max(value, lo), hi) if math.isfinite(value) else max(lo, min(0.0, hi))
            if spec.type == "int":
                value = math.floor(value) if math.floor(value) >= lo else math.ceil(value)
            typical[spec.name] = value
        else:
            typical[spec.name] = spec.values[0]
    sparse = {**typical, **{s.name: None for s in schema.features if s.nullable}}
    unseen = {**typical, **{s.name: unseen_value(s.values) for s in schema.categorical if s.unknown == "missing"}}
    return [typical] + [record for record in (sparse, unseen) if record != typical]


def unseen_value(values: tuple[str, ...]) -> str:
    """A plain value that no case or spacing of `values` matches."""
    taken = {v.strip().lower() for v in values}
    value = "churn-probe-unseen"
    while value in taken:
        value += "-"
    return value
