"""Build the clients the adapters take, from settings. Nothing connects at import."""

from __future__ import annotations

import os
from typing import Any

from churn.settings import Settings


def mlflow_client(settings: Settings) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in job logs
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


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
