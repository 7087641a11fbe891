"""One error hierarchy for the whole system, with its HTTP status and exit code in one table.

Entrypoints catch `ChurnError` at their boundary: the server maps it to a JSON 4xx/5xx,
jobs map it to a one-line log and an exit code (3 = do not retry, 1 = worth retrying).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXIT_RETRYABLE = 1
EXIT_BAD_INPUT = 3


class ChurnError(Exception):
    """Base of every error this project raises on purpose."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class ConfigError(ChurnError):
    """A setting, params file or hyperparameter has a bad value."""

    code = "bad_config"


class InvalidInput(ChurnError):
    """The request or data could not be understood at all (malformed body, wrong shape)."""

    code = "invalid_input"


class InvalidRecord(InvalidInput):
    """A record broke the schema; details name the row and the field."""

    code = "invalid_record"


class TooManyRows(InvalidInput):
    code = "too_many_rows"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class NotAcceptable(InvalidInput):
    code = "not_acceptable"


class ModelNotReady(ChurnError):
    """No model is loaded yet, or none is registered under the requested alias."""

    code = "model_not_ready"


class ModelNotFound(ChurnError):
    """The model URI names nothing (no `production` alias, empty directory)."""

    code = "model_not_found"


class InvalidModel(ChurnError):
    """A model loaded but failed its checks (e.g. a probe record scored wrongly): do not serve it."""

    code = "invalid_model"


class UntrustedModel(InvalidModel):
    """A model whose files could run code or differ from what was registered: never loaded."""

    code = "untrusted_model"


class TooManyRejects(ChurnError):
    """A batch rejected more rows than params allow: publishing it would mislead."""

    code = "too_many_rejects"


class Interrupted(ChurnError):
    """The process was told to stop (SIGTERM) before it finished: worth running again."""

    code = "interrupted"


class UnavailableService(ChurnError):
    """MongoDB, S3, MLflow or the Pushgateway could not be reached after retries."""

    code = "service_unavailable"


@dataclass(frozen=True)
class Mapping:
    http_status: int
    exit_code: int


# Most specific class first: the first isinstance match wins.
ERROR_TABLE: tuple[tuple[type[ChurnError], Mapping], ...] = (
    (PayloadTooLarge, Mapping(413, EXIT_BAD_INPUT)),
    (UnsupportedMediaType, Mapping(415, EXIT_BAD_INPUT)),
    (NotAcceptable, Mapping(406, EXIT_BAD_INPUT)),
    (TooManyRows, Mapping(413, EXIT_BAD_INPUT)),
    (InvalidInput, Mapping(400, EXIT_BAD_INPUT)),
    (ConfigError, Mapping(500, EXIT_BAD_INPUT)),
    (ModelNotReady, Mapping(503, EXIT_BAD_INPUT)),
    (ModelNotFound, Mapping(503, EXIT_BAD_INPUT)),
    (UntrustedModel, Mapping(503, EXIT_BAD_INPUT)),
    (TooManyRejects, Mapping(422, EXIT_BAD_INPUT)),
    (UnavailableService, Mapping(503, EXIT_RETRYABLE)),
    (Interrupted, Mapping(503, EXIT_RETRYABLE)),
    (ChurnError, Mapping(500, EXIT_RETRYABLE)),
)


def mapping_for(error: BaseException) -> Mapping:
    """The HTTP status and exit code for an error; unknown errors are 500 / retryable."""
    for cls, mapping in ERROR_TABLE:
        if isinstance(error, cls):
            return mapping
    return Mapping(500, EXIT_RETRYABLE)
