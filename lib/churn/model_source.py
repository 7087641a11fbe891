"""Which model to use, and the one order every command finds it in.

`locate` is the rule (score, serve and predict share it): `CHURN_MODEL_URI` / `--model-uri`
if given; else `$SAGEMAKER_BASE_DIR/model` when it holds a model (SageMaker mounts one
there); else `models:/NAME@production` in the MLflow registry. The sources that load from
each place live in churn.adapters.model_sources; churn_jobs.clients builds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from churn.errors import ConfigError
from churn.settings import Settings

if TYPE_CHECKING:
    from churn.compiled import CompiledModel
    from churn.model import TrainedModel

PRODUCTION = "production"
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+:/")  # runs:/..., s3://...: not a directory


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


class ModelSource(Protocol):
    """Somewhere a model is loaded from: a directory, or an alias in a registry."""

    @property
    def description(self) -> str:
        """Where, for logs and errors (credentials redacted)."""
        ...

    @property
    def pollable(self) -> bool:
        """True when the model there can change while we run (a registry alias)."""
        ...

    def latest(self) -> str | None:
        """A cheap key of the model that should be used now; None when there is none yet."""
        ...

    def load(self) -> LoadedModel:
        """Load the model that should be used now; ModelNotFound (saying what to run) if there is none."""
        ...

    def release(self, model: LoadedModel) -> None:
        """Forget a model that is no longer used."""
        ...


@dataclass(frozen=True)
class ModelLocation:
    """The outcome of `locate`: a model directory, or a registered model name and alias."""

    name: str
    path: Path | None = None
    alias: str = PRODUCTION

    @property
    def uri(self) -> str:
        return str(self.path) if self.path is not None else f"models:/{self.name}@{self.alias}"


def locate(settings: Settings) -> ModelLocation:
    """The model every command uses (see the module docstring); ConfigError for a URI of another kind."""
    uri = settings.model_uri
    if not uri:
        mounted = settings.opt_ml / "model"
        if (mounted / "MLmodel").is_file():
            return ModelLocation(settings.model_name, path=mounted)
        return ModelLocation(settings.model_name, alias=PRODUCTION)
    if uri.startswith("models:/"):
        name, at, alias = uri[len("models:/"):].partition("@")
        if not at or not name or not alias or "/" in name:
            raise ConfigError(f"model URI {uri!r} must look like models:/NAME@ALIAS (e.g. models:/churn@production)")
        return ModelLocation(name, alias=alias)
    if _SCHEME.match(uri) and not uri.startswith("file://"):
        raise ConfigError(f"model URI {uri!r} must be models:/NAME@ALIAS or a model directory")
    return ModelLocation(settings.model_name, path=Path(uri.removeprefix("file://")))
