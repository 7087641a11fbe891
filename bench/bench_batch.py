"""Batch scoring benchmark: Parquet in -> committed risk Parquet out, against raw Booster.predict.

    python bench/bench_batch.py [--customers 1000000] [--rss-sizes 500000,5000000] [--model-dir DIR]

Prints, from ONE process on the same rows (each the best of --repeat runs: the machine is
shared): raw `Booster.predict` rows/s (the encoded matrix,
explicit num_threads), the job end to end with reasons off and on (read + validate + score +
rank + write + commit), the ratios the issue sets targets for, and the peak RSS of the real
`score` command at each size (separate processes, their own ru_maxrss). Without --model-dir
a model is trained the way a user would: `churn data generate` then `churn train`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

BIN = Path(sys.executable).parent
TARGETS = {"reasons off": 0.8, "reasons on": 0.25}


def sh(*argv: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, check=True, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)


def customers(work: Path, n: int) -> Path:
    path = work / f"customers-{n}.parquet"
    if not path.exists():
        sh(str(BIN / "churn"), "data", "generate", "--customers", str(n), "--out", str(path), "--seed", "1")
    return path


def trained_model(work: Path, n: int) -> Path:
    root = work / "train"
    model = root / "models" / "challenger"
    if not (model / "MLmodel").exists():
        root.mkdir(parents=True, exist_ok=True)
        sh(
            str(BIN / "churn"),
            "data",
            "generate",
            "--customers",
            str(n),
            "--out",
            str(root / "data" / "customers.parquet"),
        )
        sh(
            str(BIN / "churn"),
            "train",
            "--root",
            str(root),
            env={"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"},
        )
    return model


def raw_predict(model_dir: Path, source: Path, threads: int, repeat: int) -> tuple[float, int]:
    """Rows/s of Booster.predict alone on the encoded matrix of the job's rows (active, valid)."""
    import pyarrow as pa

    from churn.adapters import model_format
    from churn.batch import file_chunks
    from churn.validation import validate

    compiled = model_format.load(model_dir, n_threads=threads).compiled
    clean = pa.concat_tables(
        validate(chunk, compiled.schema).clean for chunk in file_chunks(source, compiled.schema, 100_000)
    )
    x = compiled.matrix(clean)
    compiled.booster.predict(x[:1000], num_threads=threads)  # warm up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        compiled.booster.predict(x, num_threads=threads)
        best = min(best, time.perf_counter() - started)
    return x.shape[0] / best, x.shape[0]


def contrib_rate(model_dir: Path, source: Path, threads: int) -> None:
    """Reasons alone: LightGBM pred_contrib against the tabulated TreeSHAP (built once, timed apart)."""
    import numpy as np
    import pyarrow as pa

    from churn.adapters import model_format
    from churn.batch import file_chunks
    from churn.treeshap import TreeShap
    from churn.validation import validate

    compiled = model_format.load(model_dir, n_threads=threads).compiled
    chunk = next(iter(file_chunks(source, compiled.schema, 100_000)))
    x = compiled.matrix(validate(pa.Table.from_batches(chunk.to_batches()), compiled.schema).clean)
    started = time.perf_counter()
    compiled.booster.predict(x[:3000], pred_contrib=True, num_iteration=compiled.best_iteration, num_threads=threads)
    lightgbm = 3000 / (time.perf_counter() - started)
    started = time.perf_counter()
    tables = TreeShap(compiled.booster, compiled.best_iteration, threads)
    built = time.perf_counter() - started
    started = time.perf_counter()
    tables.contributions(x)
    fast = x.shape[0] / (time.perf_counter() - started)
    same = np.abs(
        tables.contributions(x[:3000])
        - compiled.booster.predict(
            x[:3000], pred_contrib=True, num_iteration=compiled.best_iteration, num_threads=threads
        )
    ).max()
    print(f"{'pred_contrib (LightGBM)':<24} {lightgbm:>20,.0f} rows/s")
    print(
        f"{'TreeSHAP tables':<24} {fast:>20,.0f} rows/s  (built in {built:.1f} s, {tables.nbytes / 2**20:.0f} MiB, "
        f"{tables.n_units} subtrees; max |diff| vs pred_contrib {same:.1e})"
    )


