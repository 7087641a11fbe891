"""The Delta risk table on the real S3 test server: conditional writes, concurrent shard
commits, every engine reading exactly the committed rows, and the refusals (another schema,
the old layout, an endpoint that never answers)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from deltalake import DeltaTable, write_deltalake
from score_env import (  # noqa: F401  (fixtures)
    COMPARED,
    DAY,
    SCORE,
    active_customers_fixture,
    by_id,
    delta_options,
    env_fixture,
    error_lines,
    mongo_rows,
    ok,
    registered_model_fixture,
    run_churn,
    run_score,
    s3_rows,
    tables,
)

import services
from churn.adapters.delta_lake import RiskTables
from churn.retries import RetryPolicy
from churn.risk_table import RISK_SCHEMA

TODAY = dt.date.fromisoformat(DAY)


def _refuses_second_put_if_absent(server: services.S3Server) -> tuple[bool, int]:
    """(a second PUT with If-None-Match: * is refused, winners among 16 racing ones)."""
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=server.endpoint_url, region_name=server.region,
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
    )
    bucket = f"probe-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="once", Body=b"1", IfNoneMatch="*")
    try:
        s3.put_object(Bucket=bucket, Key="once", Body=b"2", IfNoneMatch="*")
        refused = False
    except ClientError as err:
        refused = err.response["ResponseMetadata"]["HTTPStatusCode"] in (409, 412)
    winners = []

    def race(i: int) -> None:
        try:
            s3.put_object(Bucket=bucket, Key="race", Body=str(i).encode(), IfNoneMatch="*")
            winners.append(i)
        except ClientError:
            pass

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return refused, len(winners)


def test_both_s3_test_servers_honour_the_conditional_writes_delta_commits_rely_on(
    s3_server: services.S3Server, tmp_path: Path
) -> None:
    assert s3_server.backend == "seaweedfs", "the concurrency tests below must run on SeaweedFS"
    moto = services.start_moto(tmp_path / "moto")
    try:
        found = {"seaweedfs": _refuses_second_put_if_absent(s3_server), "moto": _refuses_second_put_if_absent(moto)}
    finally:
        moto.stop()

    assert found == {"seaweedfs": (True, 1), "moto": (True, 1)}


def _rows(ids: list[str], shard: int, count: int) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "customer_id": ids, "run_date": [TODAY] * n, "churn_probability": [0.5] * n,
            "churn_prediction": [True] * n, "risk_band": ["high"] * n, "rank": list(range(1, n + 1)),
            "revenue_at_risk": [1.0] * n, "reasons": [None] * n, "model_name": ["churn"] * n,
            "model_version": ["1"] * n, "model_run_id": ["r"] * n,
            "scored_at": [dt.datetime(2024, 1, 31, tzinfo=dt.UTC)] * n,
            "shard": pa.array([shard] * n, pa.int32()), "shard_count": pa.array([count] * n, pa.int32()),
        },
        schema=RISK_SCHEMA,
    )


def _commit_shard(uri: str, options: dict[str, str], shard: int, count: int, barrier: Any) -> None:
    risk = RiskTables(uri, options, RetryPolicy(attempts=5, backoff=0.2))
    table = _rows([f"S{shard}-{i}" for i in range(100)], shard, count)
    barrier.wait()
    risk.publish(TODAY, shard, count, lambda: iter([table]), {"rows": 100})


@pytest.mark.parametrize("shards", [4])
def test_shard_processes_committing_together_on_s3_all_land(
    s3_server: services.S3Server, s3_bucket: str, shards: int
) -> None:
    uri = f"s3://{s3_bucket}/risk"
    risk = RiskTables(uri, delta_options(s3_server))
    risk.check()
    risk.publish(TODAY, 0, 1, lambda: iter([_rows(["OLD"], 0, 1)]), {})  # another shard count: each commit drops it
    spawn = multiprocessing.get_context("spawn")  # delta-rs' runtime does not survive a fork
    barrier = spawn.Barrier(shards)
    workers = [
        spawn.Process(target=_commit_shard, args=(uri, delta_options(s3_server), s, shards, barrier))
        for s in range(shards)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)

    assert [w.exitcode for w in workers] == [0] * shards
    table = risk.read(TODAY)
    assert table.num_rows == 100 * shards and "OLD" not in table.column("customer_id").to_pylist()
    assert risk.shards(TODAY) == (shards, list(range(shards)))
    history = DeltaTable(uri, storage_options=delta_options(s3_server)).history()
    assert sorted(h["churn.shard"] for h in history if h.get("churn.shard_count") == str(shards)) == [
        str(s) for s in range(shards)
    ]


def _engines(s3_server: services.S3Server, bucket: str) -> dict[str, list[str]]:
    """The customer ids of the date as three engines read the table: ours (delta-rs), pyarrow's
    dataset over the files the Delta log lists, and DuckDB's SQL over that dataset."""
    uri = f"s3://{bucket}/risk"
    fs = pafs.S3FileSystem(
        endpoint_override=s3_server.endpoint_host, scheme="http", region=s3_server.region,
        access_key=s3_server.access_key, secret_key=s3_server.secret_key,
    )
    files = [u.removeprefix("s3://") for u in DeltaTable(uri, storage_options=delta_options(s3_server)).file_uris()]
    dataset = ds.dataset(
        files, filesystem=fs, format="parquet", partition_base_dir=f"{bucket}/risk",
        partitioning=ds.partitioning(pa.schema([("run_date", pa.date32())]), flavor="hive"),
    )
    via_duckdb = duckdb.sql(f"SELECT customer_id FROM dataset WHERE run_date = DATE '{DAY}'").fetchall()
    return {
        "delta-rs": sorted(s3_rows(s3_server, bucket).column("customer_id").to_pylist()),
        "pyarrow": sorted(dataset.to_table(filter=ds.field("run_date") == TODAY).column("customer_id").to_pylist()),
        "duckdb": sorted(row[0] for row in via_duckdb),
    }


