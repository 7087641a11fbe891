"""Where one HTTP/1.1 request ends, found incrementally, so a worker can buffer whole requests.

The worker's event loop feeds this the bytes of a connection as they arrive and hands the
request to a thread only when it is complete (what nginx does in front of SageMaker's own
containers): a client that sends half a request holds a few bytes of memory, not a thread.
Only the framing is read here (the head's end, Content-Length or chunked encoding); gunicorn's
parser still parses the head, and the app reads the body from memory (gunicorn's own body
reader copies it 1 KB at a time). Requests too large to buffer are refused
with the status a client can act on, and their body is discarded rather than left unread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_HEAD_END = b"\r\n\r\n"
_CHUNK_LINE_LIMIT = 4096  # a chunk-size line with extensions; gunicorn's own limit is smaller
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    """How much one request may take: its request line, its head and its body (bytes)."""

    request_line: int = 4094 + 2  # gunicorn's limit_request_line, plus the CRLF
    head: int = 64 * 1024
    body: int = 6 * 1024 * 1024
    discard: int = 64 * 1024 * 1024  # a refused body read and dropped so the client reads the answer


@dataclass(frozen=True)
class Refusal:
    """A request refused before it reached the app: the JSON answer and how much body to discard."""

    status: int
    error: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    discard: int = 0  # body bytes still to read and drop after answering (the rest of a refused body)
    discard_chunked: bool = False  # drop up to the limit, the end of the chunked body being unknown

    def payload(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.details}


@dataclass(frozen=True)
class Request:
    """One complete request: its head for gunicorn's parser, and its body (de-chunked)."""

    head: bytes
    body: bytes


