"""`churn explain`: why a customer got their score, in words, with the numbers alongside.

`churn explain CUSTOMER_ID [--date D]` reads the customer's row from the risk table (the
Delta table, or MongoDB with `--from mongo`): score, band, rank and the top reasons it
stored. The table keeps only those (feature and contribution, no values), so `--full`
re-scores the customer's current record from the source the nightly job reads (MongoDB
when MONGODB_URI is set, else `--source` or data/customers.parquet) with the model found the
usual way, and says whether that reproduces the stored score (same model version, same
probability) or why not. `churn explain --record JSON` explains any record with the model.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
import pyarrow as pa

from churn.errors import ConfigError, InvalidInput
from churn.settings import Settings
from churn_jobs.context import Context, pass_context
from churn_jobs.job_exit import run_job


@click.command("explain")
@click.argument("customer_id", required=False)
@click.option("--date", "run_date", default=None, help="Run date YYYY-MM-DD (default: the latest complete run).")
@click.option("--record", default=None, metavar="JSON",
              help="Explain this record instead (a JSON object; @FILE reads it from a file, - from stdin).")
@click.option("--full", is_flag=True, help="CUSTOMER_ID: re-score the customer's current record for every feature.")
@click.option("--from", "origin", type=click.Choice(["object-store", "mongo"]), default="object-store",
              show_default=True, help="Risk table to read: the Delta table or MongoDB churn_risk.")
@click.option("--source", type=click.Path(), default=None,
              help="--full: customers file (default: MongoDB if MONGODB_URI, else data/customers.parquet).")
@click.option("--model-uri", default=None, help="Model for --full and --record (default: as `score` finds it).")
@click.option("--risk-uri", default=None, help="s3://bucket/prefix or a directory (default RISK_TABLE_URI, data/risk).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_context
def explain_command(ctx: Context, customer_id: str | None, run_date: str | None, record: str | None, full: bool,
                    origin: str, source: str | None, model_uri: str | None, risk_uri: str | None, fmt: str) -> None:
    """Explain a customer's score in words: from the risk table (CUSTOMER_ID) or a model (--record)."""
    given = {k: v for k, v in {"model_uri": model_uri, "risk_table_uri": risk_uri}.items() if v}
    settings = run_job("settings", lambda: ctx.settings.with_(**given))
    if (customer_id is None) == (record is None):
        run_job("explain", _usage)
    if record is not None:
        story = run_job("explain", lambda: _record(ctx, settings, record), settings=settings)
        _emit(story, fmt)
        return
    assert customer_id is not None
    story = run_job("explain", lambda: _stored(ctx, settings, customer_id, run_date, origin, full, source))
    if not full or "row" not in story:
        _emit(story, fmt)
        return
    if fmt == "text":  # the stored part first: it stands even if re-scoring then fails
        _emit(story, fmt)
    row = story["row"]
    rescored = run_job("explain", lambda: _rescore(ctx, settings, row, source), settings=settings)
    _emit(rescored if fmt == "text" else {**story, **rescored}, fmt)


def _usage() -> None:
    raise ConfigError("give a CUSTOMER_ID (from the risk table) or --record JSON (from a model), not both or neither")


def _emit(story: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({k: v for k, v in story.items() if k != "lines"}, default=str))
    else:
        for line in story["lines"]:
            click.echo(line)


# -- the risk table -----------------------------------------------------------------------------


def _stored(ctx: Context, settings: Settings, customer_id: str, run_date: str | None, origin: str, full: bool,
            source: str | None) -> dict[str, Any]:
    from churn import narrative
    from churn.explanation import stored_effects
    from churn.risk_table import parse_date
    from churn.scoring import ScoringConfig

    try:
        wanted = parse_date(run_date) if run_date else None
    except ValueError as err:
        raise ConfigError(str(err)) from err
    row, rejected, day, where = (_from_mongo if origin == "mongo" else _from_delta)(settings, customer_id, wanted)
    if row is None and rejected:
        return {"customer_id": customer_id, "run_date": day, "status": "rejected", "rejected": rejected,
                "lines": narrative.rejected_lines(customer_id, day, rejected)}
    if row is None:
        raise InvalidInput(
            f"customer {customer_id!r} has no row in {where} for {day}, nor a rejected record: not an active "
            "customer that night, another id, or another date (--date)"
        )
    config = ScoringConfig.from_params(ctx.params)
    hint = None if full else f"churn explain {customer_id} --date {day} --full (re-scores the customer's current " \
        "record with the model)"
    lines = narrative.stored_lines(row, ctx.params.schema, config.reason_threshold, hint)
    effects = [e.to_dict() for e in stored_effects(row.get("reasons"), ctx.params.schema)]
    return {"customer_id": customer_id, "run_date": day, "status": "scored", "row": row, "stored_reasons": effects,
            "lines": lines}


def _from_delta(settings: Settings, customer_id: str, day: dt.date | None) -> tuple[Any, list[Any], str, str]:
    from churn_jobs import nightly_io

    tables = nightly_io.risk_tables(settings)
    day = day or tables.latest()
    if day is None:
        raise ConfigError(f"no complete committed run in the risk table {tables.uri}")
    rows = tables.customer(day, customer_id).to_pylist()
    rejected = [] if rows else tables.customer(day, customer_id, quarantine=True).to_pylist()
    return (rows[0] if rows else None), rejected, day.isoformat(), f"the risk table {tables.uri}"


