"""The nightly `score` job as Kubernetes runs it: a subprocess against real MongoDB, S3,
Pushgateway, Prometheus and MLflow servers."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
import urllib.request
import uuid
from typing import Any

import pyarrow as pa
from prometheus_client.parser import text_string_to_metric_families
from score_env import (  # noqa: F401  (fixtures)
    CHURN,
    COMPARED,
    DAY,
    SCORE,
    active_customers_fixture,
    by_id,
    env_fixture,
    error_lines,
    injected_rejects,
    mongo_rows,
    ok,
    registered_model_fixture,
    run_churn,
    run_score,
    s3_rows,
    tables,
)

import services
from churn.scoring import rank_order


def test_mongo_to_s3_and_churn_risk_agree_row_for_row_with_quarantine_and_metrics(
    env: dict[str, str],
    mongo_db: Any,
    active_customers: pa.Table,
    s3_server: services.S3Server,
    s3_bucket: str,
    pushgateway_server: services.PushgatewayServer,
    prometheus_server: services.PrometheusServer,
) -> None:
    started = time.time()
    ok(run_score(env))

    s3 = s3_rows(s3_server, s3_bucket)
    mongo = mongo_rows(mongo_db)
    rejected = injected_rejects(active_customers)
    assert rejected, "the generator should have injected rejects"
    assert s3.num_rows == active_customers.num_rows - len(rejected) == mongo.num_rows
    assert by_id(s3, [*COMPARED, "rank"]) == by_id(mongo, [*COMPARED, "rank"])
    assert s3.column("rank").to_pylist() != [] and rank_order(s3).column("rank").to_pylist() == list(
        range(1, s3.num_rows + 1)
    )

    quarantine = list(mongo_db["churn_quarantine"].find({"run_date": DAY}, {"_id": 0}))
    assert sorted(q["customer_id"] for q in quarantine) == rejected
    assert all(q["reason"] and q["field"] and q["errors"] for q in quarantine)
    s3_quarantine = tables(s3_server, s3_bucket).read_quarantine(dt.date.fromisoformat(DAY))
    assert sorted(s3_quarantine.column("customer_id").to_pylist()) == rejected

    with urllib.request.urlopen(f"{pushgateway_server.url}/metrics", timeout=5) as response:
        samples = {
            (s.name, s.labels.get("band", "")): s.value
            for f in text_string_to_metric_families(response.read().decode())
            for s in f.samples
            if s.labels.get("job") == "churn_scoring" and s.labels.get("shard") == "0"
        }
    assert samples[("churn_scoring_rows_scored", "")] == s3.num_rows
    assert samples[("churn_scoring_rows_rejected", "")] == len(rejected)
    assert sum(v for (name, _), v in samples.items() if name == "churn_scoring_risk_band_customers") == s3.num_rows
    query = 'churn_scoring_last_success_timestamp_seconds{job="churn_scoring",shard="0"}'
    deadline = time.monotonic() + 30
    while True:
        result = prometheus_server.wait_for(query, timeout=30)
        if float(result[0]["value"][1]) >= started or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert float(result[0]["value"][1]) >= started


def test_rerun_after_a_kill_mid_publish_leaves_one_row_per_customer_and_identical_scores(
    env: dict[str, str],
    mongo_db: Any,
    active_customers: pa.Table,
    s3_server: services.S3Server,
    s3_bucket: str,
) -> None:
    ok(run_score(env))
    first_s3, first_mongo = s3_rows(s3_server, s3_bucket), mongo_rows(mongo_db)

    # Second attempt: killed once it has uncommitted MongoDB (it is then upserting rows).
    process = subprocess.Popen(
        [SCORE, "--run-date", DAY, "--chunk-rows", "50"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while mongo_db["churn_risk_runs"].count_documents({"run_date": DAY}) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert mongo_db["churn_risk_runs"].count_documents({"run_date": DAY}) == 0  # a reader sees no commit
    assert s3_rows(s3_server, s3_bucket).num_rows == first_s3.num_rows  # the last committed table is still whole
    # MongoDB's reader honours the markers: none of the killed attempt's rows are listed.
    listed = run_churn(env, "risk", "top", "--from", "mongo", "--date", DAY)
    assert listed.returncode == 3 and "no committed shard of 2024-01-31" in listed.stdout + listed.stderr

    ok(run_score(env))

    again_s3, again_mongo = s3_rows(s3_server, s3_bucket), mongo_rows(mongo_db)
    assert again_mongo.num_rows == first_mongo.num_rows == len(set(again_mongo.column("customer_id").to_pylist()))
    assert mongo_db["churn_risk"].count_documents({}) == first_mongo.num_rows
    assert by_id(again_s3, [*COMPARED, "rank"]) == by_id(first_s3, [*COMPARED, "rank"])
    assert by_id(again_mongo, [*COMPARED, "rank"]) == by_id(first_mongo, [*COMPARED, "rank"])
    assert tables(s3_server, s3_bucket).shards(dt.date.fromisoformat(DAY)) == (1, [0])


def test_three_shard_processes_side_by_side_equal_the_single_process_run(
    env: dict[str, str],
    mongo_db: Any,
    s3_server: services.S3Server,
    s3_bucket: str,
) -> None:
    ok(run_score(env, "--risk-uri", f"s3://{s3_bucket}/single", "--no-mongo-sink"))
    shards = [
        subprocess.Popen(
            [SCORE, "--run-date", DAY],
            env={**env, "JOB_COMPLETION_INDEX": str(i), "SCORE_SHARD_COUNT": "3"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in shards]
    assert [p.returncode for p in shards] == [0, 0, 0], "\n".join(o[-2000:] for o in outputs)

    single = s3_rows(s3_server, s3_bucket, "single")
    sharded = s3_rows(s3_server, s3_bucket)
    mongo = mongo_rows(mongo_db)
    assert sharded.num_rows == single.num_rows == mongo.num_rows
    assert by_id(sharded, COMPARED) == by_id(single, COMPARED) == by_id(mongo, COMPARED)
    # `rank` is per shard; the run's rank is the same order across shards (what `risk top` prints).
    global_order = rank_order(sharded).column("customer_id").to_pylist()
    assert global_order == rank_order(single).column("customer_id").to_pylist()
    assert single.sort_by("rank").column("customer_id").to_pylist() == global_order
    assert mongo_db["churn_risk_runs"].count_documents({"run_date": DAY}) == 3

    # The same date again as one shard: both sinks and both readers see one complete run.
    ok(run_score(env))
    listed = run_churn(env, "risk", "top", "--from", "mongo", "--limit", "3", "--format", "csv")
    ok(listed)
    assert len(listed.stdout.splitlines()) == 4
    markers = list(mongo_db["churn_risk_runs"].find({"run_date": DAY}, {"_id": 0}))
    assert [(m["shard"], m["shard_count"]) for m in markers] == [(0, 1)]
    again, mongo = s3_rows(s3_server, s3_bucket), mongo_rows(mongo_db)
    assert set(again.column("shard_count").to_pylist()) == {1} == set(mongo.column("shard_count").to_pylist())
    assert by_id(again, [*COMPARED, "rank"]) == by_id(mongo, [*COMPARED, "rank"])
    assert by_id(again, COMPARED) == by_id(single, COMPARED)


def test_no_production_model_exits_3_with_one_line_and_writes_nothing(
    env: dict[str, str],
    mongo_db: Any,
    s3_server: services.S3Server,
    s3_bucket: str,
) -> None:
    result = run_score({**env, "CHURN_MODEL_NAME": f"absent-{uuid.uuid4().hex[:6]}"})

    assert result.returncode == 3
    errors = [line for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and "ModelNotFound" in errors[0], result.stdout[-2000:]
    assert s3_rows(s3_server, s3_bucket).num_rows == 0
    assert mongo_db["churn_risk"].count_documents({}) == 0


def test_unreachable_mongodb_fails_non_zero_within_bounded_time(env: dict[str, str]) -> None:
    (port,) = services.free_ports(1)
    started = time.monotonic()

    result = run_score({**env, "MONGODB_URI": f"mongodb://127.0.0.1:{port}/?directConnection=true"}, timeout=120)

    assert result.returncode == 1
    assert time.monotonic() - started < 90
    errors = [line for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and "MongoDB" in errors[0], result.stdout[-2000:]


def test_unreachable_s3_fails_non_zero_within_bounded_time(env: dict[str, str], mongo_db: Any) -> None:
    (port,) = services.free_ports(1)
    started = time.monotonic()

    result = run_score({**env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}, timeout=150)

    assert result.returncode == 1
    assert time.monotonic() - started < 120
    assert mongo_db["churn_risk_runs"].count_documents({}) == 0


def test_a_missing_bucket_is_a_configuration_error_exit_3(env: dict[str, str]) -> None:
    result = run_score({**env, "RISK_TABLE_URI": f"s3://missing-{uuid.uuid4().hex[:8]}/risk"})

    assert result.returncode == 3, result.stdout[-2000:]
    errors = [line for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and "bucket does not exist" in errors[0]


def test_the_job_finishes_when_the_pushgateway_is_down(
    env: dict[str, str], s3_server: services.S3Server, s3_bucket: str
) -> None:
    (port,) = services.free_ports(1)

    result = run_score({**env, "PUSHGATEWAY_URL": f"http://127.0.0.1:{port}"})

    ok(result)
    assert "could not send job metrics" in result.stdout
    assert s3_rows(s3_server, s3_bucket).num_rows > 0


def test_risk_top_prints_the_same_list_from_s3_and_from_mongodb(env: dict[str, str]) -> None:
    ok(run_score(env))
    listed = subprocess.run(
        [CHURN, "risk", "top", "--limit", "5", "--format", "csv"], env=env, capture_output=True, text=True, timeout=120
    )
    from_mongo = subprocess.run(
        [CHURN, "risk", "top", "--limit", "5", "--format", "csv", "--from", "mongo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert listed.returncode == 0 and from_mongo.returncode == 0, listed.stderr + from_mongo.stderr
    rows = [line for line in listed.stdout.splitlines() if line[:1].isdigit()]
    assert len(rows) == 5 and rows == [line for line in from_mongo.stdout.splitlines() if line[:1].isdigit()]
