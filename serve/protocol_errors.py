"""Errors answered below the app (gunicorn's parser, the worker's buffering front), as JSON like the app's.

gunicorn writes an HTML page for a bad request line or oversized headers; every answer of this
server is JSON with `error` and `message`, and is counted in churn_http_requests_total (route
`other`), so an operator sees a flood of them.
"""

from __future__ import annotations

import json
import logging
import socket
from http import HTTPStatus
from typing import Any

from gunicorn.http import errors as http_errors

log = logging.getLogger("churn.serve")

# gunicorn's parse errors -> (status, error code); every other ParseException is a 400.
_PROTOCOL_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (http_errors.LimitRequestLine, 414, "uri_too_long"),
    (http_errors.LimitRequestHeaders, 431, "request_header_fields_too_large"),
    (http_errors.UnsupportedTransferCoding, 501, "not_implemented"),
    (http_errors.ExpectationFailed, 417, "expectation_failed"),
    (http_errors.ForbiddenProxyRequest, 403, "forbidden"),
    (http_errors.ConfigurationProblem, 500, "internal_error"),
    (http_errors.ParseException, 400, "bad_request"),
    (http_errors.InvalidChunkSize, 400, "bad_request"),
    (http_errors.ChunkMissingTerminator, 400, "bad_request"),
    (http_errors.InvalidChunkExtension, 400, "bad_request"),
)


def json_answer(status: int, payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 answer with a JSON body that closes the connection."""
    body = json.dumps(payload, default=str).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def protocol_error(exc: BaseException) -> tuple[int, str, str]:
    """Status, error code and message for an error raised while gunicorn parsed a request."""
    for cls, status, code in _PROTOCOL_ERRORS:
        if isinstance(exc, cls):
            message = "the server could not process the request" if status >= 500 else str(exc)[:300]
            return status, code, message or code.replace("_", " ")
    return 500, "internal_error", "internal error; the server logged the details"


class JsonErrors:
    """gunicorn's protocol errors answered as JSON, and counted in the request metrics."""

    wsgi: Any

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """gunicorn writes an HTML page; every answer of this server is JSON."""
        status, code, message = protocol_error(exc)
        if status >= 500:
            log.error("error handling request", exc_info=exc)
        else:
            log.info("invalid request", extra={"status": status, "reason": str(exc)[:300]})
        self._count(status)
        try:
            client.setblocking(False)
            client.send(json_answer(status, {"error": code, "message": message}))
        except OSError:
            log.debug("could not send the error answer")

    def _count(self, status: int) -> None:
        """Requests answered outside the app still count in churn_http_requests_total (route `other`)."""
        metrics = getattr(self.wsgi, "extensions", {}).get("churn", {}).get("metrics")
        if metrics is not None:
            metrics.request("other", "", status, 0.0)