def job(model_dir: Path, source: Path, out: Path, threads: int, reasons: bool) -> tuple[float, float, int]:
    """The job's work after start-up (model already loaded): returns (rows/s, seconds, rows)."""
    from churn import batch, scoring
    from churn.adapters import model_format
    from churn.params import load_params
    from churn.settings import Settings
    from churn_jobs import score_io

    settings = Settings.from_env({}, risk_table_uri=str(out), threads=threads)
    loaded = model_format.load(model_dir, n_threads=threads)
    model = batch.ModelRef(loaded.compiled, "churn", "bench", "", loaded.reference_profile)
    config = scoring.ScoringConfig.from_params(load_params())
    store = score_io.risk_store(settings)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-stage-") as staging:
        run = batch.ShardRun(model, config, dt.date(2024, 1, 31), Path(staging), reasons=reasons)
        run.score_all(batch.file_chunks(source, loaded.compiled.schema, config.chunk_rows))
        run.tally.psi()
        rows = score_io.publish(settings, run, store, None)
    seconds = time.perf_counter() - started
    return rows / seconds, seconds, rows


def peak_rss(model_dir: Path, source: Path, out: Path, threads: int) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of the real `score` command, reasons on, from its own rusage."""
    env = {**os.environ, "CHURN_THREADS": str(threads), "LOG_FORMAT": "json"}
    argv = [
        str(BIN / "score"),
        "--source",
        str(source),
        "--model-uri",
        str(model_dir),
        "--risk-uri",
        str(out),
        "--run-date",
        "2024-01-31",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"score failed on {source} (status {status})")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument(
        "--rss-sizes", default="500000,5000000", help="Comma-separated sizes for the RSS runs ('' skips)."
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="MLflow-format model (default: train one).")
    parser.add_argument("--train-customers", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs of each measurement; the best counts.")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "churn-bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    model_dir = args.model_dir or trained_model(args.work, args.train_customers)
    source = customers(args.work, args.customers)
    from churn.adapters import model_format

    compiled = model_format.load(model_dir).compiled
    print(
        f"model {model_dir}: {compiled.best_iteration or compiled.booster.num_trees()} trees, "
        f"{compiled.booster.dump_model()['tree_info'][0]['num_leaves']} leaves in the first; threads={args.threads}"
    )

    raw, rows = raw_predict(model_dir, source, args.threads, args.repeat)
    print(f"{'raw Booster.predict':<24} {rows:>9,} rows  {raw:>10,.0f} rows/s")
    contrib_rate(model_dir, source, args.threads)
    for label, reasons in (("reasons off", False), ("reasons on", True)):
        # Best of --repeat runs: this machine is shared, and a slow run says more about the neighbours.
        rate, seconds, written = max(
            job(model_dir, source, args.work / f"risk-{label.replace(' ', '-')}", args.threads, reasons)
            for _ in range(args.repeat)
        )
        ratio = rate / raw
        verdict = "met" if ratio >= TARGETS[label] else "NOT met"
        print(
            f"{'job, ' + label:<24} {written:>9,} rows  {rate:>10,.0f} rows/s  {seconds:6.1f} s  "
            f"ratio {ratio:.2f} (target >= {TARGETS[label]}: {verdict})"
        )

    sizes = [int(s) for s in args.rss_sizes.split(",") if s.strip()]
    peaks = {}
    for n in sizes:
        path = customers(args.work, n)
        peaks[n], seconds = peak_rss(model_dir, path, args.work / f"risk-rss-{n}", args.threads)
        print(f"{'score peak RSS':<24} {n:>9,} customers  {peaks[n]:>8.0f} MiB  ({seconds:.0f} s wall incl. start-up)")
    if len(sizes) == 2:
        small, large = sorted(sizes)
        growth = peaks[large] / peaks[small]
        print(f"RSS {large:,} / {small:,}: {growth:.2f}x (target <= 1.3: {'met' if growth <= 1.3 else 'NOT met'})")


if __name__ == "__main__":
    main()