def test_every_engine_reads_exactly_the_committed_rows_through_a_killed_shard_and_a_rerun(
    env: dict[str, str], mongo_db: Any, s3_server: services.S3Server, s3_bucket: str
) -> None:
    ok(run_score(env))
    first = _engines(s3_server, s3_bucket)
    # The next night's customers: 40 left (no longer active), 25 joined.
    leaving = [d["customer_id"] for d in mongo_db["customers"].find({}, {"customer_id": 1}).limit(40)]
    mongo_db["customers"].update_many({"customer_id": {"$in": leaving}}, {"$set": {"status": "cancelled"}})
    clean = {"status": "active", "customer_id": {"$in": first["duckdb"]}}  # copies of customers that scored
    joined = [dict(doc, customer_id=f"N{i:03d}") for i, doc in
              enumerate(mongo_db["customers"].find(clean, {"_id": 0}).limit(25))]
    mongo_db["customers"].insert_many(joined)

    # Killed as soon as its quarantine commit lands: just before, or while, the risk table commits.
    quarantine = DeltaTable(f"s3://{s3_bucket}/risk/_quarantine", storage_options=delta_options(s3_server))
    version = quarantine.version()
    process = subprocess.Popen(
        [SCORE, "--run-date", DAY], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        quarantine.update_incremental()
        if quarantine.version() > version:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed = _engines(s3_server, s3_bucket)

    ok(run_score(env))
    final = _engines(s3_server, s3_bucket)

    for seen in (first, killed, final):
        assert seen["delta-rs"] == seen["pyarrow"] == seen["duckdb"]  # every engine agrees, always
        assert len(set(seen["duckdb"])) == len(seen["duckdb"])  # one row per customer
    assert killed["duckdb"] in (first["duckdb"], final["duckdb"])  # the old run or the new one, never a mix
    assert not set(leaving) & set(final["duckdb"]) and {f"N{i:03d}" for i in range(25)} <= set(final["duckdb"])
    # MongoDB ends with the same slice semantics: the customers who left are gone there too.
    mongo = mongo_rows(mongo_db)
    assert by_id(mongo, [*COMPARED, "rank"]) == by_id(s3_rows(s3_server, s3_bucket), [*COMPARED, "rank"])


def test_a_table_with_another_schema_at_the_uri_is_exit_3_naming_the_columns(
    env: dict[str, str], s3_server: services.S3Server, s3_bucket: str
) -> None:
    write_deltalake(
        f"s3://{s3_bucket}/risk", pa.table({"customer_id": ["C1"], "score": [0.5]}),
        storage_options=delta_options(s3_server),
    )

    result = run_score(env, "--no-mongo-sink")

    assert result.returncode == 3, result.stdout[-2000:]
    (line,) = error_lines(result)
    assert "another schema" in line and "missing columns run_date" in line and "unexpected columns score" in line


def _old_layout(s3_server: services.S3Server, bucket: str, ids: list[str]) -> None:
    """One committed shard of 2024-01-30 written the way the first version did."""
    fs = pafs.S3FileSystem(
        endpoint_override=s3_server.endpoint_host, scheme="http", region=s3_server.region,
        access_key=s3_server.access_key, secret_key=s3_server.secret_key,
    )
    part = f"{bucket}/risk/run_date=2024-01-30/part-00000.parquet"
    table = _rows(ids, 0, 1).drop_columns(["shard", "shard_count"])
    table = table.set_column(1, "run_date", pa.array([dt.date(2024, 1, 30)] * len(ids)))
    pq.write_table(table, part, filesystem=fs)
    manifest = {
        "run_date": "2024-01-30", "shard": 0, "shard_count": 1, "committed_at": "2024-01-30T03:00:00",
        "part": {"path": "run_date=2024-01-30/part-00000.parquet", "bytes": fs.get_file_info(part).size},
    }
    with fs.open_output_stream(f"{bucket}/risk/run_date=2024-01-30/_manifest-00000.json") as out:
        out.write(json.dumps(manifest).encode())


def test_the_old_layout_is_refused_naming_the_migration_and_then_migrated_once(
    env: dict[str, str], s3_server: services.S3Server, s3_bucket: str
) -> None:
    _old_layout(s3_server, s3_bucket, ["OLD1", "OLD2"])

    refused = run_score(env, "--no-mongo-sink")
    migrated = run_churn(env, "risk", "migrate")
    listed = run_churn(env, "risk", "top", "--date", "2024-01-30", "--format", "csv")

    assert refused.returncode == 3 and "churn risk migrate" in error_lines(refused)[0]
    ok(migrated)
    assert json.loads(migrated.stdout.splitlines()[-1])["dates"][0]["rows"] == 2
    ok(listed)
    assert [line.split(",")[1] for line in listed.stdout.splitlines()[1:]] == ["OLD1", "OLD2"]
    ok(run_score(env, "--no-mongo-sink"))  # the prefix is a Delta table now


def test_an_endpoint_that_accepts_and_never_answers_fails_the_check_in_about_30_s(env: dict[str, str]) -> None:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(hole.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    started = time.monotonic()
    try:
        result = run_score(
            {**env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{hole.getsockname()[1]}"}, "--no-mongo-sink",
            timeout=150,
        )
    finally:
        hole.close()
        for conn in held:
            conn.close()
    elapsed = time.monotonic() - started

    assert result.returncode == 1, result.stdout[-2000:]
    (line,) = error_lines(result)
    assert "failed to answer within" in line and "bounded at 30 s" in line and env["RISK_TABLE_URI"] in line
    assert elapsed < 75  # ~30 s check plus the process's start-up on a busy machine
