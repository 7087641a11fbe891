"""`churn risk ...`: read and look after the nightly risk table.

`top`: the morning's list, from the Delta table (default) or MongoDB. Rank here is the run's
global rank: committed rows of every shard ordered by churn_probability desc, customer_id
asc (the order each shard's own `rank` uses), so a sharded run reads like a single one.
`quarantine`: what was rejected and why. `vacuum`: retention, compaction, vacuum, checkpoint.
`migrate`: convert a manifest-era prefix to Delta, once.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from typing import Any

import click

from churn.errors import ConfigError
from churn.risk_table import flat_reasons, parse_date
from churn_jobs.context import Context, pass_context
from churn_jobs.job_exit import run_job

COLUMNS = ["customer_id", "churn_probability", "risk_band", "revenue_at_risk", "reasons"]
RISK_URI = click.option(
    "--risk-uri", default=None, help="s3://bucket/prefix or a directory (default RISK_TABLE_URI, data/risk)."
)


@click.group("risk")
def risk_group() -> None:
    """Read and look after the nightly risk table."""


def _settings(ctx: Context, risk_uri: str | None) -> Any:
    return ctx.settings.with_(risk_table_uri=risk_uri) if risk_uri else ctx.settings


def _date(text: str | None) -> dt.date | None:
    try:
        return parse_date(text) if text else None
    except ValueError as err:
        raise ConfigError(str(err)) from err


@risk_group.command("top")
@click.option("--date", "run_date", default=None, help="Run date YYYY-MM-DD (default: the latest complete run).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
@click.option(
    "--from",
    "origin",
    type=click.Choice(["object-store", "mongo"]),
    default=None,
    help="Sink to read (default: the Delta table; MongoDB with --from mongo).",
)
@RISK_URI
@pass_context
def top(ctx: Context, run_date: str | None, limit: int, fmt: str, origin: str | None, risk_uri: str | None) -> None:
    """The riskiest customers: rank, customer, probability, band, revenue at risk, reasons."""
    settings = _settings(ctx, risk_uri)
    rows, date = run_job("risk top", lambda: _top(settings, _date(run_date), limit, origin or "object-store"))
    k = int(ctx.params.section("scoring").get("top_reasons", 3))
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        header = ["rank", "customer_id", "churn_probability", "risk_band", "revenue_at_risk"]
        writer.writerow(header + list(flat_reasons(None, k)))
        for i, row in enumerate(rows, 1):
            writer.writerow([i, *(row[c] for c in header[1:]), *flat_reasons(row["reasons"], k).values()])
        return
    click.echo(f"run {date}: top {len(rows)}")
    click.echo(f"{'rank':>5}  {'customer':<14} {'prob':>6}  {'band':<7} {'revenue':>9}  reasons")
    for i, row in enumerate(rows, 1):
        reasons = ", ".join(f"{r['feature']} {r['contribution']:+.2f}" for r in (row["reasons"] or []))
        revenue = "" if row["revenue_at_risk"] is None else f"{row['revenue_at_risk']:.2f}"
        click.echo(
            f"{i:>5}  {row['customer_id']:<14} {row['churn_probability']:>6.3f}  {row['risk_band']:<7} "
            f"{revenue:>9}  {reasons}"
        )


def _top(settings: Any, date: dt.date | None, limit: int, origin: str) -> tuple[list[dict[str, Any]], str]:
    from churn_jobs import nightly_io

    if origin == "mongo":
        from churn.adapters.mongo_risk import RiskCollection

        if not settings.mongodb_uri:
            raise ConfigError("--from mongo needs MONGODB_URI")
        risk = RiskCollection(
            nightly_io.mongo(settings), settings.risk_collection, settings.quarantine_collection, nightly_io.RETRY
        )
        day = date.isoformat() if date else risk.latest()
        if day is None:
            raise ConfigError(
                f"no complete committed run in MongoDB {settings.mongodb_database}.{settings.risk_collection}"
            )
        markers = risk.markers(day)
        if not markers:
            raise ConfigError(f"no committed shard of {day} in MongoDB")
        _warn_incomplete(day, markers[0].get("shard_count", 1), sorted(m["shard"] for m in markers))
        return risk.top(day, limit), day
    tables = nightly_io.risk_tables(settings)
    date = date or tables.latest()
    if date is None:
        raise ConfigError(f"no complete committed run in the risk table {tables.uri}")
    count, present = tables.shards(date)
    _warn_incomplete(date.isoformat(), count, present)
    return top_rows(tables.read(date, columns=COLUMNS), limit), date.isoformat()


def _warn_incomplete(day: str, count: int, present: list[int]) -> None:
    missing = sorted(set(range(count)) - set(present))
    if missing:
        click.echo(f"warning: {day} is missing shard(s) {missing} of {count}: listing the committed ones", err=True)


def top_rows(table: Any, limit: int) -> list[dict[str, Any]]:
    """The `limit` riskiest rows of a date's committed rows."""
    from churn.scoring import rank_order

    return rank_order(table).slice(0, limit).to_pylist()


