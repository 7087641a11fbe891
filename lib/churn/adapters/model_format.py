"""The model on disk in MLflow format: the sklearn Pipeline plus churn metadata in MLmodel.

Serialization is skops (MLflow 3's default), with the trusted types computed from the
pipeline we just fitted and checked against an allow-list of packages, so a model that
smuggles in some other type fails to save instead of being trusted blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import Model, infer_signature

from churn.compiled import CompiledModel
from churn.errors import ModelNotFound
from churn.model import TrainedModel
from churn.schema import Schema

TRUSTED_PREFIXES = ("lightgbm.", "sklearn.", "numpy.", "collections.", "scipy.", "builtins.")


@dataclass
class LoadedModel:
    """A model ready to score, with where it came from."""

    trained: TrainedModel
    compiled: CompiledModel
    metadata: dict[str, Any]
    name: str = "churn"
    version: str = "local"
    run_id: str = ""
    source: str = ""

    @property
    def reference_profile(self) -> dict[str, Any]:
        return dict(self.metadata.get("reference_profile", {}))


def trusted_types(pipeline: Any) -> list[str]:
    import skops.io as sio

    found = sorted(sio.get_untrusted_types(data=sio.dumps(pipeline)))
    foreign = [t for t in found if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise ValueError(f"refusing to trust types outside the allow-list: {foreign}")
    return found


def example_frame(frame: pd.DataFrame, rows: int = 3) -> pd.DataFrame:
    """A JSON-friendly input example: categories as plain strings."""
    head = frame.head(rows).copy()
    for column in head.columns:
        if isinstance(head[column].dtype, pd.CategoricalDtype):
            head[column] = head[column].astype(object)
    return head


def save(model: TrainedModel, path: Path, example: pd.DataFrame, extra: dict[str, Any]) -> None:
    """Write the MLflow-format model directory at `path` (which must not exist)."""
    sample = example_frame(example)
    metadata = {
        "threshold": model.threshold,
        "encoding": model.encoding,
        "best_iteration": model.best_iteration,
        "calibration": model.calibration,
        "schema": model.schema.to_dict(),
        **extra,
    }
    mlflow.sklearn.save_model(
        model.pipeline,
        str(path),
        serialization_format="skops",
        skops_trusted_types=trusted_types(model.pipeline),
        signature=infer_signature(sample, np.zeros(len(sample))),
        input_example=sample,
        pyfunc_predict_fn="predict_proba",
        metadata={"churn": metadata},
    )


def load(path: str | Path, n_threads: int = 2, **origin: str) -> LoadedModel:
    """Load a model directory written by `save` (e.g. /opt/ml/model)."""
    path = Path(path)
    if not (path / "MLmodel").is_file():
        raise ModelNotFound(f"no MLflow model in {str(path)!r} (MLmodel file missing)")
    metadata = dict((Model.load(str(path)).metadata or {}).get("churn", {}))
    if not metadata:
        raise ModelNotFound(f"model in {str(path)!r} has no churn metadata")
    pipeline = mlflow.sklearn.load_model(str(path))
    trained = TrainedModel(
        pipeline=pipeline,
        threshold=float(metadata["threshold"]),
        schema=Schema.from_dict(metadata["schema"]),
        encoding=str(metadata.get("encoding", "native")),
        best_iteration=int(metadata.get("best_iteration", 0)),
        calibration=str(metadata.get("calibration", "none")),
    )
    compiled = CompiledModel.from_trained(trained, n_threads=n_threads)
    origin.setdefault("source", str(path))
    return LoadedModel(trained=trained, compiled=compiled, metadata=metadata, **origin)
