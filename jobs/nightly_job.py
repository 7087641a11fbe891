"""`score` / `churn score`: the nightly batch job (a Kubernetes CronJob, an Indexed Job when sharded).

Reads active customers (MongoDB when MONGODB_URI is set, else a local Parquet/CSV file),
scores them with the production model, publishes the risk table (object store: S3 or a
local directory; MongoDB `churn_risk` when configured), and pushes metrics. Model: the
`--model-uri`/CHURN_MODEL_URI (a `models:/` URI or a model directory), else the model
directory SageMaker mounts (`$SAGEMAKER_BASE_DIR/model`) when it holds one, else
`models:/churn@production` from MLflow. Exit 3 when there is nothing sensible to do (no
production model, bad settings, too many rejected rows), 1 for outages after retries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import click

from churn import logs, tempdirs
from churn.errors import ConfigError, Interrupted, TooManyRejects
from churn.params import Params, load_params
from churn.settings import Settings
from churn_jobs.job_exit import quick_exit, run_job

log = logging.getLogger("churn.score")
STAGING_PREFIX = "churn-score-"


def _options(command: Any) -> Any:
    options = [
        click.option("--run-date", default=None, help="Run date YYYY-MM-DD (default: today, UTC); reruns replace it."),
        click.option(
            "--source",
            type=click.Path(),
            default=None,
            help="Parquet/CSV file or directory (default: MongoDB if MONGODB_URI, else data/customers.parquet).",
        ),
        click.option(
            "--model-uri",
            default=None,
            help="models:/NAME@ALIAS or a model directory "
            "(default: /opt/ml/model if it holds one, else models:/churn@production).",
        ),
        click.option(
            "--risk-uri", default=None, help="s3://bucket/prefix or a directory (default RISK_TABLE_URI, data/risk)."
        ),
        click.option(
            "--object-store/--no-object-store",
            default=True,
            show_default=True,
            help="Publish the risk table to the object store.",
        ),
        click.option(
            "--mongo-sink/--no-mongo-sink",
            default=None,
            help="Upsert into MongoDB churn_risk (default: on when MONGODB_URI is set).",
        ),
        click.option("--reasons/--no-reasons", default=True, show_default=True, help="Compute the top reasons."),
        click.option("--shard-index", type=int, default=None, help="This shard (default JOB_COMPLETION_INDEX, 0)."),
        click.option("--shard-count", type=int, default=None, help="Shards in the run (default SCORE_SHARD_COUNT, 1)."),
        click.option(
            "--chunk-rows",
            type=click.IntRange(min=1),
            default=None,
            help="Rows per chunk (params: scoring.chunk_rows).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("score")
@_options
@click.pass_context
def score_command(ctx: click.Context, **flags: Any) -> None:
    """Score every active customer and publish the risk table (the nightly job)."""
    from churn_jobs.context import Context

    context = ctx.find_object(Context)
    assert context is not None, "churn score runs under the churn group"
    _run(context.settings, flags)


@click.command("score", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--params", "params_path", type=click.Path(dir_okay=False), default=None, help="params.yaml to use.")
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), default=None)
@_options
def _main(params_path: str | None, log_format: str | None, **flags: Any) -> None:
    settings = run_job("settings", lambda: Settings.from_env(params_path=params_path, log_format=log_format))
    logs.configure(settings.log_format)
    _run(settings, flags)


def main() -> None:
    """The `score` console script: one Settings object, built here from the environment and flags.
    The process ends without the interpreter's teardown (see job_exit.quick_exit)."""
    try:
        _main(prog_name="score")
    except SystemExit as done:
        quick_exit(done.code)
    quick_exit(0)


def _run(settings: Settings, flags: dict[str, Any]) -> None:
    settings = run_job(
        "settings",
        lambda: settings.with_(
            **{
                k: v
                for k, v in {
                    "shard_index": flags["shard_index"],
                    "shard_count": flags["shard_count"],
                    "risk_table_uri": flags["risk_uri"],
                    "model_uri": flags["model_uri"],
                }.items()
                if v is not None
            }
        ),
    )
    run_job("settings", settings.check)
    failure = settings.opt_ml / "output" / "failure" if settings.opt_ml.is_dir() else None
    summary = run_job("score", lambda: _with_failure_metrics(settings, flags), failure_file=failure)
    click.echo(json.dumps(summary, default=str))


def _metrics_sink(settings: Settings) -> Any:
    from churn.adapters.pushgateway import MetricsSink

    textfile = settings.textfile
    if settings.shard_count > 1:
        path = Path(textfile)
        textfile = str(path.with_name(f"{path.stem}-shard-{settings.shard_index}{path.suffix}"))
    return MetricsSink(
        settings.shard_index, gateway=settings.pushgateway_url, textfile=textfile, environment=settings.environment
    )


