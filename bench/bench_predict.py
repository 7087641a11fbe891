"""`churn predict` throughput against the nightly job's core, side by side in one process.

    python bench/bench_predict.py [--customers 200000] [--chunk-rows 100000] [--model-dir DIR]

Prints rows/s (each the best of --repeat runs: the machine is shared) of, on the same chunks:
- the nightly core: validate + scoring.score with reasons for customers over the threshold;
- predict's rows (churn.predictions.Predictor.chunk) with 0 and with 3 reasons for EVERY row
  (values and words included), and its ratio to the nightly core;
- the words for a file: the column-wise reason_columns against one Effect object per reason
  (explanation.explain, what `churn explain --record` uses), on the same rows.
Without --model-dir a model is trained in process on generated customers with params.yaml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
REPO = Path(__file__).resolve().parents[1]


def best(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import pyarrow as pa

    from churn import generator, scoring
    from churn.adapters import model_format
    from churn.explanation import explain, reason_columns
    from churn.params import load_params
    from churn.predictions import Predictor
    from churn.profile import feature_arrays
    from churn.validation import validate

    params = load_params(REPO / "params.yaml").with_overrides({"model.n_jobs": str(args.threads)})
    model_dir = args.model_dir
    if model_dir is None:
        from churn import training
        from churn.model import to_frame

        labelled = pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=20_000, seed=1)))
        splits = training.split(validate(labelled, params.schema, require_label=True).clean, params)
        outcome = training.train(params, splits.train, splits.valid)
        model_dir = Path(tempfile.mkdtemp(prefix="bench-predict-")) / "model"
        model_format.save(outcome.model, model_dir, to_frame(splits.valid, params.schema),
                          {"reference_profile": outcome.reference_profile})
    compiled = model_format.load(model_dir, n_threads=args.threads).compiled
    config = scoring.ScoringConfig.from_params(params)
    data = pa.concat_tables(generator.generate(generator.GeneratorConfig(
        n_customers=args.customers, seed=3, labelled_share=0.0, dirty_rate=0.01)))
    chunks = [data.slice(i, args.chunk_rows) for i in range(0, data.num_rows, args.chunk_rows)]
    run = scoring.RunInfo(dt.date(2024, 1, 31), dt.datetime.now(dt.UTC), "churn", "bench", "")
    compiled.explainer()  # build the TreeSHAP tables once, outside every timing

    def nightly() -> None:
        for chunk in chunks:
            scoring.score(validate(chunk, compiled.schema).clean, compiled, config, run, reasons=True)

    def predict(k: int) -> Callable[[], None]:
        predictor = Predictor(compiled, config, run, k)
        return lambda: [predictor.chunk(chunk, 0) for chunk in chunks]

    n = data.num_rows
    print(f"{n:,} customers, chunks of {args.chunk_rows:,}, {args.threads} LightGBM threads, best of {args.repeat} "
          "(a shared 2-core machine: compare the ratios)", file=sys.stderr)
    base = best(args.repeat, nightly)
    print(f"nightly core (validate + score, reasons over the threshold): {n / base:>10,.0f} rows/s")
    for k in (0, 3):
        seconds = best(args.repeat, predict(k))
        print(f"predict rows, {k} reasons for every row:                  {n / seconds:>10,.0f} rows/s "
              f"({base / seconds:.2f}x the nightly core)")

    sample = validate(data.slice(0, 20_000), compiled.schema).clean
    features = feature_arrays(sample, compiled.schema)
    columns = best(args.repeat, lambda: reason_columns(compiled, features, 3))
    objects = best(args.repeat, lambda: explain(compiled, sample))
    m = sample.num_rows
    print(f"words, column-wise (reason_columns, 3 reasons):            {m / columns:>10,.0f} rows/s")
    print(f"words, an object per reason (explain, every feature):      {m / objects:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
