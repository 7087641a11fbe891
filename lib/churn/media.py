"""Media types of /invocations: which request bodies we read and which answers we write.

Headers are parsed by werkzeug (installed with Flask, no web framework needed here).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

from churn.errors import InvalidInput, NotAcceptable, UnsupportedMediaType

Format = Literal["json", "csv", "jsonlines"]

# The first type of each format is what we write in Content-Type.
TYPES: dict[Format, tuple[str, ...]] = {
    "json": ("application/json",),
    "csv": ("text/csv",),
    "jsonlines": (
        "application/jsonlines",
        "application/x-jsonlines",
        "application/jsonl",
        "application/x-ndjson",
        "application/json-lines",
    ),
}
_BY_TYPE: dict[str, Format] = {t: fmt for fmt, types in TYPES.items() for t in types}
_OURS = list(_BY_TYPE)  # in order of preference: */* and application/* get JSON, text/* CSV
ACCEPTED = ", ".join(t for types in TYPES.values() for t in types)


@dataclass(frozen=True)
class BodyType:
    """The request's format and text encoding."""

    format: Format
    charset: str = "utf-8"


def content_type_for(fmt: Format) -> str:
    return f"{TYPES[fmt][0]}; charset=utf-8" if fmt != "json" else TYPES[fmt][0]


def request_body_type(header: str | None) -> BodyType:
    """The format of a request body from its Content-Type; none given means JSON."""
    if header is None or not header.strip():
        return BodyType("json")
    kind, params = parse_options_header(header)
    fmt = _BY_TYPE.get(kind.lower())
    if fmt is None:
        raise UnsupportedMediaType(
            f"Content-Type {header[:100]!r} is not supported; send one of: {ACCEPTED}", supported=ACCEPTED
        )
    charset = params.get("charset", "utf-8").lower()
    try:
        codecs.lookup(charset)
    except LookupError as err:
        raise UnsupportedMediaType(f"charset {charset[:40]!r} is not a known text encoding") from err
    return BodyType(fmt, charset)


def decode(body: bytes, charset: str) -> str:
    """The body as text in its charset (a UTF-8 byte-order mark dropped)."""
    try:
        return body.decode("utf-8-sig" if charset in ("utf-8", "utf8") else charset)
    except (UnicodeDecodeError, LookupError) as err:
        raise InvalidInput(f"body is not valid {charset} text") from err


def check_encoding(header: str | None) -> None:
    """Bodies are read as sent: a compressed body is refused by name, not misread as bad JSON."""
    text = (header or "")[:60]
    if any(c.strip().lower() not in ("", "identity") for c in text.split(",")):
        raise UnsupportedMediaType(f"Content-Encoding {text!r} is not supported; send the body uncompressed",
                                   encoding=text)


def response_format(header: str | None) -> Format:
    """The best format the Accept header allows (highest q, then the most specific, then ours); JSON if none.

    Parameters other than q (`application/json; charset=utf-8`) do not stop a type matching.
    """
    if header is None or not header.strip():
        return "json"
    asked = MIMEAccept([(parse_options_header(kind)[0], q) for kind, q in parse_accept_header(header)])
    best = asked.best_match(_OURS)
    if best is None:
        raise NotAcceptable(
            f"cannot answer in any type of Accept {header[:100]!r}; choose one of: {ACCEPTED}", supported=ACCEPTED
        )
    return _BY_TYPE[best]
