"""Where the served model comes from: the one order of churn.model_source, one row per request."""

from __future__ import annotations

from churn.model_source import ModelSource
from churn.settings import Settings

SERVING_THREADS = 1  # one row per request: LightGBM threads only add overhead; workers cover the cores

__all__ = ["ModelSource", "source_for"]


def source_for(settings: Settings) -> ModelSource:
    """CHURN_MODEL_URI if set; else SAGEMAKER_BASE_DIR/model when it holds a model; else the registry."""
    from churn_jobs import clients

    return clients.model_source(settings, SERVING_THREADS)
