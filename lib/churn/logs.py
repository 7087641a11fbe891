"""Structured logging: one JSON object per line in containers, readable lines in a terminal.

Every record passes `Redact` on its way out, whichever library logged it: a URL with a
password in a message, an argument or an extra field leaves as user:***@host.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from churn.settings import redact

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Every line stays readable by log shippers (which cut or drop lines of hundreds of KB): an
# error quoting a rejected 15 MB document must not become a 31 MB "one-line" log entry.
MAX_MESSAGE = 4_000
MAX_FIELD = 2_000


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more characters]"


def _field(value: object) -> object:
    """An extra field as logged: small values as they are, big ones cut to MAX_FIELD characters."""
    if isinstance(value, str):
        return _cap(value, MAX_FIELD)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = json.dumps(value, default=str)
    return value if len(text) <= MAX_FIELD else _cap(text, MAX_FIELD)


class Redact(logging.Filter):
    """The safety net for credentials: rewrites the message and every extra field through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _clean(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _cap(record.getMessage(), MAX_MESSAGE),
        }
        payload.update({k: _field(v) for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            payload["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={_field(v)}" for k, v in vars(record).items() if k not in _STANDARD)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {_cap(record.getMessage(), MAX_MESSAGE)}"
        line = f"{line}  {extra}" if extra else line
        if record.exc_info:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    """Send logs to stdout (containers collect stdout), JSON unless a terminal asks for text."""
    fmt = fmt.lower()
    if fmt == "auto":
        fmt = "text" if sys.stdout.isatty() else "json"
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library warnings pass the same filter instead of going raw to stderr. Off first: a
    # warnings.catch_warnings block that ended since an earlier call restored the original
    # hook while logging still believes its own is installed, so a bare True is a no-op.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    for noisy in ("urllib3", "botocore", "pymongo", "alembic", "mlflow", "git", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A retry is not news: the one-line error after the last attempt is.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
