"""The Flask app factory: wires the holder, options and metrics to the views and error table."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from churn.errors import ChurnError, mapping_for
from churn.invocations import ServingOptions
from churn_serve.metrics import Metrics
from churn_serve.model_holder import ModelHolder
from churn_serve.views import bp

log = logging.getLogger("churn.serve")
OPENAPI = Path(__file__).with_name("openapi.yaml")  # package data beside this module
ROUTES = frozenset({"/ping", "/invocations", "/predict", "/version", "/model", "/metrics", "/openapi.yaml"})


def create_app(holder: ModelHolder, options: ServingOptions, metrics: Metrics | None = None) -> Flask:
    """The WSGI app. It does not start loading: call `holder.start()` in each worker."""
    app = Flask(__name__, root_path=str(OPENAPI.parent))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["churn"] = {
        "holder": holder,
        "options": options,
        "metrics": metrics or Metrics(),
        "openapi": OPENAPI.read_bytes(),
    }
    app.register_blueprint(bp)
    app.register_error_handler(ChurnError, _churn_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.before_request(_start_clock)
    app.after_request(_count)
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


def _start_clock() -> None:
    g.churn_started = time.perf_counter()


def _count(response: Response) -> Response:
    started = g.get("churn_started")
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "other"
        metrics: Metrics = current_app.extensions["churn"]["metrics"]
        metrics.request(route if route in ROUTES else "other", request.method, response.status_code,
                        time.perf_counter() - started)
    return response

