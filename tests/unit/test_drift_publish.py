"""Writing the nightly drift report beside a local risk table: the run's page, shards merging
into it, Delta housekeeping leaving it alone, and a report that cannot be written costing a
warning, never the run."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from churn import generator, scoring
from churn.adapters.delta_lake import RiskTables
from churn.adapters.model_format import LoadedModel
from churn.batch import ModelRef, ShardRun
from churn.params import Params
from churn.settings import Settings
from churn_jobs import drift

DAY = dt.date(2024, 1, 31)


@pytest.fixture(scope="module")
def dirty() -> pa.Table:
    """900 customers, some rejected for unknown contracts or internet services."""
    return pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=900, seed=8, dirty_rate=0.04)))


def shard_run(loaded_model: LoadedModel, params: Params, data: pa.Table, staging: Path, shard: int = 0,
              count: int = 1) -> ShardRun:
    model = ModelRef(loaded_model.compiled, "churn", "7", "run-abc", loaded_model.reference_profile)
    run = ShardRun(model, scoring.ScoringConfig.from_params(params), DAY, staging, shard=shard, shard_count=count)
    staging.mkdir(parents=True, exist_ok=True)
    run.score_all([data])
    return run


def injected_unseen(data: pa.Table) -> int:
    kinds = pc.fill_null(data.column("dirty_kind"), "")
    return sum(1 for k in kinds.to_pylist() if k in ("reject:unknown_contract", "reject:unknown_internet_service"))


def test_a_run_writes_its_report_beside_the_risk_table_and_housekeeping_keeps_it(
    loaded_model: LoadedModel, params: Params, dirty: pa.Table, tmp_path: Path
) -> None:
    table = tmp_path / "risk"
    tables = RiskTables(str(table))
    tables.check()
    run = shard_run(loaded_model, params, dirty, tmp_path / "staging")
    tables.publish(DAY, 0, 1, run.ranked, {})

    uri = drift.publish(Settings(), run, tables.uri)

    assert uri == f"{table}/_reports/2024-01-31/drift.html"
    page = Path(uri).read_text()
    assert f"scored {run.tally.scored:,}" in page and "churn 7" in page
    shown = dict(re.findall(r'data-feature="([^"]+)" data-psi="([^"]+)"', page))
    assert {k: float(v) for k, v in shown.items()} == pytest.approx(run.tally.psi()[0], abs=0)
    counts = json.loads((table / "_reports/2024-01-31/shard-0-of-1.json").read_text())
    assert sum(sum(v.values()) for v in counts["unseen"].values()) == injected_unseen(dirty) > 0

    tables.housekeeping(keep_days=0, today=DAY, retention_hours=0, dry_run=False)  # vacuum: every unreferenced file

    assert Path(uri).is_file() and tables.read(DAY).num_rows == run.tally.scored


def test_the_last_shard_to_report_writes_the_runs_page_from_every_shards_counts(
    loaded_model: LoadedModel, params: Params, dirty: pa.Table, tmp_path: Path
) -> None:
    table = str(tmp_path / "risk")
    halves = [dirty.slice(0, 450), dirty.slice(450)]
    runs = [shard_run(loaded_model, params, half, tmp_path / f"s{i}", shard=i, count=2)
            for i, half in enumerate(halves)]

    first = drift.publish(Settings(), runs[0], table)
    second = drift.publish(Settings(), runs[1], table)

    assert first == f"{table}/_reports/2024-01-31/shard-0-of-2.html"
    assert second == f"{table}/_reports/2024-01-31/drift.html"
    page = Path(second).read_text()
    assert "(the whole run)" in page and f"read {dirty.num_rows:,}" in page
    assert f"scored {runs[0].tally.scored + runs[1].tally.scored:,}" in page


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failed_run(
    loaded_model: LoadedModel, params: Params, dirty: pa.Table, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = tmp_path / "risk"
    table.mkdir()
    (table / "_reports").write_text("a file where the folder should be")
    run = shard_run(loaded_model, params, dirty.slice(0, 100), tmp_path / "staging")

    with caplog.at_level(logging.WARNING, logger="churn.score"):
        assert drift.publish(Settings(), run, str(table)) is None

    assert any(r.getMessage() == "drift report not written" and r.error for r in caplog.records)  # type: ignore[attr-defined]