class RequestReader:
    """The bytes of one connection; `feed` returns each request once all of it has arrived."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.buffer = bytearray()
        self.expects_continue = False  # the client waits for 100 Continue before sending the body
        self._reset()

    def _reset(self) -> None:
        self._head_end = -1  # index just past the head's blank line, once found
        self._body_end = -1  # for Content-Length bodies
        self._chunked = False
        self._chunk_pos = 0  # the next chunk-size line
        self._body_bytes = 0  # chunk data read so far
        self._chunks: list[tuple[int, int]] = []  # where each chunk's data lies in the buffer
        self._searched = 0  # where to resume looking for the head's end
        self.expects_continue = False

    @property
    def started(self) -> bool:
        """A request has begun arriving (an idle keep-alive connection has none)."""
        return bool(self.buffer)

    def feed(self, data: bytes) -> Request | Refusal | None:
        """Add bytes; a complete request, a refusal, or None while more is needed."""
        self.buffer += data
        return self.next()

    def next(self) -> Request | Refusal | None:
        """The next complete request already buffered (pipelined), a refusal, or None."""
        if self._head_end < 0:
            refusal = self._read_head()
            if refusal is not None or self._head_end < 0:
                return refusal
        if self._chunked:
            end = self._read_chunks()
            if not isinstance(end, int):
                return end
        else:
            end = self._body_end
            if len(self.buffer) < end:
                return None
        buffer, head_end = self.buffer, self._head_end
        head = bytes(buffer[:head_end])
        if self._chunked:
            body = b"".join(buffer[start:stop] for start, stop in self._chunks)
        else:
            body = bytes(buffer[head_end:end])
        del buffer[:end]
        self._reset()
        return Request(head, body)

    def _read_head(self) -> Refusal | None:
        limits = self.limits
        end = self.buffer.find(_HEAD_END, max(0, self._searched - 3), limits.head + 4)
        if end < 0:
            self._searched = len(self.buffer)
            if len(self.buffer) > limits.request_line and self.buffer.find(b"\r\n", 0, limits.request_line) < 0:
                return _line_too_long(limits)
            if len(self.buffer) > limits.head:
                return Refusal(431, "request_header_fields_too_large",
                               f"the request headers are over the {limits.head} byte limit")
            return None
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        if len(lines[0]) > limits.request_line - 2:
            return _line_too_long(limits)
        lengths: list[bytes] = []
        codings: list[bytes] = []
        expect_at = -1
        for i, line in enumerate(lines[1:], start=1):
            name, colon, value = line.partition(b":")
            if not colon:
                continue  # gunicorn refuses the malformed line with a 400
            name = name.strip().lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",")]
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                expect_at = i
        declared = 0
        if codings and lengths:
            return Refusal(400, "bad_request", "give Content-Length or Transfer-Encoding, not both")
        if codings and codings[-1] != b"chunked":  # RFC 9112 6.3: the body's length cannot be known
            return Refusal(400, "bad_request", "Transfer-Encoding must end with chunked")
        if len(codings) > 1:  # RFC 9112 6.1: a transfer coding we do not decode is 501
            named = b", ".join(codings).decode("latin-1")[:60]
            return Refusal(501, "not_implemented",
                           f"Transfer-Encoding {named!r} is not supported; send it chunked only", {"encoding": named})
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
                return Refusal(400, "bad_request", "Content-Length must be one whole number")
            declared = int(lengths[0])
            if declared > limits.body:
                arrived = len(self.buffer) - (end + 4)
                return Refusal(413, "payload_too_large",
                               f"body of {declared} bytes is over the {limits.body} byte limit",
                               {"limit": limits.body},
                               # a client waiting for 100 Continue sends no body: nothing to discard
                               discard=0 if expect_at > 0 else declared - arrived)
        head_end = end + 4
        if expect_at > 0:  # we answer 100 Continue ourselves, so gunicorn must not send a second one
            del lines[expect_at]
            head = b"\r\n".join(lines) + _HEAD_END
            self.buffer[:head_end] = head
            head_end = len(head)
        self._head_end = head_end
        self._chunked = bool(codings)
        self._chunk_pos = head_end
        self._body_end = head_end + declared
        self.expects_continue = expect_at > 0 and (self._chunked or declared > 0) and len(self.buffer) == head_end
        return None

    def _read_chunks(self) -> int | Refusal | None:
        """The end of a chunked body (after its trailers), a refusal, or None if more must arrive."""
        buffer, limits = self.buffer, self.limits
        while True:
            pos = self._chunk_pos
            line_end = buffer.find(b"\r\n", pos, pos + _CHUNK_LINE_LIMIT)
            if line_end < 0:
                if len(buffer) - pos > _CHUNK_LINE_LIMIT:
                    return Refusal(400, "bad_request", "a chunk-size line is too long")
                return None
            size_text = bytes(buffer[pos:line_end]).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                return Refusal(400, "bad_request", "the chunked body has an invalid chunk size")
            size = int(size_text, 16)
            if size == 0:
                return self._read_trailers(line_end + 2)
            if self._body_bytes + size > limits.body:
                return _chunked_too_large(limits, f"body is over the {limits.body} byte limit")
            data_end = line_end + 2 + size
            if len(buffer) < data_end + 2:
                return None
            if buffer[data_end:data_end + 2] != b"\r\n":
                return Refusal(400, "bad_request", "a chunk of the body does not end where its size says")
            self._body_bytes += size
            self._chunks.append((line_end + 2, data_end))
            self._chunk_pos = data_end + 2
            if self._chunk_pos - self._head_end > 2 * limits.body:  # tiny chunks: framing far larger than data
                return _chunked_too_large(limits, "the chunked body's framing is over the size limit")

    def _read_trailers(self, pos: int) -> int | Refusal | None:
        """After the last chunk: optional trailer fields, then an empty line."""
        if len(self.buffer) < pos + 2:
            return None
        if self.buffer[pos:pos + 2] == b"\r\n":
            return pos + 2
        end = self.buffer.find(_HEAD_END, pos, pos + self.limits.head)
        if end >= 0:
            return end + 4
        if len(self.buffer) - pos > self.limits.head:
            return Refusal(431, "request_header_fields_too_large", "the trailers are over the size limit")
        return None


def _line_too_long(limits: Limits) -> Refusal:
    return Refusal(414, "uri_too_long", f"the request line is over the {limits.request_line - 2} byte limit")


def _chunked_too_large(limits: Limits, message: str) -> Refusal:
    return Refusal(413, "payload_too_large", message, {"limit": limits.body},
                   discard=limits.discard, discard_chunked=True)