@risk_group.command("quarantine")
@click.option("--date", "run_date", default=None, help="Run date YYYY-MM-DD (default: the newest in the quarantine).")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True, help="First rows to show.")
@RISK_URI
@pass_context
def quarantine(ctx: Context, run_date: str | None, limit: int, risk_uri: str | None) -> None:
    """Rejected customers of a run: count by field and reason, then the first rows."""
    settings = _settings(ctx, risk_uri)
    table, day = run_job("risk quarantine", lambda: _quarantine(settings, _date(run_date)))
    click.echo(f"quarantine {day}: {table.num_rows} rejected")
    if table.num_rows:
        counts = (
            table.group_by(["field", "reason"])
            .aggregate([("field", "count")])
            .sort_by([("field_count", "descending"), ("field", "ascending")])
        )
        click.echo(f"{'count':>7}  {'field':<20} reason")
        for row in counts.to_pylist():
            click.echo(f"{row['field_count']:>7}  {row['field']:<20} {row['reason']}")
    first = table.sort_by([("shard", "ascending"), ("source_row", "ascending")]).slice(0, limit).to_pylist()
    for row in first:
        click.echo(
            json.dumps(
                {k: row[k] for k in ("customer_id", "shard", "source_row", "field", "reason")}
                | {"errors": json.loads(row["errors"]), "record": row["record"][:500]},
                default=str,
            )
        )


def _quarantine(settings: Any, date: dt.date | None) -> tuple[Any, str]:
    from churn_jobs import nightly_io

    tables = nightly_io.risk_tables(settings)
    if date is None:
        days = tables.quarantine_dates()
        if not days:
            raise ConfigError(f"the quarantine {tables.quarantine_uri} is empty")
        date = days[0]
    return tables.read_quarantine(date), date.isoformat()


@risk_group.command("vacuum")
@click.option("--keep-days", type=click.IntRange(min=0), default=None, help="Dates kept (params scoring.keep_days).")
@click.option(
    "--retention-hours",
    type=click.IntRange(min=0),
    default=168,
    show_default=True,
    help="Files unreferenced for this long are deleted (readers of older versions need them).",
)
@click.option("--dry-run/--apply", default=False, show_default=True, help="Only report what would be done.")
@RISK_URI
@pass_context
def vacuum(ctx: Context, keep_days: int | None, retention_hours: int, dry_run: bool, risk_uri: str | None) -> None:
    """Delete dates past retention, compact small files, vacuum, checkpoint (both tables).

    Run it outside the scoring window: compaction rewrites files that a running shard's
    commit may also replace, and one of the two would then have to retry."""
    from churn.scoring import ScoringConfig
    from churn_jobs import nightly_io

    settings = _settings(ctx, risk_uri)
    days = ScoringConfig.from_params(ctx.params).keep_days if keep_days is None else keep_days
    today = dt.datetime.now(dt.UTC).date()
    report = run_job(
        "risk vacuum", lambda: nightly_io.risk_tables(settings).housekeeping(days, today, retention_hours, dry_run)
    )
    click.echo(json.dumps({"keep_days": days, "dry_run": dry_run, **report}, default=str))


@risk_group.command("migrate")
@click.option("--dry-run/--apply", default=False, show_default=True, help="Only report what would be converted.")
@RISK_URI
@pass_context
def migrate(ctx: Context, dry_run: bool, risk_uri: str | None) -> None:
    """Convert a manifest-era prefix (Parquet parts + _manifest-*.json) to the Delta tables, once.

    Only committed parts are converted (those with a manifest of the date's newest shard
    count); each date's old files are deleted after its Delta commits. Safe to rerun."""
    from churn.adapters.manifest_era import migrate as convert
    from churn_jobs import nightly_io

    settings = _settings(ctx, risk_uri)

    def body() -> list[dict[str, Any]]:
        tables = nightly_io.risk_tables(settings)
        legacy = nightly_io.manifest_era(settings)
        if not legacy.present():
            raise ConfigError(f"{settings.risk_uri} holds no manifest-era parts: nothing to migrate")
        if not dry_run:
            tables.check(deadline=nightly_io.S3_CHECK_SECONDS)  # creates the Delta tables
        return convert(legacy, tables, dry_run=dry_run)

    done = run_job("risk migrate", body)
    click.echo(json.dumps({"dry_run": dry_run, "dates": done}))
