"""The nightly drift report, written beside the risk table once a shard has published.

    RISK_TABLE_URI/_reports/DATE/drift.html            the run's report (every shard's counts merged)
    RISK_TABLE_URI/_reports/DATE/shard-I-of-N.json     each shard's counts (what drift.html is built from)
    RISK_TABLE_URI/_reports/DATE/shard-I-of-N.html     each shard's own report (sharded runs only)

The shard that finds every shard's counts present writes drift.html (two finishing together
write the same page). A report is a diagnostic: failing to write one logs a warning and
never fails the run that has already published the morning's list.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from churn.errors import Interrupted
from churn.retries import one_line
from churn.settings import Settings

log = logging.getLogger("churn.score")


def publish(settings: Settings, run: Any, table_uri: str) -> str | None:
    """Write this shard's drift report (and the run's, when it is the last shard); the URI to read."""
    try:
        return _publish(settings, run, table_uri)
    except Interrupted:
        raise
    except Exception as err:  # the boundary of a diagnostic: the list is published, keep it that way
        log.warning("drift report not written", extra={"error": f"{type(err).__name__}: {one_line(err)}"})
        return None


def _publish(settings: Settings, run: Any, table_uri: str) -> str:
    from churn import drift_report

    day, shard, count = run.run.run_date.isoformat(), run.run.shard, run.run.shard_count
    model = f"{run.model.name} {run.model.version}"
    counts = drift_report.from_tally(day, shard, count, model, run.tally, run.tally.unseen)
    store = report_store(settings, table_uri)
    store.put(f"{day}/shard-{shard}-of-{count}.json", counts.to_json().encode())
    if count == 1:
        return store.put(f"{day}/drift.html", drift_report.render(counts).encode())
    own = store.put(f"{day}/shard-{shard}-of-{count}.html", drift_report.render(counts).encode())
    pattern = re.compile(rf"{re.escape(day)}/shard-\d+-of-{count}\.json")
    names = [name for name in store.names(day) if pattern.fullmatch(name)]
    if len(names) < count:
        log.info("drift report: this shard's is written, the run's waits for the other shards",
                 extra={"report": own, "shards_reported": len(names), "shard_count": count})
        return own
    merged = drift_report.merge([drift_report.DriftCounts.from_json(store.get(name)) for name in names])
    return store.put(f"{day}/drift.html", drift_report.render(merged).encode())


def report_store(settings: Settings, table_uri: str) -> Any:
    """The `_reports` folder of the risk table at `table_uri`, with score's bounded S3 timeouts."""
    from churn.adapters.manifest_era import filesystem
    from churn.adapters.report_store import FOLDER, ReportStore
    from churn_jobs.nightly_io import arrow_s3_options

    fs, root = filesystem(table_uri, **arrow_s3_options(settings, table_uri, attempts=3))
    return ReportStore(fs, f"{root}/{FOLDER}", f"{table_uri.rstrip('/')}/{FOLDER}")
