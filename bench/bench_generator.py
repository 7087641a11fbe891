"""Benchmark the synthetic customer generator: rows/s and peak RSS.

Usage: PYTHONPATH=lib python bench/bench_generator.py --customers 1000000
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from churn.generator import GeneratorConfig, generate, write_parquet


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # macOS reports bytes, Linux KiB.
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def main(argv: list[str] | None = None) -> int:
    """Generate, then generate-and-write, N customers; print throughput and memory."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--customers", type=int, default=1_000_000, help="customers to generate"
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=100_000, help="rows per chunk / row group"
    )
    parser.add_argument(
        "--dirty-rate", type=float, default=0.0, help="share of messy rows"
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    config = GeneratorConfig(
        args.customers,
        seed=args.seed,
        chunk_rows=args.chunk_rows,
        dirty_rate=args.dirty_rate,
    )
    # Warm up imports and first-call costs so they do not count against throughput.
    for _ in generate(
        GeneratorConfig(1_000, seed=args.seed, dirty_rate=args.dirty_rate)
    ):
        pass
    print(
        f"customers={args.customers:,} chunk_rows={args.chunk_rows:,} dirty_rate={args.dirty_rate}"
    )
    print(f"baseline peak RSS: {peak_rss_mb():.0f} MiB")

    start = time.perf_counter()
    rows = sum(chunk.num_rows for chunk in generate(config))
    elapsed = time.perf_counter() - start
    print(
        f"generate:       {rows:,} rows in {elapsed:.2f} s = {rows / elapsed:,.0f} rows/s; "
        f"peak RSS {peak_rss_mb():.0f} MiB"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "customers.parquet"
        start = time.perf_counter()
        rows = write_parquet(config, path)
        elapsed = time.perf_counter() - start
        size_mb = path.stat().st_size / 2**20
    print(
        f"generate+write: {rows:,} rows in {elapsed:.2f} s = {rows / elapsed:,.0f} rows/s "
        f"({size_mb:.0f} MiB Parquet); peak RSS {peak_rss_mb():.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
