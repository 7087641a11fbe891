"""The places a model is loaded from: a model directory, or an alias in the MLflow registry.

Both load through model_format (skops only, the project's allow-list) and the registry
also checks the sha256 recorded at registration. Built by churn_jobs.clients.model_source
for score, serve and predict alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from churn.model_source import LoadedModel

if TYPE_CHECKING:  # serve builds a source in its master, which must not import pyarrow: see gunicorn_conf
    from churn.adapters.registry import ModelRegistry


@dataclass
class DirectorySource:
    """A model directory such as /opt/ml/model: loaded once, never changes."""

    path: Path
    name: str = "churn"
    n_threads: int = 2
    pollable: bool = False

    @property
    def description(self) -> str:
        return str(self.path)

    def latest(self) -> str | None:
        return "directory" if (self.path / "MLmodel").is_file() else None

    def load(self) -> LoadedModel:
        from churn.adapters import model_format

        loaded = model_format.load(self.path, n_threads=self.n_threads, name=self.name)  # ModelNotFound if empty
        loaded.version = str(loaded.metadata.get("model_version") or loaded.version)
        return loaded

    def release(self, model: LoadedModel) -> None:
        """Nothing to do: a directory we did not create is never deleted."""


class RegistrySource:
    """`models:/NAME@ALIAS` in an MLflow registry: the alias can move, so it is pollable."""

    pollable = True

    def __init__(self, registry: ModelRegistry, alias: str, n_threads: int = 2) -> None:
        self.registry = registry
        self.alias = alias
        self.n_threads = n_threads
        self.description = f"models:/{registry.name}@{alias} at {registry.where}"

    def latest(self) -> str | None:
        info = self.registry.version_for(self.alias)
        return None if info is None else info.version

    def load(self) -> LoadedModel:
        return self.registry.load(self.alias, n_threads=self.n_threads)

    def release(self, model: LoadedModel) -> None:
        """Nothing to do: the registry's files are deleted as soon as a version is loaded."""
