"""The HTTP views: each reads the request, calls the core, and writes the answer. Nothing else."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from churn.errors import InvalidInput, PayloadTooLarge
from churn.invocations import ServingOptions, invocations, reasons_wanted
from churn_serve.metrics import CONTENT_TYPE as METRICS_TYPE
from churn_serve.metrics import Metrics
from churn_serve.model_holder import ModelHolder

bp = Blueprint("churn", __name__)
_CHUNK = 64 * 1024


def _state() -> tuple[ModelHolder, ServingOptions, Metrics]:
    ext: dict[str, Any] = current_app.extensions["churn"]
    return ext["holder"], ext["options"], ext["metrics"]


@bp.get("/ping")
def ping() -> Response:
    holder, _, _ = _state()
    holder.current()  # 503 until a model is loaded
    return Response(b"", 200)


@bp.post("/invocations")
@bp.post("/predict")  # the seed's route, kept for its clients
def predict() -> Response:
    holder, options, metrics = _state()
    model = holder.current()
    body = _read_body(options.max_body_bytes)
    k = reasons_wanted(_reasons_asked(), options, len(model.schema.features))
    answer = invocations(body, request.headers.get("Content-Type"), request.headers.get("Accept"), model, options, k)
    metrics.scored(answer.probability, answer.churn, answer.score_seconds)
    response = Response(answer.body, 200, content_type=answer.content_type)
    response.headers["X-Model-Version"] = model.loaded.version
    return response


@bp.get("/version")
@bp.get("/model")
def version() -> dict[str, Any]:
    holder, _, _ = _state()
    return {**holder.current().describe(), "loaded_at": holder.loaded_at}


@bp.get("/metrics")
def metrics_text() -> Response:
    _, _, metrics = _state()
    return Response(metrics.exposition(), 200, content_type=METRICS_TYPE)


@bp.get("/openapi.yaml")
def openapi() -> Response:
    text: bytes = current_app.extensions["churn"]["openapi"]
    return Response(text, 200, content_type="application/yaml")


def _read_body(limit: int) -> bytes:
    """The body, refusing more than `limit` bytes whether or not Content-Length says so."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit} byte limit", limit=limit)
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except Exception as err:  # broken chunked encoding, a client that hung up: the request is bad
            raise InvalidInput(f"the request body could not be read: {type(err).__name__}") from err
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length to check up front
            raise PayloadTooLarge(f"body is over the {limit} byte limit", limit=limit)
        chunks.append(chunk)


def _reasons_asked() -> str | None:
    """?reasons=, X-Churn-Reasons, or `reasons=` in SageMaker's custom attributes (no query there)."""
    asked = request.args.get("reasons") or request.headers.get("X-Churn-Reasons")
    if asked is not None:
        return asked
    attributes = request.headers.get("X-Amzn-SageMaker-Custom-Attributes", "")
    for item in attributes.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "reasons":
            return value
    return None
