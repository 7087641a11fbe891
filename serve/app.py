"""The Flask app factory: wires the holder, options and metrics to the views and the error table."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from churn.errors import ChurnError, mapping_for
from churn.invocations import ServingOptions
from churn_serve.metrics import Metrics
from churn_serve.model_holder import ModelHolder
from churn_serve.views import blueprint

log = logging.getLogger("churn.serve")
OPENAPI = Path(__file__).with_name("openapi.yaml")  # package data beside this module
ROUTES = frozenset({"/ping", "/live", "/invocations", "/predict", "/version", "/model", "/metrics", "/openapi.yaml"})
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_app(holder: ModelHolder, options: ServingOptions, metrics: Metrics | None = None) -> Flask:
    """The WSGI app. It does not start loading: call `holder.start()` in each worker."""
    metrics = metrics or Metrics()
    app = Flask(__name__, root_path=str(OPENAPI.parent))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["churn"] = {"holder": holder, "options": options, "metrics": metrics}
    app.register_blueprint(blueprint(holder, options, metrics, OPENAPI.read_bytes()))
    app.register_error_handler(ChurnError, _churn_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.wsgi_app = _counted(app.wsgi_app, metrics)  # type: ignore[method-assign,assignment]
    return app


def _counted(inner: WSGIApp, metrics: Metrics) -> WSGIApp:
    """Count and time every request at the WSGI edge (cheaper than Flask hooks; sees every answer)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        status: list[int] = []

        def recording_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(status_line[:3]))
            return start_response(status_line, headers, exc_info)

        try:
            return inner(environ, recording_start_response)
        finally:
            path = environ.get("PATH_INFO", "")
            metrics.request(path if path in ROUTES else "other", environ.get("REQUEST_METHOD", ""),
                            status[0] if status else 500, time.perf_counter() - started)

    return app


def _json_error(payload: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(payload, default=str), status, content_type="application/json")


def _churn_error(err: ChurnError) -> Response:
    return _json_error(err.to_dict(), mapping_for(err).http_status)


def _http_error(err: HTTPException) -> Response:
    code = (err.name or "error").lower().replace(" ", "_")
    response = _json_error({"error": code, "message": err.description or err.name}, err.code or 500)
    if isinstance(err, MethodNotAllowed) and err.valid_methods:
        response.headers["Allow"] = ", ".join(err.valid_methods)
    return response


def _unexpected(err: Exception) -> Response:
    # A bug, not the caller's fault: log the traceback here, never send it.
    log.exception("unhandled error", extra={"path": request.path})
    return _json_error({"error": "internal_error", "message": "internal error; the server logged the details"}, 500)
