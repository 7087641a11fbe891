"""Request framing for the worker's buffering front: whole requests out, however the bytes arrive."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churn_serve.request_reader import Limits, Refusal, Request, RequestReader

LIMITS = Limits(request_line=200, head=1000, body=1000, discard=5000)


def feed_all(reader: RequestReader, pieces: list[bytes]) -> list[Request | Refusal]:
    """Every outcome, in order, of feeding `pieces` one after another (pipelined requests included)."""
    out: list[Request | Refusal] = []
    for piece in pieces:
        outcome = reader.feed(piece)
        while outcome is not None:
            out.append(outcome)
            if isinstance(outcome, Refusal):
                return out
            outcome = reader.next()
    return out


def chunked(data: bytes, sizes: list[int], trailers: bytes = b"") -> bytes:
    body, start = b"", 0
    for size in sizes:
        piece = data[start:start + size]
        if piece:
            body += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        start += size
    if start < len(data):
        body += f"{len(data) - start:X}\r\n".encode() + data[start:] + b"\r\n"
    return body + b"0\r\n" + trailers + b"\r\n"


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, Request]:
    """Raw bytes of a request and what the reader must make of them."""
    kind = draw(st.sampled_from(["get", "length", "chunked"]))
    path = "/" + draw(st.text("abc?=&", max_size=20))
    if kind == "get":
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        return head, Request(head, b"")
    data = draw(st.binary(max_size=300))
    if kind == "length":
        head = f"POST {path} HTTP/1.1\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        return head + data, Request(head, data)
    sizes = draw(st.lists(st.integers(1, 80), max_size=6))
    trailers = draw(st.sampled_from([b"", b"X-Check: 1\r\n"]))
    head = f"POST {path} HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    return head + chunked(data, sizes, trailers), Request(head, data)


@settings(max_examples=300, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=3), st.data())
def test_pipelined_requests_come_out_whole_however_the_bytes_are_split(
    sent: list[tuple[bytes, Request]], data: st.DataObject
) -> None:
    stream = b"".join(raw for raw, _ in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    reader = RequestReader(LIMITS)
    assert feed_all(reader, pieces) == [request for _, request in sent]
    assert not reader.started


def test_nothing_comes_out_until_the_last_byte_arrives() -> None:
    head = b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    request = head + chunked(b"x" * 50, [7, 9])
    reader = RequestReader(LIMITS)
    for byte in request[:-1]:
        assert reader.feed(bytes([byte])) is None
    assert reader.started
    assert reader.feed(request[-1:]) == Request(head, b"x" * 50)


def test_a_declared_body_over_the_limit_is_refused_and_the_rest_of_it_discarded() -> None:
    head = b"POST /invocations HTTP/1.1\r\nContent-Length: 3000\r\n\r\n"
    refusal = RequestReader(LIMITS).feed(head + b"x" * 100)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.error, refusal.details) == (413, "payload_too_large", {"limit": 1000})
    assert refusal.discard == 2900


def test_a_client_waiting_for_100_continue_is_refused_without_discarding() -> None:
    head = b"POST /invocations HTTP/1.1\r\nContent-Length: 3000\r\nExpect: 100-continue\r\n\r\n"
    refusal = RequestReader(LIMITS).feed(head)
    assert isinstance(refusal, Refusal) and refusal.status == 413 and refusal.discard == 0


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives() -> None:
    reader = RequestReader(LIMITS)
    head = b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert reader.feed(head + b"200\r\n" + b"x" * 0x200 + b"\r\n") is None
    refusal = reader.feed(b"300\r\n")
    assert isinstance(refusal, Refusal) and refusal.status == 413 and refusal.discard_chunked


def test_tiny_chunks_cannot_make_the_framing_unbounded() -> None:
    head = b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    refusal = RequestReader(LIMITS).feed(head + b"1\r\nx\r\n" * 400)
    assert isinstance(refusal, Refusal) and refusal.status == 413


def test_100_continue_is_ours_to_send_and_gunicorn_does_not_see_the_expectation() -> None:
    reader = RequestReader(LIMITS)
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    assert reader.feed(head) is None and reader.expects_continue
    without = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
    assert reader.feed(b"abcd") == Request(without, b"abcd")


@pytest.mark.parametrize("raw, status", [
    (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /" + b"a" * 300, 414),  # no end of line in sight
    (b"GET / HTTP/1.1\r\n" + b"X-Big: yyyy\r\n" * 100, 431),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000, 400),
])
def test_requests_that_cannot_be_framed_are_refused_with_a_status(raw: bytes, status: int) -> None:
    outcome = RequestReader(LIMITS).feed(raw)
    assert isinstance(outcome, Refusal) and outcome.status == status
    assert outcome.payload()["error"] and outcome.payload()["message"]
