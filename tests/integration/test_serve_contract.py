"""What only the real gunicorn server shows: workers, keep-alive, the buffering front and its refusals.

The HTTP contract itself (bodies, answers, error bodies, 405 Allow, 413 on chunked bodies,
reasons) is tested in process through `create_app` in tests/unit/test_serve_app.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_harness import RECORD, ServeProcess, start_serve

READ_TIMEOUT = 5  # SAGEMAKER_MODEL_SERVER_TIMEOUT of this module's server: a request must arrive within it
PROBE_TIMEOUT = 2  # Kubernetes' probe timeout for /ping and /live (k8s/base/serving-deployment.yaml)
STALLED = 200
SIX_MIB = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Two workers serving the test model from SAGEMAKER_BASE_DIR/model."""
    process = start_serve(tmp_path_factory.mktemp("serve"), model_dir, workers=2,
                          SAGEMAKER_MODEL_SERVER_TIMEOUT=str(READ_TIMEOUT))
    try:
        process.ready(workers=2)
        yield process
    finally:
        process.stop()


def raw_exchange(server: ServeProcess, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes, half-close, and read everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def json_body(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    parsed: dict[str, object] = json.loads(body)
    return parsed


def test_the_server_listens_on_the_configured_address_only(server: ServeProcess) -> None:
    """CHURN_BIND_ADDRESS=127.0.0.1 (the harness sets it): not on every interface, as 0.0.0.0 would."""
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    ours = [fields[1] for fields in listening if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == server.port]
    assert ours == [f"0100007F:{server.port:04X}"], ours


def test_keep_alive_connections_stay_open_and_do_not_stall(server: ServeProcess) -> None:
    """Nagle + delayed ACK would add ~40 ms to each keep-alive answer; gthread + TCP_NODELAY must not."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = json.dumps(RECORD)
    latencies, sockets = [], set()
    for _ in range(60):
        started = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        assert response.status == 200 and response.getheader("Connection", "keep-alive") != "close"
        sockets.add(id(conn.sock))
    conn.close()
    assert len(sockets) == 1, "the server closed a keep-alive connection"
    assert statistics.median(latencies) < 0.02, f"keep-alive median {statistics.median(latencies) * 1000:.1f} ms"


def test_pipelined_requests_are_answered_in_order(server: ServeProcess) -> None:
    body = json.dumps(RECORD).encode()
    one = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    answer = raw_exchange(server, one + b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200") == 2 and answer.index(b"prediction") < answer.index(b'"live"')


def test_stalled_clients_starve_neither_ping_nor_invocations_and_get_408(server: ServeProcess) -> None:
    """Slowloris: 200 connections that send part of a chunked body and stop, held while we probe."""
    stalled = []
    try:
        for _ in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\n[{\"te")
            stalled.append(sock)
        started = time.monotonic()
        for _ in range(20):
            assert requests_get(server, "/ping") == 200
            assert requests_get(server, "/live") == 200
        scored = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PROBE_TIMEOUT)
        scored.request("POST", "/invocations", body=json.dumps(RECORD), headers={"Content-Type": "application/json"})
        assert scored.getresponse().status == 200
        assert time.monotonic() - started < READ_TIMEOUT, "probing outlasted the stall: the test proved nothing"
        for sock in stalled:  # still held: nothing was answered to them while we probed
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.setblocking(True)
        answers = [sock.recv(65536) for sock in stalled[:5]]  # the read deadline answers them
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            assert json_body(answer)["error"] == "request_timeout"
    finally:
        for sock in stalled:
            sock.close()


def requests_get(server: ServeProcess, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_a_7_mb_body_through_urllib_reads_the_413_not_a_broken_pipe(server: ServeProcess) -> None:
    request = urllib.request.Request(server.url + "/invocations", data=b" " * (7 * 1024 * 1024),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    body = json.loads(refused.value.read())
    assert body["error"] == "payload_too_large" and body["limit"] == SIX_MIB
    assert server.post("/invocations", RECORD).status_code == 200


def test_a_chunked_body_over_6_mib_is_413_json(server: ServeProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(7):
            yield b" " * (1024 * 1024)

    response = server.post("/invocations", chunks())
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_a_body_of_exactly_6_mib_passes_the_front(server: ServeProcess) -> None:
    body = json.dumps(RECORD).encode()
    assert server.post("/invocations", body + b" " * (SIX_MIB - len(body))).status_code == 200


def test_expect_100_continue_is_answered_before_the_body_is_sent(server: ServeProcess) -> None:
    body = json.dumps(RECORD).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 100" not in answer


def test_a_body_refused_by_its_declared_length_is_not_awaited_after_100_continue(server: ServeProcess) -> None:
    answer = raw_exchange(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                  b"Content-Length: 7340032\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and json_body(answer)["error"] == "payload_too_large"


@pytest.mark.parametrize("raw, status, error", [
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /ping HTTP/9.9\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
    (b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431, "request_header_fields_too_large"),
    (b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 9_000 + b"\r\n\r\n", 431, "request_header_fields_too_large"),
    (b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_request"),
    (b"POST /invocations HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad_request"),
    (b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "not_implemented"),
    (b"GET /ping HTTP/1.1\r\nExpect: something\r\n\r\n", 417, "expectation_failed"),
])
def test_protocol_errors_are_json_like_every_other_answer(server: ServeProcess, raw: bytes, status: int,
                                                          error: str) -> None:
    answer = raw_exchange(server, raw)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert json_body(answer)["error"] == error


def test_refusals_before_the_app_are_counted_in_the_request_metrics(server: ServeProcess) -> None:
    def refused() -> float:
        lines = server.get("/metrics").text.splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith("churn_http_requests_total{") and 'route="other"' in line
                   and 'status="414"' in line)

    before = refused()
    raw_exchange(server, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n")
    assert refused() == before + 1


def test_the_master_stays_single_threaded_so_forking_workers_is_safe(server: ServeProcess) -> None:
    """The master imports the whole stack (preload) and must still fork from one thread."""
    threads = list(Path(f"/proc/{server.process.pid}/task").iterdir())
    assert len(threads) == 1, [t.joinpath("comm").read_text().strip() for t in threads]
