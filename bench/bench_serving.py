"""Benchmark real-time serving, side by side in one run, with the targets of issues 13 and 14.

Sections (--sections, default all):
  single     single-record JSON: p50/p99 on new and keep-alive connections, throughput with N
             keep-alive clients, PSS; ours against `mlflow models serve` (same model, same workers).
  batch      1,000-row JSON and CSV requests, keep-alive: p50 against the targets (<= 8 ms JSON,
             <= 6 ms CSV), server CPU per request (what a busy machine does not inflate), mlflow
             alongside, and the largest difference from the sklearn Pipeline (target 1e-9).
  slowloris  /ping p50/p99 idle and while 200 connections hold a chunked body they never finish
             (target p99 < 50 ms, no errors); our buffering worker against nginx buffering in
             front of the server (when nginx is installed), with what each costs.
  memory     PSS (/proc/PID/smaps_rollup) of a 1-worker and a 4-worker server after the same
             requests (target: 4 workers <= 1.5x one worker).

Usage: python bench/bench_serving.py [--model-dir DIR] [--sections single,batch,slowloris,memory]
       [--workers 2] [--requests 2000] [--clients 16] [--seconds 10] [--stalled 200] [--variants gthread,sync]
       [--compare-with DIR]
Without --model-dir a small model is trained first (about 20 s). Numbers from a shared machine
vary with its load: compare the columns of one run, and the CPU per request.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import serving_servers as servers
from serving_load import (
    RECORD,
    batch_records,
    bodies,
    cpu_seconds,
    p50,
    p99,
    ping_latencies,
    pss_mib,
    stall,
    throughput,
    timed,
)
from serving_servers import Server

TARGETS = {"json": 8.0, "csv": 6.0}
BATCH_ROWS = 1000


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


def single_body(server: Server) -> bytes:
    return json.dumps({"dataframe_records": [RECORD]} if server.mlflow else RECORD).encode()


def scores(server: Server) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    conn.request("POST", server.path, body=single_body(server), headers={"Content-Type": "application/json"})
    return conn.getresponse().status == 200


def ready_workers(workers: int) -> Callable[[Server], bool]:
    """Every worker has loaded its model (its model-info gauge file exists) and /ping is 200."""

    def ready(server: Server) -> bool:
        pids = server.pids()[1:]
        directory = Path(os.environ["BENCH_WORK"]) / f"prom-{server.name.replace(' ', '-')}"
        loaded = [p for p in pids if (directory / f"gauge_livemax_{p}.db").exists()]
        return len(loaded) == workers and scores(server)

    return ready


def table(title: str, rows: list[tuple[str, list[str]]], columns: list[str]) -> None:
    print(f"\n{title}")
    print(f"{'':<34}" + "".join(f"{c:>16}" for c in columns))
    for name, cells in rows:
        print(f"{name:<34}" + "".join(f"{c:>16}" for c in cells))


# -- sections -----------------------------------------------------------------------------------------


def section_single(work: Path, model: Path, args: argparse.Namespace) -> None:
    targets = [servers.ours(work, model, f"churn {variant}", args.workers, worker_class=variant)
               for variant in args.variants.split(",")] + [servers.mlflow(work, model, args.workers)]
    try:
        for server in targets:
            servers.wait_ready(server, scores)
        for server in targets:  # one at a time: on a small machine they would share the cores
            body = single_body(server)
            for _ in range(3):
                timed(server, body, "application/json", 100)
            for mode, keep in (("new connection", False), ("keep-alive", True)):
                latencies = timed(server, body, "application/json", args.requests, keep_alive=keep)
                server.results[f"{mode} p50 ms"] = p50(latencies)
                server.results[f"{mode} p99 ms"] = p99(latencies)
            server.results[f"{args.clients} clients req/s"] = throughput(server, body, args.clients, args.seconds)
            server.results["PSS MiB (all processes)"] = sum(pss_mib(server).values())
    finally:
        for server in targets:
            server.stop()
    *ours, mlflow = targets
    rows = []
    for metric in mlflow.results:
        cells = [f"{server.results[metric]:.2f}" for server in targets]
        for server in ours:
            better = server.results[metric] / mlflow.results[metric] if "req/s" in metric else \
                mlflow.results[metric] / server.results[metric]
            cells.append(f"{better:.2f}x")
        rows.append((metric, cells))
    table(f"single-record JSON, {args.workers} workers each; ratio: how many times better than mlflow", rows,
          [server.name for server in targets] + [f"ratio {server.name.split()[-1]}" for server in ours])


def section_batch(work: Path, model: Path, args: argparse.Namespace) -> None:
    records = batch_records(BATCH_ROWS)
    targets = [servers.ours(work, model, "batch", args.workers), servers.mlflow(work, model, args.workers)]
    if args.compare_with is not None:
        targets.append(servers.ours(work, model, "before", args.workers, source=args.compare_with))
    n = max(100, args.requests // 10)
    rounds = 5  # the servers take turns, so a change in the machine's load reaches all of them
    try:
        for server in targets:
            servers.wait_ready(server, scores if server.mlflow else ready_workers(args.workers))
        for server in targets:
            for body, content_type in bodies(records, server).values():
                timed(server, body, content_type, 30, accept=content_type)
        latencies: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], float] = {}
        for _ in range(rounds):
            for server in targets:
                for fmt, (body, content_type) in bodies(records, server).items():
                    before = cpu_seconds(server)
                    latencies.setdefault((server.name, fmt), []).extend(
                        timed(server, body, content_type, n // rounds, accept=content_type))
                    cpu[(server.name, fmt)] = cpu.get((server.name, fmt), 0.0) + cpu_seconds(server) - before
        for server in targets:
            for fmt in ("json", "csv"):
                server.results[f"{fmt} p50"] = p50(latencies[(server.name, fmt)])
                server.results[f"{fmt} cpu"] = 1000 * cpu[(server.name, fmt)] / len(latencies[(server.name, fmt)])
        ours = targets[0]
        difference = pipeline_difference(ours, model, records)
    finally:
        for server in targets:
            server.stop()
    others = targets[1:]
    rows = []
    for fmt in ("json", "csv"):
        for metric, label in (("p50", f"p50 ms (target <= {TARGETS[fmt]:.0f})"), ("cpu", "server CPU ms/request")):
            key = f"{fmt} {metric}"
            cells = [f"{ours.results[key]:.2f}"] + [f"{other.results[key]:.2f}" for other in others]
            cells += [f"{other.results[key] / ours.results[key]:.2f}x" for other in others]
            met = "met" if ours.results[key] <= TARGETS[fmt] else "NOT met"
            rows.append((f"{fmt.upper()} {label}", cells + [met if metric == "p50" else ""]))
    rows.append(("max |churn - Pipeline| (1e-9)",
                 [f"{difference:.1e}"] + [""] * (2 * len(others)) + ["met" if difference <= 1e-9 else "NOT met"]))
    table(f"{BATCH_ROWS}-row batches, keep-alive, {args.workers} workers each, {n} requests",
          rows, ["churn"] + [o.name for o in others] + [f"vs {o.name}" for o in others] + ["target"])


def pipeline_difference(server: Server, model: Path, records: list[dict[str, Any]]) -> float:
    """The largest difference between our JSON and CSV answers and the sklearn Pipeline's probabilities."""
    import csv
    import io

    import numpy as np

    from churn.adapters import model_format
    from churn.model import to_frame
    from churn.validation import validate

    loaded = model_format.load(model)
    clean = validate(records, loaded.compiled.schema).clean
    expected = loaded.trained.predict_proba(to_frame(clean, loaded.compiled.schema))
    worst = 0.0
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for fmt, (body, content_type) in bodies(records, server).items():
        conn.request("POST", server.path, body=body, headers={"Content-Type": content_type, "Accept": content_type})
        text = conn.getresponse().read().decode()
        got = [p["probability"] for p in json.loads(text)["predictions"]] if fmt == "json" else \
            [float(r["probability"]) for r in csv.DictReader(io.StringIO(text))]
        worst = max(worst, float(np.max(np.abs(np.array(got) - expected))))
    return worst


