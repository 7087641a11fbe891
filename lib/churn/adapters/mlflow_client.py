"""An MlflowClient whose unreachable server is one clear error, not minutes of retries and a traceback.

The bounds themselves are MLflow's own settings (`BOUNDS`, applied by churn_jobs.clients
before the first request); this wrapper turns what MLflow raises once they are spent into
UnavailableService naming MLFLOW_TRACKING_URI, credentials redacted. Errors the server
answered (a missing model, a bad request) pass through unchanged.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from churn.errors import UnavailableService
from churn.settings import redact

# MLflow's defaults retry 7 times with backoff x2 and wait 120 s a request: ~4 minutes on a
# dead server. These give up in ~3 s on a refused connection, ~35 s on a silent server.
BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


class GuardedClient:
    """Delegates to an MlflowClient; every call's transport failure becomes UnavailableService."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def tracking_uri(self) -> str:
        return str(self.client.tracking_uri)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with reaching(self.tracking_uri):
                return attr(*args, **kwargs)

        return call


@contextmanager
def reaching(tracking_uri: str) -> Iterator[None]:
    """Run MLflow calls; a server that cannot be reached raises UnavailableService naming it."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except requests.RequestException as err:
        raise unreachable(tracking_uri, err) from err
    except MlflowException as err:
        cause = err.__cause__ or err.__context__
        if not isinstance(cause, requests.RequestException):
            raise
        raise unreachable(tracking_uri, cause) from err


def unreachable(tracking_uri: str, cause: BaseException) -> UnavailableService:
    import requests

    text = str(cause)
    if isinstance(cause, requests.exceptions.RetryError):
        why = "it kept answering with server errors"
    elif "timed out" in text.lower() or "timeout" in type(cause).__name__.lower():
        why = "no answer in time"
    elif "Connection refused" in text:
        why = "connection refused"
    elif "resolution" in text or "not known" in text:
        why = "host name not found"
    else:
        why = type(cause).__name__
    return UnavailableService(
        f"MLflow tracking server unreachable: {why} (MLFLOW_TRACKING_URI={redact(tracking_uri)}, "
        f"after {os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES', '?')} retries)"
    )
