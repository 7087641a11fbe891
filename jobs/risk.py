"""`churn risk top`: the morning's list, from the object store or MongoDB.

Rank here is the run's global rank: rows of every committed shard ordered by
churn_probability desc, customer_id asc (the order each shard's own `rank` uses), so a
sharded run reads exactly like a single-process one.
"""

from __future__ import annotations

import csv
import sys
from typing import Any

import click

from churn.risk_table import flat_reasons, parse_date
from churn_jobs.boundary import run_job
from churn_jobs.cli import Context, pass_context

COLUMNS = ["customer_id", "churn_probability", "risk_band", "revenue_at_risk", "reasons"]


@click.group("risk")
def risk_group() -> None:
    """Read the nightly risk table."""


@risk_group.command("top")
@click.option("--date", "run_date", default=None, help="Run date YYYY-MM-DD (default: the latest committed run).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
@click.option(
    "--from",
    "origin",
    type=click.Choice(["object-store", "mongo"]),
    default=None,
    help="Sink to read (default: the object store; MongoDB with --from mongo).",
)
@click.option("--risk-uri", default=None, help="s3://bucket/prefix or a directory (default RISK_TABLE_URI, data/risk).")
@pass_context
def top(ctx: Context, run_date: str | None, limit: int, fmt: str, origin: str | None, risk_uri: str | None) -> None:
    """The riskiest customers: rank, customer, probability, band, revenue at risk, reasons."""
    settings = ctx.settings.with_(risk_table_uri=risk_uri) if risk_uri else ctx.settings
    rows, date = run_job("risk top", lambda: _top(settings, run_date, limit, origin or "object-store"))
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


def _top(settings: Any, run_date: str | None, limit: int, origin: str) -> tuple[list[dict[str, Any]], str]:
    from churn.errors import ConfigError

    try:
        date = parse_date(run_date) if run_date else None
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if origin == "mongo":
        from churn.adapters.mongo import RiskCollection
        from churn_jobs import score_io

        if not settings.mongodb_uri:
            raise ConfigError("--from mongo needs MONGODB_URI")
        risk = RiskCollection(score_io.mongo(settings), settings.risk_collection, settings.quarantine_collection)
        day = date.isoformat() if date else risk.latest()
        if day is None:
            raise ConfigError("no committed run in MongoDB")
        return risk.top(day, limit), day
    from churn_jobs import score_io

    store = score_io.risk_store(settings)
    date = date or store.latest()
    if date is None:
        raise ConfigError(f"no committed run under {settings.risk_uri}")
    return top_rows(store, date, limit), date.isoformat()


def top_rows(store: Any, run_date: Any, limit: int) -> list[dict[str, Any]]:
    """The `limit` riskiest rows across committed shards, reading one part at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churn.scoring import rank_order

    best: pa.Table | None = None
    for manifest in store.manifests(run_date):
        part = pq.read_table(f"{store.root}/{manifest['part']['path']}", filesystem=store.fs, columns=COLUMNS)
        merged = part if best is None else pa.concat_tables([best, part])
        best = rank_order(merged).slice(0, limit)
    return [] if best is None else best.to_pylist()