def section_slowloris(work: Path, model: Path, args: argparse.Namespace) -> None:
    candidates = [servers.ours(work, model, "buffering", args.workers)]
    front = servers.nginx_front(work, model, args.workers)
    if front is not None:
        candidates.append(front)
    records = batch_records(BATCH_ROWS)
    try:
        for server in candidates:
            servers.wait_ready(server, scores)
        for server in candidates:
            body = single_body(server)
            timed(server, body, "application/json", 200)
            idle, _ = ping_latencies(server, args.requests // 4)
            server.results["/ping p50 idle"] = p50(idle)
            server.results["/ping p99 idle"] = p99(idle)
            held = stall(server, args.stalled)
            try:
                time.sleep(0.5)
                stalled, errors = ping_latencies(server, args.requests // 4)
                scored = timed(server, body, "application/json", 50)
            finally:
                for sock in held:
                    sock.close()
            server.results["/ping p50 stalled"] = p50(stalled)
            server.results["/ping p99 stalled"] = p99(stalled)
            server.results["/ping errors stalled"] = errors
            server.results["single record p50 stalled"] = p50(scored)
            server.results["single record p50 keep-alive"] = p50(timed(server, body, "application/json",
                                                                       args.requests // 2))
            json_body, content_type = bodies(records, server)["json"]
            server.results["1,000-row JSON p50"] = p50(timed(server, json_body, content_type, 100))
            server.results["PSS MiB (all processes)"] = sum(pss_mib(server).values())
    finally:
        for server in candidates:
            server.stop()
    metrics = list(candidates[0].results)
    rows = [(f"{m}{' (target < 50 ms)' if m == '/ping p99 stalled' else ''}",
             [f"{s.results[m]:.2f}" for s in candidates]) for m in metrics]
    table(f"{args.stalled} stalled clients (slowloris), {args.workers} workers; ms unless named",
          rows, [s.name for s in candidates])
    if front is None:
        print("(nginx is not installed: `apt-get install nginx-light` adds the comparison)")


def section_memory(work: Path, model: Path, args: argparse.Namespace) -> None:
    records = batch_records(100)
    found: dict[int, dict[int, float]] = {}
    for workers in (1, 4):
        server = servers.ours(work, model, f"memory-{workers}", workers)
        try:
            servers.wait_ready(server, ready_workers(workers))
            body, content_type = bodies(records, server)["json"]
            for keep_alive in (False, True):  # new connections reach every worker
                timed(server, single_body(server), "application/json", 200, keep_alive=keep_alive)
                timed(server, body, content_type, 100, keep_alive=keep_alive)
            time.sleep(1)
            found[workers] = pss_mib(server)
        finally:
            server.stop()
    rows = []
    for workers, per_process in found.items():
        master, *children = per_process.values()
        rows.append((f"{workers} worker(s)", [f"{sum(per_process.values()):.0f}", f"{master:.0f}",
                                              " ".join(f"{c:.0f}" for c in children)]))
    ratio = sum(found[4].values()) / sum(found[1].values())
    rows.append(("4 workers / 1 worker (target <= 1.5)", [f"{ratio:.2f}x", "", "met" if ratio <= 1.5 else "NOT met"]))
    table("memory: PSS MiB after 400 requests per server", rows, ["total", "master", "workers"])


SECTIONS = {"single": section_single, "batch": section_batch, "slowloris": section_slowloris,
            "memory": section_memory}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per measurement")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--stalled", type=int, default=200, help="stalled connections for the slowloris section")
    parser.add_argument("--variants", default="gthread", help="our worker classes in the single section (gthread,sync)")
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="another checkout (git archive main | tar -x -C DIR): its server joins the batch section")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    os.environ["BENCH_WORK"] = str(work)
    try:
        model = args.model_dir or train_model(work)
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
        for name in args.sections.split(","):
            SECTIONS[name](work, model, args)
            sys.stdout.flush()
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
