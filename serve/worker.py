"""gunicorn's gthread worker with a buffering front, JSON protocol errors and a prompt drain.

Buffering (what nginx does in front of SageMaker's own containers, here inside each worker):
the worker's event loop reads every connection without blocking and hands a request to a
thread only once all of it has arrived (`request_reader.RequestReader`). gunicorn alone gives
each connection a thread as soon as its first byte arrives, so 8 clients that never finish a
chunked body held all 2 x 4 threads and /ping timed out for as long as they stayed. Here a
stalled client costs a few bytes of memory; a request that has not fully arrived within the
server timeout gets 408, an idle connection is closed after the keep-alive period, and bodies
over the limit get 413 after being read and dropped (bounded), so a client that writes its
whole body before reading, like urllib, reads the 413 instead of a broken pipe.

Errors gunicorn answers itself (bad request line, headers too large, bad chunking) are JSON
like every answer of the app (churn_serve.protocol_errors). Closing is non-blocking: gunicorn
26 lingers up to 2 s in its event loop on every closed connection, which a client that never
closes would turn into a stall of every other connection.

The drain: gunicorn 26's graceful shutdown waits in one poll for the whole graceful timeout,
so an idle keep-alive client kept every SIGTERM waiting 60 s (measured). Here the wait is
sliced and idle connections are closed as soon as the worker stops.
"""

from __future__ import annotations

import errno
import io
import logging
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker
from gunicorn.workers.sync import SyncWorker

from churn_serve.protocol_errors import JsonErrors, json_answer
from churn_serve.request_reader import CONTINUE, Limits, Refusal, Request, RequestReader

log = logging.getLogger("churn.serve")
_SLICE_SECONDS = 0.5
_SCAN_SECONDS = 0.1  # how often deadlines are checked (not per event: hundreds of connections)
_RECV_BYTES = 256 * 1024
_LINGER_BYTES = 64 * 1024  # read and dropped after a Connection: close answer, as gunicorn does
_LINGER_SECONDS = 2.0
_BUSY_REQUESTS = 8  # bodies of the largest size one worker buffers at once before answering 503


class BufferedConn(TConn):
    """A connection and what the event loop knows of it."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any, limits: Limits) -> None:
        super().__init__(cfg, sock, client, server)
        self.reader = RequestReader(limits)
        self.body = b""  # the body of the request a thread is handling
        self.since = time.monotonic()  # when the current request began, or the connection went idle
        self.counted = 0  # bytes of this connection counted in the worker's buffer budget
        self.lingering = False
        self.linger_bytes = 0
        self.linger_seconds = 0.0


class JsonSyncWorker(JsonErrors, SyncWorker):
    """gunicorn's sync worker (one request at a time, no keep-alive, no buffering) with JSON errors."""


