"""Load and measurements for bench_serving.py: latencies, throughput, stalled clients, CPU, memory."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from serving_servers import Server

RECORD = {
    "tenure": 31, "monthly_charges": 88.67, "total_charges": 2875.71, "contract": "Month-to-month",
    "payment_method": "Mailed check", "internet_service": "Fiber optic", "tech_support": "No",
    "online_security": "Yes", "support_calls": 2,
}
FEATURES = list(RECORD)


def batch_records(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """n varied, valid customers with ids."""
    import numpy as np

    rng = np.random.default_rng(seed)
    contracts = ["Month-to-month", "One year", "Two year"]
    internet = ["DSL", "Fiber optic", "No"]
    return [{**RECORD, "customer_id": f"C{i:06d}", "tenure": int(rng.integers(0, 72)),
             "monthly_charges": float(round(rng.uniform(20, 110), 2)),
             "total_charges": None if i % 17 == 0 else float(round(rng.uniform(0, 8000), 2)),
             "contract": contracts[i % 3], "internet_service": internet[i % 3],
             "tech_support": "No internet service" if i % 3 == 2 else "Yes",
             "online_security": "No internet service" if i % 3 == 2 else "No",
             "support_calls": int(rng.integers(0, 9))} for i in range(n)]


def bodies(records: list[dict[str, Any]], server: Server) -> dict[str, tuple[bytes, str]]:
    """The same records as JSON and CSV, in the shapes this server takes."""
    columns = ["customer_id", *FEATURES]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if r[c] is None else r[c] for c in columns] for r in records])
    if server.mlflow:
        frame = {"dataframe_split": {"columns": FEATURES, "data": [[r[c] for c in FEATURES] for r in records]}}
        return {"json": (json.dumps(frame).encode(), "application/json"),
                "csv": (out.getvalue().encode(), "text/csv")}
    return {"json": (json.dumps(records).encode(), "application/json"), "csv": (out.getvalue().encode(), "text/csv")}


def post(conn: http.client.HTTPConnection, server: Server, body: bytes, content_type: str,
         accept: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    conn.request("POST", server.path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def timed(server: Server, body: bytes, content_type: str, n: int, keep_alive: bool = True,
          accept: str | None = None) -> list[float]:
    """Latencies (s) of n requests one after another."""
    latencies = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for _ in range(n):
        if not keep_alive:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        started = time.perf_counter()
        status, answer = post(conn, server, body, content_type, accept)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise SystemExit(f"{server.name} answered {status}: {answer[:200]!r}")
        if not keep_alive:
            conn.close()
    conn.close()
    return latencies


def p50(latencies: list[float]) -> float:
    return 1000 * statistics.median(latencies)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return 1000 * ordered[int(0.99 * (len(ordered) - 1))]


def cpu_seconds(server: Server) -> float:
    """User + system CPU of every process of the server so far (load on the machine does not inflate it)."""
    ticks = 0
    for pid in server.pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pss_mib(server: Server) -> dict[int, float]:
    """Proportional set size of each process (shared pages split fairly), from smaps_rollup."""
    out = {}
    for pid in server.pids():
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out[pid] = int(line.split()[1]) / 1024
    return out


async def _client(server: Server, body: bytes, stop_at: float, counts: list[int]) -> None:
    """One keep-alive client; like real clients it reconnects when the server closes (sync workers)."""
    message = (f"POST {server.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    done = 0
    writer = None
    while time.perf_counter() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(message)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"{server.name} answered {head[:40]!r}")
        lines = [line.lower() for line in head.split(b"\r\n")]
        length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
        await reader.readexactly(length)
        done += 1
        if b"connection: close" in lines:
            writer.close()
            writer = None
    counts.append(done)
    if writer is not None:
        writer.close()


def throughput(server: Server, body: bytes, clients: int, seconds: float) -> float:
    """Requests per second over `clients` concurrent keep-alive connections (one asyncio process)."""
    counts: list[int] = []

    async def run() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(_client(server, body, stop_at, counts) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(run())
    return sum(counts) / (time.perf_counter() - started)


def ping_latencies(server: Server, n: int, timeout: float = 2.0) -> tuple[list[float], int]:
    """/ping on a new connection each time, as a probe does: latencies and the count of failures."""
    latencies, errors = [], 0
    for _ in range(n):
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
            conn.request("GET", "/ping")
            response = conn.getresponse()
            response.read()
            conn.close()
            errors += response.status != 200
        except OSError:
            errors += 1
        latencies.append(time.perf_counter() - started)
    return latencies, errors


def stall(server: Server, n: int) -> list[socket.socket]:
    """n connections that start a chunked body and never finish it."""
    held = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(f"POST {server.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n5\r\n[{\"te".encode())
        held.append(sock)
    return held
