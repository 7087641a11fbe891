"""`churn predict`: score a local Parquet/CSV file into another, every row back.

No server and no registry alias needed: `--model-uri DIR` (or CHURN_MODEL_URI, or the
SageMaker model directory) scores with a model directory; only without one does it use
`models:/NAME@production`, through the one ModelSource every command shares.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from churn.errors import ConfigError
from churn_jobs.context import Context, pass_context
from churn_jobs.job_exit import run_job

log = logging.getLogger("churn.predict")
PROGRESS_SECONDS = 10.0


@click.command("predict")
@click.option("--source", required=True, type=click.Path(), help="Parquet/CSV file (or a directory of them) to score.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="File to write; its extension picks the format: .parquet or .csv.")
@click.option("--reasons", type=click.IntRange(min=0), default=None,
              help="Top reasons per scored row, with values and words (default: params scoring.top_reasons; 0: none).")
@click.option("--model-uri", default=None,
              help="A model directory or models:/NAME@ALIAS (default: CHURN_MODEL_URI, /opt/ml/model, "
              "else models:/churn@production).")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="Rows per chunk (params: scoring.chunk_rows).")
@pass_context
def predict_command(
    ctx: Context, source: str, out: str, reasons: int | None, model_uri: str | None, chunk_rows: int | None
) -> None:
    """Score a file: every row back (scored, or rejected with its reasons), in input order.

    Each scored row gets its probability, prediction, risk band and top reasons (feature, the
    customer's value, contribution, and in words); a rejected row gets its field and reason.
    Prints a JSON summary (rows, scored, rejected, out) on stdout.
    """
    summary = run_job("predict", lambda: predict(ctx, source, out, reasons, model_uri, chunk_rows),
                      settings=ctx.settings)
    click.echo(json.dumps(summary))


def predict(
    ctx: Context, source: str, out: str, reasons: int | None, model_uri: str | None, chunk_rows: int | None
) -> dict[str, Any]:
    from churn import files, scoring
    from churn.predictions import Predictor
    from churn_jobs import clients

    files.output_format(out)  # refuse a name we cannot write before loading anything
    sources = files.source_files(source, "--source")
    if any(p.resolve() == Path(out).resolve() for p in sources):
        raise ConfigError(f"--out {out} is the --source file: write the predictions elsewhere")
    settings = ctx.settings.with_(model_uri=model_uri) if model_uri else ctx.settings  # inside run_job
    config = scoring.ScoringConfig.from_params(ctx.params)
    loaded = clients.model_source(settings, settings.threads).load()
    log.info("model loaded", extra={"model": loaded.name, "version": loaded.version, "source": loaded.source})
    schema = loaded.compiled.schema
    run = scoring.RunInfo(
        dt.datetime.now(dt.UTC).date(), dt.datetime.now(dt.UTC), loaded.name, str(loaded.version), loaded.run_id
    )
    predictor = Predictor(loaded.compiled, config, run, config.top_reasons if reasons is None else reasons)
    progress = Progress(_known_rows(sources))
    offset = 0
    with files.TableWriter(out, predictor.schema) as writer:
        for chunk in files.table_chunks(
            source,
            chunk_rows or config.chunk_rows,
            schema=schema,
            columns=[schema.id_field, *schema.feature_names],
            required=[schema.id_field, *schema.feature_names],
            what="--source",
        ):
            predicted = predictor.chunk(chunk, offset)
            writer.write(predicted.table)
            offset += chunk.num_rows
            progress.add(chunk.num_rows, predicted.scored, predicted.rejected)
    summary = {
        "rows": progress.rows,
        "scored": progress.scored,
        "rejected": progress.rejected,
        "out": str(Path(out).resolve()),
        "model_version": str(loaded.version),
        "seconds": round(time.monotonic() - progress.started, 2),
    }
    log.info("predictions written", extra=summary)
    if progress.rejected:
        log.warning(
            f"{progress.rejected} of {progress.rows} rows were rejected: they are in the output with status "
            "'rejected' and their field and reason",
            extra={"rejected": progress.rejected, "rows": progress.rows},
        )
    return summary


def _known_rows(sources: list[Path]) -> int | None:
    """Rows to expect, when every file says so cheaply (Parquet metadata); None with a CSV."""
    if any(p.suffix != ".parquet" for p in sources):
        return None
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sources)


class Progress:
    """Counts, and every PROGRESS_SECONDS a log line with the rate (and the share done, when known)."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.rows = self.scored = self.rejected = 0
        self.started = self.last = time.monotonic()

    def add(self, rows: int, scored: int, rejected: int) -> None:
        self.rows += rows
        self.scored += scored
        self.rejected += rejected
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            extra: dict[str, Any] = {
                "rows": self.rows,
                "scored": self.scored,
                "rejected": self.rejected,
                "rows_per_s": round(self.rows / max(now - self.started, 1e-9)),
            }
            if self.total:
                extra["total"] = self.total
                extra["done"] = f"{self.rows / self.total:.0%}"
            log.info("predict progress", extra=extra)
