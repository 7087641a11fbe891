"""The risk table as Delta Lake tables on a local directory: one commit per shard replaces
exactly its slice, a failed shard leaves nothing visible, other engines read only committed rows."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import socket
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from churn.adapters.delta_lake import RiskTables
from churn.adapters.manifest_era import ManifestEra, filesystem, migrate
from churn.errors import ConfigError, UnavailableService
from churn.retries import RetryPolicy
from churn.risk_table import QUARANTINE_SCHEMA, RISK_SCHEMA

DAY = dt.date(2024, 1, 31)
FAST = RetryPolicy(attempts=2, backoff=0.01)


def rows(ids: list[str], probability: float, shard: int = 0, count: int = 1, day: dt.date = DAY) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "customer_id": ids,
            "run_date": [day] * n,
            "churn_probability": [probability] * n,
            "churn_prediction": [probability > 0.5] * n,
            "risk_band": ["high"] * n,
            "rank": list(range(1, n + 1)),
            "revenue_at_risk": [1.0] * n,
            "reasons": [None] * n,
            "model_name": ["churn"] * n,
            "model_version": ["1"] * n,
            "model_run_id": ["r"] * n,
            "scored_at": [dt.datetime(2024, 1, 31, tzinfo=dt.UTC)] * n,
            "shard": pa.array([shard] * n, pa.int32()),
            "shard_count": pa.array([count] * n, pa.int32()),
        },
        schema=RISK_SCHEMA,
    )


def quarantined(ids: list[str], shard: int = 0, count: int = 1) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "customer_id": ids,
            "run_date": [DAY] * n,
            "source_row": list(range(n)),
            "field": ["tenure"] * n,
            "reason": ["out_of_bounds"] * n,
            "errors": ["[]"] * n,
            "record": ["{}"] * n,
            "quarantined_at": [dt.datetime(2024, 1, 31, tzinfo=dt.UTC)] * n,
            "shard": pa.array([shard] * n, pa.int32()),
            "shard_count": pa.array([count] * n, pa.int32()),
        },
        schema=QUARANTINE_SCHEMA,
    )


def publish(tables: RiskTables, table: pa.Table, shard: int = 0, count: int = 1, day: dt.date = DAY) -> int:
    return tables.publish(day, shard, count, lambda: iter([table]), {"rows": table.num_rows})


@pytest.fixture
def tables(tmp_path: Path) -> RiskTables:
    made = RiskTables(str(tmp_path / "risk"), retry=FAST)
    made.check()
    return made


def ids_of(table: pa.Table) -> list[str]:
    return sorted(table.column("customer_id").to_pylist())


def test_published_shard_reads_back_and_its_commit_names_the_shard(tables: RiskTables) -> None:
    publish(tables, rows(["C1", "C2"], 0.9))

    assert ids_of(tables.read(DAY)) == ["C1", "C2"]
    assert tables.latest() == DAY
    commit = DeltaTable(tables.uri).history(1)[0]
    assert (commit["churn.run_date"], commit["churn.shard"], commit["churn.rows"]) == ("2024-01-31", "0", "2")


def test_rerun_of_the_same_date_and_shard_replaces_instead_of_duplicating(tables: RiskTables) -> None:
    publish(tables, rows(["C1", "C2"], 0.9))

    publish(tables, rows(["C1", "C2"], 0.4))
    table = tables.read(DAY)

    assert table.num_rows == 2
    assert table.column("churn_probability").to_pylist() == [0.4, 0.4]


def test_a_shard_rerun_replaces_its_own_slice_and_never_touches_another_shard(tables: RiskTables) -> None:
    publish(tables, rows(["A1", "A2"], 0.9, shard=0, count=2), shard=0, count=2)
    publish(tables, rows(["B1"], 0.8, shard=1, count=2), shard=1, count=2)

    publish(tables, rows(["B2"], 0.7, shard=1, count=2), shard=1, count=2)  # B1 is no longer active

    assert ids_of(tables.read(DAY)) == ["A1", "A2", "B2"]
    assert tables.shards(DAY) == (2, [0, 1])


def test_a_shard_that_fails_before_its_commit_leaves_nothing_visible(tables: RiskTables) -> None:
    publish(tables, rows(["C1", "C2"], 0.9))
    version = DeltaTable(tables.uri).version()

    def dies_mid_stream() -> Any:
        yield rows(["C1"], 0.1)
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError, match="killed while writing"):
        tables.publish(DAY, 0, 1, dies_mid_stream, {})

    assert DeltaTable(tables.uri).version() == version
    assert tables.read(DAY).column("churn_probability").to_pylist() == [0.9, 0.9]


def test_latest_is_the_newest_date_with_every_shard_committed(tables: RiskTables) -> None:
    older, newer = dt.date(2024, 1, 30), dt.date(2024, 2, 1)
    publish(tables, rows(["C1"], 0.9, day=older), day=older)
    publish(tables, rows(["C1"], 0.9, shard=0, count=2, day=newer), shard=0, count=2, day=newer)

    assert tables.latest() == older
    publish(tables, rows(["C2"], 0.9, shard=1, count=2, day=newer), shard=1, count=2, day=newer)
    assert tables.latest() == newer


@pytest.mark.parametrize(("before", "after"), [(3, 1), (1, 3), (3, 2)])
def test_a_rerun_with_another_shard_count_never_lists_a_customer_twice(
    tables: RiskTables, before: int, after: int
) -> None:
    customers = [f"C{i}" for i in range(12)]
    for shard in range(before):
        mine = customers[shard::before]
        publish(tables, rows(mine, 0.9, shard, before), shard, before)

    for shard in range(after):
        publish(tables, rows(customers[shard::after], 0.3, shard, after), shard, after)
        listed = tables.read(DAY).column("customer_id").to_pylist()
        assert len(listed) == len(set(listed))  # at every step, not only at the end

    table = tables.read(DAY)
    assert ids_of(table) == sorted(customers)
    assert set(table.column("shard_count").to_pylist()) == {after}
    assert tables.latest() == DAY


def test_quarantine_is_its_own_table_outside_the_risk_tables_files(tables: RiskTables) -> None:
    publish(tables, rows(["C1"], 0.9))
    tables.publish_quarantine(DAY, 0, 1, lambda: iter([quarantined(["BAD"])]), {})

    risk_files = [Path(f).relative_to(tables.uri).as_posix() for f in DeltaTable(tables.uri).file_uris()]
    assert risk_files and not any(f.startswith("_quarantine") for f in risk_files)
    assert ids_of(tables.read_quarantine(DAY)) == ["BAD"]
    report = tables.housekeeping(0, DAY, retention_hours=0, dry_run=False)  # vacuums the risk table
    assert report["risk"]["files_vacuumed"] == 0
    assert ids_of(tables.read_quarantine(DAY)) == ["BAD"]

    tables.publish_quarantine(DAY, 0, 1, lambda: iter([]), {})  # a clean rerun clears it
    assert tables.read_quarantine(DAY).num_rows == 0


def test_other_engines_read_exactly_the_committed_rows_from_the_log(tables: RiskTables) -> None:
    publish(tables, rows(["C1", "C2"], 0.9))
    publish(tables, rows(["C1", "C2", "C3"], 0.5))  # the first files stay on disk until vacuum
    on_disk = [p for p in Path(tables.uri).rglob("*.parquet") if "_delta_log" not in p.parts]

    committed = ds.dataset(DeltaTable(tables.uri).file_uris(), format="parquet").to_table()

    assert len(on_disk) == 2
    assert ids_of(committed) == ["C1", "C2", "C3"]


def test_each_commit_logs_min_max_of_the_columns_that_prune_and_decide_conflicts(tables: RiskTables) -> None:
    publish(tables, rows(["C2", "C1", "C3"], 0.7, shard=1, count=2))

    (add,) = pa.table(DeltaTable(tables.uri).get_add_actions(flatten=True)).to_pylist()

    assert (add["min.customer_id"], add["max.customer_id"]) == ("C1", "C3")
    assert (add["min.churn_probability"], add["max.churn_probability"]) == (0.7, 0.7)
    assert (add["min.rank"], add["max.rank"], add["min.shard"], add["max.shard_count"]) == (1, 3, 1, 2)
    assert add["null_count.customer_id"] == 0


def test_a_table_with_another_schema_is_refused_naming_the_columns(tmp_path: Path) -> None:
    uri = str(tmp_path / "risk")
    write_deltalake(uri, pa.table({"customer_id": ["C1"], "score": [0.5], "run_date": [DAY]}))

    with pytest.raises(ConfigError, match="missing columns churn_probability.*unexpected columns score"):
        RiskTables(uri, retry=FAST).check()


def test_an_unreachable_store_fails_after_bounded_retries_naming_the_uri_and_attempts() -> None:
    with socket.socket() as probe:  # a port nobody listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "max_retries": "0", "connect_timeout": "1s",
    }
    tables = RiskTables("s3://bucket/risk", options, retry=FAST)

    with pytest.raises(UnavailableService, match=r"risk table s3://bucket/risk: could not .* after 2 attempts"):
        tables.check()


def test_unknown_uri_schemes_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RISK_TABLE_URI"):
        filesystem("gs://bucket/prefix")


# -- the manifest era -------------------------------------------------------------------------


def _manifest_era(root: Path, shard: int, count: int, ids: list[str], committed: bool = True) -> None:
    """Write one shard the way the first version did (part, quarantine, manifest last)."""
    day_dir = root / f"run_date={DAY.isoformat()}"
    day_dir.mkdir(parents=True, exist_ok=True)
    part = day_dir / f"part-{shard:05d}.parquet"
    pq.write_table(rows(ids, 0.6, shard, count).drop_columns(["shard", "shard_count"]), part)
    qdir = root / "_quarantine" / f"run_date={DAY.isoformat()}"
    qdir.mkdir(parents=True, exist_ok=True)
    qpart = qdir / f"part-{shard:05d}.parquet"
    pq.write_table(quarantined([f"BAD{shard}"]).drop_columns(["shard", "shard_count"]), qpart)
    if committed:
        manifest = {
            "run_date": DAY.isoformat(), "shard": shard, "shard_count": count, "committed_at": "2024-01-31T03:00:00",
            "part": {"path": part.relative_to(root).as_posix(), "bytes": part.stat().st_size},
            "quarantine": {"path": qpart.relative_to(root).as_posix(), "bytes": qpart.stat().st_size},
        }
        (day_dir / f"_manifest-{shard:05d}.json").write_text(json.dumps(manifest))


def test_a_manifest_era_prefix_is_refused_with_how_to_migrate(tmp_path: Path) -> None:
    root = tmp_path / "risk"
    _manifest_era(root, 0, 1, ["C1"])
    fs, path = filesystem(str(root))

    with pytest.raises(ConfigError, match="churn risk migrate"):
        RiskTables(str(root), retry=FAST).check(legacy=ManifestEra(fs, path).present)


def test_migrate_converts_only_committed_parts_and_removes_the_old_files(tmp_path: Path) -> None:
    root = tmp_path / "risk"
    _manifest_era(root, 0, 2, ["C1", "C2"])
    _manifest_era(root, 1, 2, ["C3"])
    _manifest_era(root, 2, 3, ["STALE"], committed=False)  # a crashed part: never counted
    fs, path = filesystem(str(root))
    legacy = ManifestEra(fs, path)
    tables = RiskTables(str(root), retry=FAST)
    tables.check()

    done = migrate(legacy, tables)

    # 3 files for each committed shard, 2 for the crashed one; Delta's own files are kept.
    assert done == [{"run_date": "2024-01-31", "shards": 2, "rows": 3, "files_removed": 8}]
    assert ids_of(tables.read(DAY)) == ["C1", "C2", "C3"]
    assert ids_of(tables.read_quarantine(DAY)) == ["BAD0", "BAD1"]
    assert tables.latest() == DAY and not legacy.present()
    assert not list(root.rglob("_manifest-*.json"))


# -- housekeeping -----------------------------------------------------------------------------


def test_housekeeping_drops_dates_past_retention_and_vacuums_replaced_files(tables: RiskTables) -> None:
    old, recent = dt.date(2023, 1, 1), dt.date(2024, 1, 30)
    publish(tables, rows(["C1"], 0.9, day=old), day=old)
    publish(tables, rows(["C1"], 0.9, day=recent), day=recent)
    publish(tables, rows(["C1"], 0.8, day=recent), day=recent)  # leaves one replaced file

    preview = tables.housekeeping(30, DAY, retention_hours=0, dry_run=True)
    report = tables.housekeeping(30, DAY, retention_hours=0, dry_run=False)

    assert preview["risk"]["dates_removed"] == ["2023-01-01"]
    assert tables.run_dates() == [recent]
    assert report["risk"]["files_vacuumed"] >= 2  # the replaced file and the deleted date's
    assert tables.read(recent).column("churn_probability").to_pylist() == [0.8]


def test_a_year_of_nightly_commits_loads_from_a_checkpoint_not_from_every_commit(tables: RiskTables) -> None:
    start = dt.date(2023, 1, 1)
    days = [start + dt.timedelta(days=i) for i in range(400)]
    for day in days:
        publish(tables, rows(["C1", "C2"], 0.5, day=day), day=day)

    log_dir = Path(tables.uri) / "_delta_log"
    last = json.loads((log_dir / "_last_checkpoint").read_text())["version"]
    table = DeltaTable(tables.uri)
    replayed = [p for p in log_dir.glob("*.json") if int(p.stem) > last]
    assert table.version() - last < 10 and len(replayed) < 10  # a reader replays at most 9 commits
    assert tables.run_dates()[0] == days[-1] and len(tables.run_dates()) == 400
    assert tables.latest() == days[-1]


# -- concurrency ------------------------------------------------------------------------------


def _commit_one(uri: str, shard: int, count: int, barrier: Any) -> None:
    tables = RiskTables(uri, retry=RetryPolicy(attempts=5, backoff=0.05))
    table = rows([f"S{shard}-{i}" for i in range(50)], 0.5, shard, count)
    barrier.wait()
    publish(tables, table, shard, count)


def test_shard_processes_committing_at_the_same_moment_all_land(tables: RiskTables) -> None:
    publish(tables, rows(["OLD"], 0.9))  # a run with another shard count: every commit removes it
    spawn = multiprocessing.get_context("spawn")  # delta-rs' runtime does not survive fork
    barrier = spawn.Barrier(4)
    workers = [spawn.Process(target=_commit_one, args=(tables.uri, s, 4, barrier)) for s in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    table = tables.read(DAY)
    assert table.num_rows == 200 and "OLD" not in table.column("customer_id").to_pylist()
    assert tables.shards(DAY) == (4, [0, 1, 2, 3])
