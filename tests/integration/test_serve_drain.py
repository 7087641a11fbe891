"""SIGTERM: requests in flight are answered, new connections are refused, the server exits 0 promptly.

And nothing is left in the temp directory: ours goes at exit, a SIGKILLed server's at the next start.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from serve_harness import RECORD, start_serve


def read_response(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = lengths[0]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    return int(finished.stdout)


def test_sigterm_answers_the_request_in_flight_then_exits_cleanly(model_dir: Path, tmp_path: Path) -> None:
    # What a SIGKILLed server leaves in the temp dir (TMPDIR=tmp_path): its pid-named metrics directory.
    killed = tmp_path / f"churn-prometheus-{dead_pid()}-x1y2"
    killed.mkdir()
    (killed / "counter_1.db").write_bytes(b"\0" * 64)
    server = start_serve(tmp_path, model_dir, workers=2, PROMETHEUS_MULTIPROC_DIR="")
    try:
        server.ready(workers=2)
        made = sorted(tmp_path.glob("churn-prometheus-*"))
        assert made == [server.metrics_dir] and killed not in made, "the dead server's directory stayed"
        # An idle keep-alive client must not hold the shutdown up (gunicorn's own drain waited 60 s).
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        idle.request("GET", "/ping")
        idle.getresponse().read()

        body = json.dumps(RECORD).encode()
        in_flight = socket.create_connection(("127.0.0.1", server.port))
        in_flight.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        time.sleep(0.5)  # the worker is now reading the body of this request

        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        in_flight.sendall(body[10:])
        answer = read_response(in_flight)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["prediction"] in ("Churn", "No Churn")
        in_flight.close()

        returncode = server.process.wait(30)
        assert returncode == 0, server.log()[-2000:]
        assert time.monotonic() - stopped_at < 15, "shutdown waited for idle connections"
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        assert refused, "the port still accepts connections after shutdown"
        idle.close()
        assert not list(tmp_path.glob("churn-prometheus-*")), "the metrics directory was left in the temp dir"
    finally:
        server.stop()

