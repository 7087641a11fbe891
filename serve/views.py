"""The HTTP views: each reads the request, calls the core, and writes the answer. Nothing else.

The views close over their holder, options and metrics instead of looking them up on
`current_app` per request: each context-local lookup costs microseconds on the hot path.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, Response, request

from churn import media
from churn.errors import InvalidInput, PayloadTooLarge
from churn.invocations import ServingOptions, invocations, reasons_wanted
from churn_serve.metrics import CONTENT_TYPE as METRICS_TYPE
from churn_serve.metrics import Metrics
from churn_serve.model_holder import ModelHolder


def blueprint(holder: ModelHolder, options: ServingOptions, metrics: Metrics, openapi: bytes) -> Blueprint:
    """The routes of the SageMaker contract plus /predict, /version, /metrics and /openapi.yaml."""
    bp = Blueprint("churn", __name__)

    @bp.get("/ping")
    def ping() -> Response:
        """Readiness: 503 until a model is loaded; no I/O here."""
        holder.current()
        return Response(b"", 200)

    @bp.get("/live")
    def live() -> dict[str, Any]:
        """Liveness: the process answers, model or not (nothing promoted yet is no reason to restart)."""
        return {"live": True, "model_loaded": holder.ready}

    @bp.post("/invocations")
    @bp.post("/predict")  # the seed's route, kept for its clients
    def predict() -> Response:
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        model = holder.current()
        media.check_encoding(req.headers.get("Content-Encoding"))
        body = _read_body(req, options.max_body_bytes)
        k = reasons_wanted(_reasons_asked(req), options, len(model.schema.features))
        answer = invocations(body, req.headers.get("Content-Type"), req.headers.get("Accept"), model, options, k)
        metrics.scored(answer.probability, answer.churn, answer.score_seconds)
        response = Response(answer.body, 200, content_type=answer.content_type)
        response.headers["X-Model-Version"] = model.loaded.version
        return response

    @bp.get("/version")
    @bp.get("/model")
    def version() -> dict[str, Any]:
        return {**holder.current().describe(), "loaded_at": holder.loaded_at}

    @bp.get("/metrics")
    def metrics_text() -> Response:
        return Response(metrics.exposition(), 200, content_type=METRICS_TYPE)

    @bp.get("/openapi.yaml")
    def openapi_yaml() -> Response:
        return Response(openapi, 200, content_type="application/yaml")

    return bp


def _read_body(req: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes whether or not Content-Length says so."""
    declared = req.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit} byte limit", limit=limit)
    stream = req.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            # One read takes all of a buffered body; a stream may give less per read.
            chunk = stream.read(limit + 1 - size)
        except Exception as err:  # broken chunked encoding, a client that hung up: the request is bad
            raise InvalidInput(f"the request body could not be read: {type(err).__name__}") from err
        if not chunk:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length to check up front
            raise PayloadTooLarge(f"body is over the {limit} byte limit", limit=limit)
        chunks.append(chunk)


def _reasons_asked(req: Request) -> str | None:
    """?reasons=, X-Churn-Reasons, or `reasons=` in SageMaker's custom attributes (no query there)."""
    asked = req.args.get("reasons") or req.headers.get("X-Churn-Reasons")
    if asked is not None:
        return asked
    attributes = req.headers.get("X-Amzn-SageMaker-Custom-Attributes", "")
    for item in attributes.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "reasons":
            return value
    return None
