"""Where the served model comes from: a model directory (SageMaker) or a registry alias."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from churn.errors import ConfigError
from churn.settings import Settings

if TYPE_CHECKING:  # the master process must not import pyarrow or mlflow: see gunicorn_conf
    from churn.adapters.model_format import LoadedModel

SERVING_THREADS = 1  # one row per request: LightGBM threads only add overhead; workers cover the cores


class ModelSource(Protocol):
    @property
    def description(self) -> str: ...

    @property
    def pollable(self) -> bool: ...

    def latest(self) -> str | None:
        """A cheap key of the model that should be served now; None when there is none yet."""
        ...

    def load(self) -> LoadedModel:
        """Load the model that should be served now (its version may be newer than `latest`)."""
        ...

    def release(self, model: LoadedModel) -> None:
        """Forget a model that is no longer served (delete its downloaded files)."""
        ...


@dataclass
class DirectorySource:
    """A model directory such as /opt/ml/model: loaded once, never changes."""

    path: Path
    name: str = "churn"
    pollable: bool = False

    @property
    def description(self) -> str:
        return str(self.path)

    def latest(self) -> str | None:
        return "directory" if (self.path / "MLmodel").is_file() else None

    def load(self) -> LoadedModel:
        from mlflow.models import Model

        from churn.adapters import model_format

        run_id = Model.load(str(self.path)).run_id or ""
        loaded = model_format.load(self.path, n_threads=SERVING_THREADS, name=self.name, run_id=run_id)
        loaded.version = str(loaded.metadata.get("model_version") or loaded.version)
        return loaded

    def release(self, model: LoadedModel) -> None:
        """A directory we did not create is never deleted."""


class RegistrySource:
    """`models:/NAME@ALIAS` in an MLflow registry; each version is downloaded to a temp dir."""

    pollable = True

    def __init__(self, tracking_uri: str, name: str, alias: str) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        from churn.adapters.registry import ModelRegistry

        self.registry = ModelRegistry(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), name)
        self.alias = alias
        self.description = f"models:/{name}@{alias} at {tracking_uri}"
        self._dirs: dict[int, str] = {}

    def latest(self) -> str | None:
        info = self.registry.version_for(self.alias)
        return None if info is None else info.version

    def load(self) -> LoadedModel:
        target = tempfile.mkdtemp(prefix="churn-serve-model-")
        try:
            loaded = self.registry.load(self.alias, n_threads=SERVING_THREADS, dest=Path(target))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        self._dirs[id(loaded)] = target
        return loaded

    def release(self, model: LoadedModel) -> None:
        target = self._dirs.pop(id(model), None)
        if target:
            shutil.rmtree(target, ignore_errors=True)


def source_for(settings: Settings) -> ModelSource:
    """CHURN_MODEL_URI if set; else SAGEMAKER_BASE_DIR/model when it holds a model; else the registry."""
    uri = settings.model_uri
    if uri is None:
        opt_ml_model = settings.opt_ml / "model"
        if (opt_ml_model / "MLmodel").is_file():
            return DirectorySource(opt_ml_model, settings.model_name)
        uri = settings.registry_model_uri
    if uri.startswith("models:/"):
        name, at, alias = uri[len("models:/"):].partition("@")
        if not at or not name or not alias or "/" in name:
            raise ConfigError(f"CHURN_MODEL_URI={uri!r} must look like models:/NAME@ALIAS")
        return RegistrySource(settings.tracking_uri, name, alias)
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"CHURN_MODEL_URI={uri!r} must be models:/NAME@ALIAS or a model directory")
    return DirectorySource(path, settings.model_name)
