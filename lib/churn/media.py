"""Media types of /invocations: which request bodies we read and which answers we write."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

from churn.errors import NotAcceptable, UnsupportedMediaType

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
_WILDCARDS: dict[str, Format] = {"*/*": "json", "application/*": "json", "text/*": "csv"}
ACCEPTED = ", ".join(t for types in TYPES.values() for t in types)


@dataclass(frozen=True)
class BodyType:
    """The request's format and text encoding."""

    format: Format
    charset: str = "utf-8"


def content_type_for(fmt: Format) -> str:
    return f"{TYPES[fmt][0]}; charset=utf-8" if fmt != "json" else TYPES[fmt][0]


def _split(header: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = header.partition(";")
    params = {}
    for item in rest.split(";"):
        key, eq, value = item.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), params


def request_body_type(header: str | None) -> BodyType:
    """The format of a request body from its Content-Type; none given means JSON."""
    if header is None or not header.strip():
        return BodyType("json")
    kind, params = _split(header)
    fmt = _BY_TYPE.get(kind)
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


def response_format(header: str | None) -> Format:
    """The best format the Accept header allows (highest q, then first listed); JSON if none."""
    if header is None or not header.strip():
        return "json"
    best: tuple[float, int, Format] | None = None
    for position, item in enumerate(header.split(",")):
        kind, params = _split(item)
        fmt = _BY_TYPE.get(kind) or _WILDCARDS.get(kind)
        if fmt is None:
            continue
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            continue
        if not 0 < quality <= 1:  # q=0 means "not this one"; NaN fails the comparison too
            continue
        if best is None or quality > best[0]:
            best = (quality, position, fmt)
    if best is None:
        raise NotAcceptable(
            f"cannot answer in any type of Accept {header[:100]!r}; choose one of: {ACCEPTED}", supported=ACCEPTED
        )
    return best[2]
