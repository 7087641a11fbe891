"""Benchmark real-time serving: this server against `mlflow models serve`, same model, same run.

Single-record JSON. Sequential p50/p99 with a new connection per request and over one
keep-alive connection, then throughput with N concurrent keep-alive clients, and the memory
(PSS) of each server's processes. Prints one table with the ratios.

Usage: python bench/bench_serving.py [--model-dir DIR] [--workers 2] [--requests 2000]
       [--variants gthread,sync] [--seconds 10] [--clients 16]
Without --model-dir a small model is trained first (about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RECORD = {
    "tenure": 31, "monthly_charges": 88.67, "total_charges": 2875.71, "contract": "Month-to-month",
    "payment_method": "Mailed check", "internet_service": "Fiber optic", "tech_support": "No",
    "online_security": "Yes", "support_calls": 2,
}
BIN = Path(sys.executable).parent


@dataclass
class Target:
    """One running server and the request that scores one record on it."""

    name: str
    port: int
    path: str
    body: bytes
    process: subprocess.Popen[bytes]
    results: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_model(directory: Path) -> Path:
    """A small model in MLflow format, as the test fixtures build it."""
    import pyarrow as pa

    from churn import generator, training
    from churn.adapters import model_format
    from churn.model import to_frame
    from churn.params import load_params
    from churn.validation import validate

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    customers = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=5_000, seed=7)))
    splits = training.split(validate(customers, params.schema, require_label=True).clean, params)
    outcome = training.train(params, splits.train, splits.valid)
    path = directory / "model"
    model_format.save(outcome.model, path, to_frame(splits.valid, params.schema),
                      {"reference_profile": outcome.reference_profile, "data_hash": "bench"})
    return path


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (it was started in a new session), then wait."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(target: Target, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.process.poll() is not None:
            raise SystemExit(f"{target.name} exited with {target.process.returncode}")
        try:
            status, _ = request(http.client.HTTPConnection("127.0.0.1", target.port, timeout=2), target, warm=True)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{target.name} did not answer within {timeout:.0f}s")


def request(conn: http.client.HTTPConnection, target: Target, warm: bool = False) -> tuple[int, bytes]:
    conn.request("POST", target.path, body=target.body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def sequential(target: Target, n: int, keep_alive: bool) -> list[float]:
    """Latencies (s) of n requests, one after another."""
    latencies = []
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    for _ in range(n):
        if not keep_alive:
            conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
        started = time.perf_counter()
        status, _ = request(conn, target)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise SystemExit(f"{target.name} answered {status}")
        if not keep_alive:
            conn.close()
    conn.close()
    return latencies


async def _client(target: Target, stop_at: float, counts: list[int]) -> None:
    """One keep-alive client; like real clients it reconnects when the server closes (sync workers)."""
    message = (f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(target.body)}\r\n\r\n").encode() + target.body
    done = 0
    writer = None
    while time.perf_counter() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        writer.write(message)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"{target.name} answered {head[:40]!r}")
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


def throughput(target: Target, clients: int, seconds: float) -> float:
    """Requests per second over `clients` concurrent keep-alive connections (one asyncio process)."""
    counts: list[int] = []

    async def run() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(_client(target, stop_at, counts) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(run())
    return sum(counts) / (time.perf_counter() - started)


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (mlflow's CLI starts uvicorn, which starts workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += process_tree(int(child))
    return found


def pss_mib(pid: int) -> float:
    """Proportional set size of a process tree (shared pages split fairly between processes)."""
    total = 0
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024


def measure(target: Target, n: int, clients: int, seconds: float) -> None:
    for _ in range(3):  # warm up both workers' code paths
        sequential(target, 100, keep_alive=True)
    for mode, keep in (("new", False), ("keepalive", True)):
        lat = sorted(sequential(target, n, keep))
        target.results[f"{mode} p50 ms"] = 1000 * statistics.median(lat)
        target.results[f"{mode} p99 ms"] = 1000 * lat[int(0.99 * (len(lat) - 1))]
    target.results[f"{clients} clients req/s"] = throughput(target, clients, seconds)
    target.results["memory PSS MiB"] = pss_mib(target.process.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per mode")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--variants", default="gthread", help="worker classes of this server to run (gthread,sync)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    targets: list[Target] = []
    try:
        model = args.model_dir or train_model(work)
        (work / "opt_ml").mkdir()
        shutil.copytree(model, work / "opt_ml" / "model")
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "LOG_FORMAT": "json",
               "MLFLOW_DISABLE_TELEMETRY": "true"}
        for variant in args.variants.split(","):
            port = free_port()
            serve_env = {**env, "SAGEMAKER_BASE_DIR": str(work / "opt_ml"), "SAGEMAKER_BIND_TO_PORT": str(port),
                         "SAGEMAKER_MODEL_SERVER_WORKERS": str(args.workers), "CHURN_WORKER_CLASS": variant,
                         "CHURN_SERVER_THREADS": str(args.threads),
                         "PROMETHEUS_MULTIPROC_DIR": str(work / f"prom-{variant}")}
            process = start([str(BIN / "serve")], serve_env, work / f"serve-{variant}.log")
            targets.append(Target(f"churn {variant}", port, "/invocations", json.dumps(RECORD).encode(), process))
        port = free_port()
        process = start([str(BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local",
                         "-w", str(args.workers), "-p", str(port), "-h", "127.0.0.1"], env, work / "mlflow.log")
        targets.append(Target("mlflow", port, "/invocations",
                              json.dumps({"dataframe_records": [RECORD]}).encode(), process))
        for target in targets:
            wait_ready(target)
        for target in targets:  # one at a time: on a small machine they would share the cores
            measure(target, args.requests, args.clients, args.seconds)
            print(f"measured {target.name}: {target.results}", file=sys.stderr)
    finally:
        for target in targets:
            stop(target.process)
        shutil.rmtree(work, ignore_errors=True)
    report(targets, args)
    return 0


def report(targets: list[Target], args: argparse.Namespace) -> None:
    mlflow = targets[-1]
    names = [t.name for t in targets]
    print(f"\nsingle-record JSON, {args.workers} workers each, {os.cpu_count()} cores; "
          f"{args.requests} sequential requests per mode, {args.clients} clients for {args.seconds:.0f}s")
    header = f"{'metric':<22}" + "".join(f"{n:>16}" for n in names)
    header += "".join(f"{'ratio ' + t.name.split()[-1]:>18}" for t in targets[:-1])
    print(header)
    for metric in mlflow.results:
        row = f"{metric:<22}" + "".join(f"{t.results[metric]:>16.2f}" for t in targets)
        for t in targets[:-1]:
            higher_is_better = "req/s" in metric
            ratio = t.results[metric] / mlflow.results[metric] if higher_is_better else \
                mlflow.results[metric] / t.results[metric]
            row += f"{ratio:>17.2f}x"
        print(row)
    print("ratio: how many times better than mlflow (latency and memory: mlflow / ours; throughput: ours / mlflow)")


if __name__ == "__main__":
    sys.exit(main())
