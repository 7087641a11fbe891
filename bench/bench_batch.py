"""Batch scoring benchmark: Parquet in -> committed risk table out, against raw Booster.predict.

    python bench/bench_batch.py [--customers 1000000] [--rss-sizes 500000,5000000] [--model-dir DIR]

Prints, on the same rows (each the best of --repeat runs: the machine is shared):
- raw `Booster.predict` rows/s (the encoded matrix, explicit num_threads);
- the job after start-up with reasons off and on (read + validate + score + rank + commit),
  committing through Delta (delta-rs) and through the first version's Parquet part + manifest,
  side by side in this process, and their ratio (issue 11: Delta >= 0.9x);
- the whole `score` process from outside against a fresh Python process that reads the same
  Parquet with pyarrow, codes the categories, calls Booster.predict and writes the
  probabilities to Parquet (issue 13: >= 0.8x reasons off, >= 0.5x reasons on), with each
  process's start-up (imports, model load, exit: the same commands on 10 customers) apart, wall
  and CPU seconds; with --baseline-tree, another checkout's `score` in the same interleaved runs
  (a before/after table from one run);
- the peak RSS of the real `score` command at each size (separate processes, their own ru_maxrss).
Without --model-dir a model is trained the way a user would: `churn data generate` then `churn train`.
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
TARGETS = {"reasons off": 0.8, "reasons on": 0.25}  # in-process job vs raw Booster.predict (issue 3)
PROCESS_TARGETS = {"reasons off": 0.8, "reasons on": 0.5}  # `score` vs a minimal pyarrow+LightGBM script (issue 13)
DELTA_TARGET = 0.9  # Delta commit vs the Parquet-part-plus-manifest commit (issue 11)
# The minimal script the whole `score` process is compared with: no validation, no ranking, no
# reasons, no sinks but one Parquet file of probabilities.
MINIMAL = """
import sys, numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq, lightgbm as lgb
source, booster_path, out, spec = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
booster = lgb.Booster(model_file=booster_path)
table = pq.read_table(source)
table = table.filter(pc.equal(table.column("status"), "active"))
columns = []
for name, values in spec:
    column = table.column(name)
    if values is None:
        columns.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
    else:
        codes = pc.index_in(column, value_set=pa.array(values))
        columns.append(codes.to_numpy(zero_copy_only=False).astype(np.float64))
x = np.column_stack(columns)
p = booster.predict(x, num_threads=int(sys.argv[5]))
pq.write_table(pa.table({"customer_id": table.column("customer_id"), "churn_probability": p}), out)
"""


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

    from churn.active_customers import file_chunks
    from churn.adapters import model_format
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

    from churn.active_customers import file_chunks
    from churn.adapters import model_format
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


def job(
    model_dir: Path, source: Path, out: Path, threads: int, reasons: bool, sink: str = "delta"
) -> tuple[float, float, int]:
    """The job's work after start-up (model already loaded): returns (rows/s, seconds, rows)."""
    import shutil

    from churn import active_customers, batch, scoring
    from churn.adapters import model_format
    from churn.params import load_params
    from churn.settings import Settings
    from churn_jobs import nightly_io

    shutil.rmtree(out, ignore_errors=True)
    settings = Settings.from_env({}, risk_table_uri=str(out), threads=threads)
    loaded = model_format.load(model_dir, n_threads=threads)
    model = batch.ModelRef(loaded.compiled, "churn", "bench", "", loaded.reference_profile)
    config = scoring.ScoringConfig.from_params(load_params())
    tables = nightly_io.risk_tables(settings)
    if sink == "delta":
        tables.check()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-stage-") as staging:
        run = batch.ShardRun(model, config, dt.date(2024, 1, 31), Path(staging), reasons=reasons)
        run.score_all(active_customers.file_chunks(source, loaded.compiled.schema, config.chunk_rows))
        run.tally.psi()
        rows = nightly_io.publish(settings, run, tables, None) if sink == "delta" else manifest_publish(run, out)
    seconds = time.perf_counter() - started
    return rows / seconds, seconds, rows


def manifest_publish(run: object, out: Path) -> int:
    """The first version's commit, as it was: one Parquet part (lz4, dictionaries on the few-valued
    columns), copied under run_date=.../ beside a manifest with its size and sha256, written last."""
    import hashlib
    import json
    import shutil

    import pyarrow.parquet as pq

    from churn.risk_table import RISK_SCHEMA

    part = run.staging / "part.parquet"  # type: ignore[attr-defined]
    options = {
        "compression": "lz4",
        "use_dictionary": ["risk_band", "model_name", "model_version", "model_run_id", "reasons.list.element.feature"],
    }
    written = 0
    with pq.ParquetWriter(str(part), RISK_SCHEMA, **options) as writer:
        for table in run.ranked():  # type: ignore[attr-defined]
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
            written += table.num_rows
    date_dir = out / "run_date=2024-01-31"
    date_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(part, "rb") as source, open(date_dir / ".tmp-part", "wb") as target:
        for block in iter(lambda: source.read(8 << 20), b""):
            digest.update(block)
            target.write(block)
    shutil.move(date_dir / ".tmp-part", date_dir / "part-00000.parquet")
    manifest = {"rows": written, "part": {"bytes": part.stat().st_size, "sha256": digest.hexdigest()}}
    (date_dir / "_manifest-00000.json").write_text(json.dumps(manifest))
    return written


