"""The object-store commit protocol on a local filesystem: commit, replace, ignore the uncommitted."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from churn.adapters.object_store import RiskStore, filesystem
from churn.errors import ConfigError, UnavailableService
from churn.risk_table import RISK_SCHEMA

DAY = dt.date(2024, 1, 31)


def _part(tmp: Path, name: str, ids: list[str], probability: float) -> Path:
    n = len(ids)
    table = pa.table(
        {
            "customer_id": ids,
            "run_date": [DAY] * n,
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
        },
        schema=RISK_SCHEMA,
    )
    path = tmp / name
    pq.write_table(table, path)
    return path


@pytest.fixture
def store(tmp_path: Path) -> RiskStore:
    fs, root = filesystem(str(tmp_path / "risk"))
    return RiskStore(fs, root)


def test_published_shard_reads_back_with_a_manifest_naming_rows_and_checksum(store: RiskStore, tmp_path: Path) -> None:
    part = _part(tmp_path, "a.parquet", ["C1", "C2"], 0.9)

    manifest = store.publish(DAY, 0, 1, part, None, {"rows": 2})
    table, manifests = store.read(DAY)

    assert table.column("customer_id").to_pylist() == ["C1", "C2"]
    assert manifests[0]["rows"] == 2 and len(manifest["part"]["sha256"]) == 64
    assert store.latest() == DAY


def test_rerun_of_the_same_date_and_shard_replaces_instead_of_duplicating(store: RiskStore, tmp_path: Path) -> None:
    store.publish(DAY, 0, 1, _part(tmp_path, "a.parquet", ["C1", "C2"], 0.9), None, {"rows": 2})

    store.publish(DAY, 0, 1, _part(tmp_path, "b.parquet", ["C1", "C2"], 0.4), None, {"rows": 2})
    table, _ = store.read(DAY)

    assert table.num_rows == 2
    assert table.column("churn_probability").to_pylist() == [0.4, 0.4]
    assert sorted(p.name for p in Path(store.date_dir(DAY)).iterdir()) == ["_manifest-00000.json", "part-00000.parquet"]


def test_a_part_without_manifest_is_ignored_and_the_date_is_not_complete(store: RiskStore, tmp_path: Path) -> None:
    store.publish(DAY, 0, 2, _part(tmp_path, "a.parquet", ["C1"], 0.9), None, {"rows": 1})
    # Shard 1 crashed after its part landed but before its manifest: not committed.
    Path(store.part_path(DAY, 1)).write_bytes(_part(tmp_path, "b.parquet", ["C2"], 0.8).read_bytes())

    table, manifests = store.read(DAY)

    assert table.column("customer_id").to_pylist() == ["C1"]
    assert [m["shard"] for m in manifests] == [0]
    assert store.latest() is None  # one of two shards committed: no complete run to read by default


def test_a_part_replaced_after_its_manifest_is_not_trusted(store: RiskStore, tmp_path: Path) -> None:
    store.publish(DAY, 0, 1, _part(tmp_path, "a.parquet", ["C1", "C2"], 0.9), None, {"rows": 2})
    Path(store.part_path(DAY, 0)).write_bytes(_part(tmp_path, "b.parquet", ["C1", "C2", "C3", "C4"], 0.8).read_bytes())

    table, _ = store.read(DAY)

    assert table.num_rows == 0


def test_latest_is_the_newest_fully_committed_date(store: RiskStore, tmp_path: Path) -> None:
    older, newer = dt.date(2024, 1, 30), dt.date(2024, 2, 1)
    store.publish(older, 0, 1, _part(tmp_path, "a.parquet", ["C1"], 0.9), None, {"rows": 1})
    store.publish(newer, 0, 2, _part(tmp_path, "b.parquet", ["C1"], 0.9), None, {"rows": 1})

    assert store.latest() == older
    store.publish(newer, 1, 2, _part(tmp_path, "c.parquet", ["C2"], 0.9), None, {"rows": 1})
    assert store.latest() == newer


def test_rerun_with_fewer_shards_hides_the_old_shards(store: RiskStore, tmp_path: Path) -> None:
    store.publish(DAY, 0, 2, _part(tmp_path, "a.parquet", ["C1"], 0.9), None, {"rows": 1})
    store.publish(DAY, 1, 2, _part(tmp_path, "b.parquet", ["C2"], 0.9), None, {"rows": 1})

    store.publish(DAY, 0, 1, _part(tmp_path, "c.parquet", ["C1", "C2"], 0.3), None, {"rows": 2})
    table, manifests = store.read(DAY)

    assert [m["shard_count"] for m in manifests] == [1]
    assert table.num_rows == 2


def test_quarantine_sits_beside_the_table_but_outside_the_dataset(store: RiskStore, tmp_path: Path) -> None:
    quarantine = tmp_path / "q.parquet"
    pq.write_table(pa.table({"customer_id": ["BAD"]}), quarantine)

    manifest = store.publish(DAY, 0, 1, _part(tmp_path, "a.parquet", ["C1"], 0.9), quarantine, {"rows": 1})

    assert manifest["quarantine"]["path"] == "_quarantine/run_date=2024-01-31/part-00000.parquet"
    assert json.loads(Path(store.manifest_path(DAY, 0)).read_text())["quarantine"]["bytes"] > 0
    dataset = ds.dataset(
        store.root,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("run_date", pa.date32())]), flavor="hive"),
    )
    assert [Path(f).relative_to(store.root).as_posix() for f in dataset.files] == [
        "run_date=2024-01-31/part-00000.parquet"
    ]
    assert dataset.to_table().column("customer_id").to_pylist() == ["C1"]


def test_an_unreachable_store_fails_after_bounded_retries(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = RiskStore(pafs.LocalFileSystem(), str(blocker / "risk"), attempts=2, backoff=0.01)

    with pytest.raises(UnavailableService, match="could not reach the risk store"):
        store.check()


def test_unknown_uri_schemes_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RISK_TABLE_URI"):
        filesystem("gs://bucket/prefix")
