"""Build the clients the adapters take, from settings. Nothing connects at import."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from churn.settings import Settings

if TYPE_CHECKING:
    from churn.adapters.mlflow_client import GuardedClient
    from churn.model_source import ModelSource


def mlflow_client(settings: Settings) -> GuardedClient:
    """The one MLflow client: bounded retries and timeouts, an unreachable server as one clear error."""
    from churn.adapters.mlflow_client import BOUNDS, GuardedClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in job logs
    for name, value in BOUNDS.items():  # MLflow reads these at each request; an operator's own values win
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient

    return GuardedClient(MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri))


def model_source(settings: Settings, n_threads: int) -> ModelSource:
    """The model score, serve and predict use, found in the one order of churn.model_source.locate."""
    from churn.model_source import locate

    location = locate(settings)
    if location.path is not None:
        from churn.adapters.model_sources import DirectorySource

        return DirectorySource(location.path, location.name, n_threads)
    from churn.adapters.model_sources import RegistrySource
    from churn.adapters.registry import ModelRegistry

    return RegistrySource(ModelRegistry(mlflow_client(settings), location.name), location.alias, n_threads)


def mongo_database(settings: Settings, timeout_ms: int = 10_000) -> Any:
    from pymongo import MongoClient

    assert settings.mongodb_uri, "mongo_database needs MONGODB_URI"
    client: Any = MongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        retryWrites=True,
        appname="churn",
    )
    return client[settings.mongodb_database]