def whole_process(
    model_dir: Path, source: Path, out: Path, threads: int, reasons: bool, repeat: int, baseline: Path | None = None
) -> dict[str, tuple[float, float]]:
    """Best (wall seconds, CPU seconds) of `score`, of the minimal script and, with `baseline`
    (a checkout's packages, see `baseline_packages`), of that checkout's `score`, on `source`;
    the runs interleaved so each command sees the same neighbours."""
    import shutil

    from churn.adapters import model_format

    compiled = model_format.load(model_dir).compiled
    booster_path = out / "booster.txt"
    out.mkdir(parents=True, exist_ok=True)
    compiled.booster.save_model(str(booster_path), num_iteration=compiled.best_iteration)
    spec = [(s.name, None) for s in compiled.schema.numeric] + [
        (s.name, list(s.values)) for s in compiled.schema.categorical
    ]
    env = {**os.environ, "CHURN_THREADS": str(threads), "LOG_FORMAT": "json"}
    flags = [
        "--source", str(source), "--model-uri", str(model_dir), "--risk-uri", str(out / "risk"),
        "--run-date", "2024-01-31", "--no-mongo-sink", "--reasons" if reasons else "--no-reasons",
    ]
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "score": ([str(BIN / "score"), *flags], env),
        "minimal": (
            [sys.executable, "-c", MINIMAL, str(source), str(booster_path), str(out / "p.parquet"), repr(spec),
             str(threads)],
            env,
        ),
    }
    if baseline is not None:
        commands["before"] = (
            [sys.executable, "-c", "from churn_jobs.nightly_job import main; main()", *flags],
            {**env, "PYTHONPATH": str(baseline)},
        )
    best = {name: (float("inf"), float("inf")) for name in commands}
    for _ in range(repeat):
        for name, (argv, environment) in commands.items():
            shutil.rmtree(out / "risk", ignore_errors=True)
            started = time.perf_counter()
            process = subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(process.pid, 0)
            if status != 0:
                raise SystemExit(f"{name} failed on {source} (status {status})")
            wall, cpu = time.perf_counter() - started, usage.ru_utime + usage.ru_stime
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def baseline_packages(tree: Path, work: Path) -> Path:
    """A directory that puts another checkout's churn and churn_jobs first on PYTHONPATH."""
    packages = work / "baseline-packages"
    packages.mkdir(parents=True, exist_ok=True)
    for name, where in (("churn", tree / "lib/churn"), ("churn_jobs", tree / "jobs"), ("churn_serve", tree / "serve")):
        link = packages / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(where.resolve(), target_is_directory=True)
    return packages


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
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        help="Another checkout (e.g. `git archive main | tar -x -C /tmp/base`): its `score` runs beside this one's.",
    )
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
        # Best of --repeat runs, Delta and manifest interleaved: this machine is shared, and a slow
        # run says more about the neighbours.
        results: dict[str, tuple[float, float, int]] = {}
        for _ in range(args.repeat):
            for sink in ("delta", "manifest"):
                got = job(model_dir, source, args.work / f"risk-{sink}", args.threads, reasons, sink)
                results[sink] = max(results.get(sink, got), got)
        rate, seconds, written = results["delta"]
        ratio = rate / raw
        verdict = "met" if ratio >= TARGETS[label] else "NOT met"
        print(
            f"{'job, ' + label:<24} {written:>9,} rows  {rate:>10,.0f} rows/s  {seconds:6.1f} s  "
            f"ratio {ratio:.2f} vs raw predict (target >= {TARGETS[label]}: {verdict})"
        )
        old_rate, old_seconds, _ = results["manifest"]
        delta_ratio = rate / old_rate
        print(
            f"{'  same, parquet+manifest':<24} {written:>9,} rows  {old_rate:>10,.0f} rows/s  {old_seconds:6.1f} s  "
            f"Delta/manifest {delta_ratio:.2f} (target >= {DELTA_TARGET}: "
            f"{'met' if delta_ratio >= DELTA_TARGET else 'NOT met'})"
        )

    tiny = customers(args.work, 10)
    baseline = baseline_packages(args.baseline_tree, args.work) if args.baseline_tree else None
    for label, reasons in (("reasons off", False), ("reasons on", True)):
        work = args.work / "process"
        runs = whole_process(model_dir, source, work, args.threads, reasons, args.repeat, baseline)
        starts = whole_process(model_dir, tiny, work, args.threads, reasons, args.repeat, baseline)
        (score_s, score_cpu), (minimal_s, minimal_cpu) = runs["score"], runs["minimal"]
        ratio = minimal_s / score_s
        verdict = "met" if ratio >= PROCESS_TARGETS[label] else "NOT met"
        print(
            f"{'score process, ' + label:<24} {score_s:6.1f} s vs minimal script {minimal_s:6.1f} s: "
            f"ratio {ratio:.2f} (target >= {PROCESS_TARGETS[label]}: {verdict}); CPU {score_cpu:.1f} s vs "
            f"{minimal_cpu:.1f} s (ratio {minimal_cpu / score_cpu:.2f}); start-up (10 customers) "
            f"{starts['score'][0]:.1f} s vs {starts['minimal'][0]:.1f} s"
        )
        if baseline is not None:
            before_s, before_cpu = runs["before"]
            print(
                f"{'  before: ' + args.baseline_tree.name:<24} {before_s:6.1f} s: ratio {minimal_s / before_s:.2f}; "
                f"CPU {before_cpu:.1f} s (ratio {minimal_cpu / before_cpu:.2f}); start-up {starts['before'][0]:.1f} s"
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
