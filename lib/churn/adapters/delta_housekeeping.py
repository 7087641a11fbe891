"""Housekeeping of the risk Delta tables: drop old dates, compact, vacuum, checkpoint the log.

An operator's command (`churn risk vacuum`), not part of a run: a run only ever replaces its
own slice, so the files it leaves behind are collected here.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from churn.adapters.delta_lake import RiskTables


def housekeeping(
    tables: RiskTables, keep_days: int, today: dt.date, retention_hours: int, dry_run: bool
) -> dict[str, Any]:
    """Delete dates older than `keep_days`, compact small files, vacuum files unreferenced
    for `retention_hours`, checkpoint the log. Both tables; returns what was (or would be) done."""
    cutoff = today - dt.timedelta(days=keep_days) if keep_days else None
    return {
        name: _housekeep(tables, uri, cutoff, retention_hours, dry_run)
        for name, uri in (("risk", tables.uri), ("quarantine", tables.quarantine_uri))
    }


def _housekeep(
    tables: RiskTables, uri: str, cutoff: dt.date | None, retention_hours: int, dry_run: bool
) -> dict[str, Any]:
    table = tables.open(uri)
    done: dict[str, Any] = {"version_before": table.version()}
    if cutoff is not None:
        before = cutoff.isoformat()
        old = sorted({p["run_date"] for p in table.partitions() if p["run_date"] < before})
        done["dates_removed"] = old
        if old and not dry_run:
            tables.call("delete old dates", lambda: table.delete(f"run_date < '{before}'"), uri)
    if not dry_run:
        metrics = tables.call("compact small files", lambda: table.optimize.compact(), uri)
        done["files_compacted"] = {k: metrics.get(k) for k in ("numFilesRemoved", "numFilesAdded")}
    fresh = tables.open(uri)
    vacuumed = tables.call(
        "vacuum",
        lambda: fresh.vacuum(
            retention_hours=retention_hours, dry_run=dry_run, full=True, enforce_retention_duration=False
        ),
        uri,
    )
    done["files_vacuumed"] = len(vacuumed)
    if not dry_run:

        def checkpoint() -> None:
            fresh.create_checkpoint()
            fresh.cleanup_metadata()

        tables.call("checkpoint the log", checkpoint, uri)
    done["version_after"] = tables.open(uri).version()
    return done