def _from_mongo(settings: Settings, customer_id: str, day: dt.date | None) -> tuple[Any, list[Any], str, str]:
    from churn.adapters.mongo_risk import RiskCollection
    from churn_jobs import nightly_io

    if not settings.mongodb_uri:
        raise ConfigError("--from mongo needs MONGODB_URI")
    risk = RiskCollection(nightly_io.mongo(settings), settings.risk_collection, settings.quarantine_collection,
                          nightly_io.RETRY)
    text = day.isoformat() if day else risk.latest()
    if text is None:
        where = f"{settings.mongodb_database}.{settings.risk_collection}"
        raise ConfigError(f"no complete committed run in MongoDB {where}")
    row = risk.customer(text, customer_id)
    rejected = [] if row else risk.quarantined(text, customer_id)
    return row, rejected, text, f"MongoDB {settings.mongodb_database}.{settings.risk_collection}"


# -- re-scoring ---------------------------------------------------------------------------------


def _rescore(ctx: Context, settings: Settings, row: dict[str, Any], source: str | None) -> dict[str, Any]:
    """The customer's current record explained with the model found now, compared with the stored row."""
    from churn import narrative

    loaded = _model(settings)
    schema = loaded.compiled.schema
    customer_id = str(row["customer_id"])
    record, where = _source_record(settings, schema, customer_id, source)
    if record is None:
        raise InvalidInput(f"customer {customer_id!r} is not in {where} (now): cannot re-score for every feature")
    explained = _explained(ctx, loaded, record, f"customer {customer_id}'s record in {where}")
    notes = narrative.comparison(row, explained, str(loaded.version))
    lines = ["", f"full explanation: the record in {where} now, model {loaded.name} version {loaded.version}",
             *explained.lines(), "", *notes]
    return {"full": explained.to_dict(), "model_version": str(loaded.version), "record_source": where,
            "notes": notes, "lines": lines}


def _source_record(settings: Settings, schema: Any, customer_id: str, source: str | None) -> tuple[Any, str]:
    fields = [schema.id_field, *schema.feature_names]
    if source is None and settings.mongodb_uri:
        from churn.adapters.mongo import CustomerStore
        from churn_jobs import nightly_io

        store = CustomerStore(nightly_io.mongo(settings), settings.customers_collection, nightly_io.RETRY)
        where = f"MongoDB {settings.mongodb_database}.{settings.customers_collection}"
        found = store.find(schema.id_field, customer_id, fields)
        return ([found] if found else None), where
    import pyarrow.compute as pc

    from churn import files

    path = Path(source) if source else Path(settings.data_dir, "customers.parquet")
    for chunk in files.table_chunks(path, 100_000, schema=schema, columns=fields, required=fields, what="--source"):
        ids = pc.utf8_trim_whitespace(chunk.column(schema.id_field).cast(pa.string()))
        hit = chunk.filter(pc.fill_null(pc.equal(ids, customer_id), False))
        if hit.num_rows:
            return hit.slice(0, 1), str(path)
    return None, str(path)


# -- a record -----------------------------------------------------------------------------------


def _record(ctx: Context, settings: Settings, text: str) -> dict[str, Any]:
    record = _parse_record(text)
    loaded = _model(settings)
    schema = loaded.compiled.schema
    record.setdefault(schema.id_field, "(no id)")
    explained = _explained(ctx, loaded, [record], "the record")
    lines = [f"model {loaded.name} version {loaded.version}", *explained.lines()]
    return {"model_version": str(loaded.version), **explained.to_dict(), "lines": lines}


def _parse_record(text: str) -> dict[str, Any]:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as err:
            raise ConfigError(f"--record {text}: cannot read the file: {err.strerror}") from err
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInput(f"--record is not JSON: {err}") from err
    if not isinstance(record, dict):
        raise InvalidInput(f"--record must be one JSON object of a customer's fields, not a {type(record).__name__}")
    return record


# -- shared -------------------------------------------------------------------------------------


def _model(settings: Settings) -> Any:
    from churn_jobs import clients

    return clients.model_source(settings, settings.threads).load()


def _explained(ctx: Context, loaded: Any, data: Any, what: str) -> Any:
    """The validated record explained; InvalidInput naming each failing field when it does not validate."""
    from dataclasses import replace

    import numpy as np

    from churn.explanation import explain
    from churn.narrative import problem_text
    from churn.scoring import ScoringConfig
    from churn.validation import validate

    result = validate(data, loaded.compiled.schema)
    if result.rejected.num_rows:
        problems = json.loads(result.rejected.column("errors")[0].as_py())
        raise InvalidInput(f"{what} does not validate: {'; '.join(problem_text(p) for p in problems)}",
                           errors=problems)
    (explained,) = explain(loaded.compiled, result.clean)
    config = ScoringConfig.from_params(ctx.params)
    band = config.band_names[int(config.band_index(np.array([explained.probability]))[0])]
    return replace(explained, band=band)
