"""The model on disk in MLflow format: the sklearn Pipeline plus churn metadata in MLmodel.

Loading a model must never run code from it. A model directory is only loaded when its
MLmodel names the skops format (pickle and cloudpickle run code while loading) and every
type its skops file needs is on the project's own allow-list (`ALLOWED_TYPES`) — never the
list the MLmodel carries, which whoever wrote the file chose. Both checks read the files
as data before anything is deserialized.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from churn import files
from churn.compiled import CompiledModel
from churn.errors import InvalidModel, ModelNotFound, UntrustedModel
from churn.model import TrainedModel
from churn.model_source import LoadedModel
from churn.schema import Schema

FORMAT = "skops"
# Beyond skops' own safe defaults (builtins containers, numpy arrays, sklearn estimators),
# the exact types our pipelines need, for every encoding and calibration params.yaml allows.
# Exact names, not prefixes: "builtins." or "numpy." would admit exec or numpy.load.
# A new pipeline step that needs another type fails to save until it is added here on purpose.
ALLOWED_TYPES = frozenset({
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
})


@dataclass(frozen=True)
class CheckedModel:
    """A model directory that passed `check`: its skops file, the types it needs, its MLmodel."""

    path: Path
    skops_file: Path
    types: list[str]
    spec: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        return dict((self.spec.get("metadata") or {}).get("churn") or {})

    @property
    def run_id(self) -> str:
        return str(self.spec.get("run_id") or "")


def trusted_types(pipeline: Any) -> list[str]:
    """The types skops must trust to load `pipeline`; UntrustedModel if one is off the allow-list."""
    import skops.io as sio

    found = sorted(sio.get_untrusted_types(data=sio.dumps(pipeline)))
    foreign = [t for t in found if t not in ALLOWED_TYPES]
    if foreign:
        raise UntrustedModel(
            f"refusing to save a pipeline holding types outside model_format.ALLOWED_TYPES: {foreign}"
        )
    return found


def example_frame(frame: pd.DataFrame, schema: Schema, rows: int = 3) -> pd.DataFrame:
    """A JSON-friendly input example in the signature's types: categories as strings, ints as ints."""
    head = frame.head(rows).copy()
    for column in head.columns:
        if isinstance(head[column].dtype, pd.CategoricalDtype):
            head[column] = head[column].astype(object)
    for spec in schema.features:
        if spec.type == "int" and not spec.nullable and head[spec.name].notna().all():
            head[spec.name] = head[spec.name].astype("int64")
    return head


def save(model: TrainedModel, path: Path, example: pd.DataFrame, extra: dict[str, Any]) -> None:
    """Write the MLflow-format model directory at `path` (which must not exist)."""
    import mlflow

    sample = example_frame(example, model.schema)
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
        serialization_format=FORMAT,
        skops_trusted_types=trusted_types(model.pipeline),
        signature=signature(model.schema),
        input_example=sample,
        pyfunc_predict_fn="predict_proba",
        metadata={"churn": metadata},
    )