class DrainingThreadWorker(JsonErrors, ThreadWorker):
    """The gthread worker the server runs (the name is kept for the configuration)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watched: set[BufferedConn] = set()
        self._buffered = 0
        self._next_scan = 0.0
        self._limits = Limits()
        self._budget = _BUSY_REQUESTS * self._limits.body

    def run(self) -> None:
        options = getattr(self.wsgi, "extensions", {}).get("churn", {}).get("options")
        body = getattr(options, "max_body_bytes", Limits.body)
        self._limits = Limits(request_line=self.cfg.limit_request_line + 2, body=body,
                              discard=max(Limits.discard, 4 * body))
        self._budget = _BUSY_REQUESTS * body
        super().run()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(min(timeout, _SLICE_SECONDS))

    # -- connections: accepted, read, handed to a thread, back to reading ------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = BufferedConn(self.cfg, sock, client, listener.getsockname(), self._limits)
        self._watch(conn)

    def _watch(self, conn: BufferedConn) -> None:
        conn.since = time.monotonic()
        self._watched.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
        if conn.reader.started:  # a pipelined request arrived with the previous one
            self._advance(conn, conn.reader.next())

    def _unwatch(self, conn: BufferedConn) -> None:
        if conn in self._watched:
            self._watched.discard(conn)
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _readable(self, conn: BufferedConn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client hung up
            self._close(conn)
            return
        if conn.lingering:
            conn.linger_bytes -= len(data)
            if conn.linger_bytes <= 0:
                self._close(conn)
            return
        if not conn.reader.started:
            conn.since = time.monotonic()
        if self._buffered + len(data) > self._budget:
            self._refuse(conn, Refusal(503, "service_unavailable",
                                       "the server is receiving too many large requests; retry shortly"),
                         headers=(("Retry-After", "1"),))
            return
        outcome = conn.reader.feed(data)
        self._advance(conn, outcome)

    def _advance(self, conn: BufferedConn, outcome: Request | Refusal | None) -> None:
        self._recount(conn)
        if outcome is None:
            if conn.reader.expects_continue:
                conn.reader.expects_continue = False
                self._send(conn, CONTINUE)
            return
        if isinstance(outcome, Refusal):
            self._refuse(conn, outcome)
            return
        self._unwatch(conn)
        conn.parser = http.RequestParser(self.cfg, [outcome.head], conn.client)
        conn.body = outcome.body
        conn.initialized = conn.data_ready = True  # gunicorn must not wait for or parse the socket itself
        self.enqueue_req(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """A thread: the app reads the body we buffered, not gunicorn's reader over the head's bytes."""
        req.body = io.BytesIO(conn.body)
        conn.body = b""
        return bool(super().handle_request(req, conn))

    def finish_request(self, conn: TConn, fs: Any) -> None:
        """Main thread, after a thread answered: read the next request, or close without blocking."""
        assert isinstance(conn, BufferedConn)
        try:
            keep_alive = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep_alive = False
        if keep_alive and self.alive:
            try:
                conn.sock.setblocking(False)
            except OSError:
                self._close(conn)
                return
            self._watch(conn)
        else:
            self._linger(conn, _LINGER_BYTES, _LINGER_SECONDS)

    # -- refusing and closing ----------------------------------------------------------------------

    def _refuse(self, conn: BufferedConn, refusal: Refusal, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer from the event loop, then read and drop what the client still sends (bounded)."""
        log.info("request refused before the app",
                 extra={"status": refusal.status, "error": refusal.error, "client": str(conn.client)})
        self._count(refusal.status)
        self._send(conn, json_answer(refusal.status, refusal.payload(), headers))
        budget = min(refusal.discard, self._limits.discard) + _LINGER_BYTES
        self._linger(conn, budget, float(self.cfg.timeout))

    def _send(self, conn: BufferedConn, data: bytes) -> None:
        try:
            conn.sock.send(data)  # small, on an idle socket: the kernel takes it whole
        except OSError:
            pass

    def _linger(self, conn: BufferedConn, budget: int, seconds: float) -> None:
        """Half-close, then drop what arrives until the client closes, `budget` bytes or `seconds`."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.lingering = True
        conn.linger_bytes = budget
        conn.linger_seconds = seconds
        conn.reader.buffer.clear()
        self._recount(conn)
        if conn not in self._watched:
            self._watch(conn)
        conn.since = time.monotonic()

    def _close(self, conn: BufferedConn) -> None:
        self._unwatch(conn)
        conn.reader.buffer.clear()
        self._recount(conn)
        self.nr_conns -= 1
        conn.close()

    def _recount(self, conn: BufferedConn) -> None:
        size = len(conn.reader.buffer)
        self._buffered += size - conn.counted
        conn.counted = size

    def murder_keepalived(self) -> None:
        """Deadlines: idle connections close, half-sent requests get 408, lingering ones end."""
        now = time.monotonic()
        if now < self._next_scan and self.alive:
            return
        self._next_scan = now + _SCAN_SECONDS
        for conn in list(self._watched):
            waited = now - conn.since
            if conn.lingering:
                if waited > conn.linger_seconds:
                    self._close(conn)
            elif conn.reader.started:
                if waited > self.cfg.timeout:
                    self._refuse(conn, Refusal(408, "request_timeout",
                                               f"the request did not arrive within {self.cfg.timeout} s"))
            elif waited > self.cfg.keepalive or not self.alive:
                self._close(conn)