def _with_failure_metrics(settings: Settings, flags: dict[str, Any]) -> dict[str, Any]:
    """The run; on any failure (SIGTERM included) push the failure marker before the boundary exits."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return score(settings, load_params(settings.params_path), flags)
    except BaseException:
        _metrics_sink(settings).failure()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (Kubernetes stopping the pod) as an exception: `finally` blocks remove the
    staging directory and the failure metric is pushed, within the grace period."""
    raise Interrupted("terminated by SIGTERM before the run finished; nothing was committed by this attempt")


def score(settings: Settings, params: Params, flags: dict[str, Any]) -> dict[str, Any]:
    """One shard of one run date, start to finish; returns the summary printed at the end."""
    from churn import batch, scoring
    from churn.adapters.pushgateway import RunMetrics, describe
    from churn.risk_table import parse_date
    from churn_jobs import drift, nightly_io, score_progress

    try:
        run_date = parse_date(flags["run_date"]) if flags["run_date"] else dt.datetime.now(dt.UTC).date()
    except ValueError as err:
        raise ConfigError(str(err)) from err
    config = scoring.ScoringConfig.from_params(params)
    chunk_rows = flags["chunk_rows"] or config.chunk_rows
    use_mongo = bool(settings.mongodb_uri) if flags["mongo_sink"] is None else flags["mongo_sink"]
    if use_mongo and not settings.mongodb_uri:
        raise ConfigError("--mongo-sink needs MONGODB_URI")
    if not flags["object_store"] and not use_mongo:
        raise ConfigError("no sink: enable the object store or MongoDB")
    shard, count = settings.shard_index, settings.shard_count
    where = {"run_date": run_date.isoformat(), "shard": shard, "shard_count": count}
    log.info("scoring run starting", extra=where)
    tempdirs.clean_stale(STAGING_PREFIX)

    # Reach every service before hours of work, each within bounded time.
    db = nightly_io.mongo(settings) if (settings.mongodb_uri and (use_mongo or not flags["source"])) else None
    risk = None
    if use_mongo and db is not None:
        from churn.adapters.mongo_risk import RiskCollection

        risk = RiskCollection(db, settings.risk_collection, settings.quarantine_collection, nightly_io.RETRY)
        risk.ensure_indexes()
    tables = nightly_io.risk_tables(settings) if flags["object_store"] else None
    if tables is not None:
        nightly_io.check_risk_tables(settings, tables)
    model = nightly_io.resolve_model(settings)
    log.info("model resolved", extra={"model": model.name, "version": model.version, "run_id": model.run_id})
    json_default = None
    if flags["source"] is None and settings.mongodb_uri:
        from churn.adapters.mongo import extended_json

        json_default = extended_json

    with tempdirs.scoped(STAGING_PREFIX) as staging:
        progress = score_progress.Progress(shard)
        run = batch.ShardRun(
            model,
            config,
            run_date,
            staging,
            reasons=flags["reasons"],
            progress=progress.update,
            shard=shard,
            shard_count=count,
            json_default=json_default,
        )
        try:
            run.score_all(nightly_io.chunks(settings, model.compiled.schema, flags["source"], chunk_rows, db))
        except TooManyRejects:
            # Publish why before failing: the quarantine is what the morning's reader needs.
            nightly_io.publish_quarantine(settings, run, tables, risk)
            raise
        progress.close(run.tally)
        if run.tally.read == 0:
            log.warning("no active customers in this shard's source: publishing an empty table", extra=where)
        psi = run.tally.psi()  # before publishing: a failure here must not leave a half-reported run
        written = nightly_io.publish(settings, run, tables, risk)
        report = drift.publish(settings, run, tables.uri) if tables is not None else None  # never fails the run
    run.tally.written = written
    metrics = RunMetrics(
        rows_read=run.tally.read,
        rows_scored=run.tally.scored,
        rows_rejected=run.tally.rejected,
        rows_written=written,
        duration_seconds=run.seconds,
        bands=dict(run.tally.bands),
        high_band=config.band_names[0],
        buckets=batch.bucket_counts(run.tally),
        score_sum=run.tally.score_sum,
        feature_psi=psi[0] if psi else {},
        score_psi=psi[1] if psi else None,
        reject_share=run.tally.reject_share,
        unseen_share=run.tally.unseen_share(),
        model={"model_name": model.name, "model_version": model.version, "run_id": model.run_id},
    )
    _metrics_sink(settings).success(metrics)
    summary = {
        **where,
        **describe(metrics),
        "rows_duplicate": run.duplicates,
        "model_version": model.version,
        "risk_table": tables.uri if tables else None,
        "mongodb": f"{settings.mongodb_database}.{settings.risk_collection}" if use_mongo else None,
        "drift_report": report,
    }
    log.info("scoring run finished", extra=summary)
    return summary