def signature(schema: Schema) -> Any:
    """The MLflow signature of what the pipeline takes and what pyfunc's predict_proba returns.

    Integer features are `long` (a nullable one `double`: a missing value makes the column
    float), floats `double`, categories `string`. Every column is required: MLflow's
    "optional" means the column may be absent, which the Pipeline cannot take; a missing
    VALUE (NaN/None) passes in a required column. The output is (n, 2): P(stay), P(churn).
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, TensorSpec
    from mlflow.types.schema import Schema as MlflowSchema

    def kind(spec: Any) -> str:
        if not spec.is_numeric:
            return "string"
        return "long" if spec.type == "int" and not spec.nullable else "double"

    inputs = MlflowSchema([ColSpec(kind(spec), spec.name) for spec in schema.features])
    return ModelSignature(inputs=inputs, outputs=MlflowSchema([TensorSpec(np.dtype("float64"), (-1, 2))]))


def check(path: str | Path) -> CheckedModel:
    """Refuse a model directory that could run code when loaded; read as data only.

    ModelNotFound when there is no MLmodel; UntrustedModel (naming the reason) when the
    format is not skops, the skops file is not a plain file inside the directory, or it
    needs a type outside ALLOWED_TYPES; InvalidModel when the skops file is unreadable.
    """
    path = Path(path)
    where = str(path)
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise ModelNotFound(f"no MLflow model in {where!r} (MLmodel file missing)")
    try:
        spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UntrustedModel(f"model in {where!r}: MLmodel is not readable YAML ({type(err).__name__})") from err
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        raise UntrustedModel(f"model in {where!r} has no sklearn flavor: only skops-serialized sklearn models load")
    fmt = flavor.get("serialization_format", "pickle")  # MLflow reads a missing format as pickle
    if fmt != FORMAT:
        raise UntrustedModel(
            f"model in {where!r} is serialized as {fmt!r}: refused, only {FORMAT!r} is loaded "
            "(pickle formats run code while loading)"
        )
    name = flavor.get("pickled_model")
    skops_file = path / str(name)
    plain = isinstance(name, str) and name == Path(name).name and not name.startswith(".")
    if not plain or skops_file.is_symlink() or not skops_file.is_file():
        raise UntrustedModel(f"model in {where!r}: pickled_model {name!r} is not a plain file inside the directory")
    import skops.io as sio

    try:
        types = sorted(sio.get_untrusted_types(file=skops_file))  # parses the schema; constructs nothing
    except Exception as err:  # a corrupt zip can fail anywhere in the parser: broken, not loaded
        raise InvalidModel(
            f"model in {where!r}: {name} is not a readable skops file ({type(err).__name__}: {err})"
        ) from err
    foreign = [t for t in types if t not in ALLOWED_TYPES]
    if foreign:
        raise UntrustedModel(f"model in {where!r} needs types outside the project's allow-list: {foreign}; refused")
    return CheckedModel(path=path, skops_file=skops_file, types=types, spec=spec)


def digest(path: str | Path) -> str:
    """sha256 of a model directory: every file's relative path and content sha256, in path order."""
    root = Path(path)
    total = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        total.update(f"{file.relative_to(root).as_posix()}\0{files.sha256_file(file)}\n".encode())
    return total.hexdigest()


def trained_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """The schema a model was trained under. A model saved before categories had an `unknown`
    policy rejected values outside its lists: it keeps doing so (its training dropped such rows)."""
    features = [dict(f) for f in raw.get("features") or []]
    for feature in features:
        if feature.get("type") == "category":
            feature.setdefault("unknown", "reject")
    return {**raw, "features": features}


def load(path: str | Path, n_threads: int = 2, **origin: str) -> LoadedModel:
    """Check, then load a model directory written by `save` (e.g. /opt/ml/model)."""
    import skops.io as sio

    checked = check(path)
    metadata = checked.metadata
    if not metadata:
        raise ModelNotFound(f"model in {str(checked.path)!r} has no churn metadata")
    try:
        pipeline = sio.load(checked.skops_file, trusted=checked.types)
    except Exception as err:  # the types were allowed, but the content may still be broken
        raise InvalidModel(f"model in {str(checked.path)!r} failed to load: {type(err).__name__}: {err}") from err
    trained = TrainedModel(
        pipeline=pipeline,
        threshold=float(metadata["threshold"]),
        schema=Schema.from_dict(trained_schema(metadata["schema"])),
        encoding=str(metadata.get("encoding", "native")),
        best_iteration=int(metadata.get("best_iteration", 0)),
        calibration=str(metadata.get("calibration", "none")),
    )
    compiled = CompiledModel.from_trained(trained, n_threads=n_threads)
    origin.setdefault("source", str(checked.path))
    origin.setdefault("run_id", checked.run_id)
    return LoadedModel(trained=trained, compiled=compiled, metadata=metadata, **origin)
