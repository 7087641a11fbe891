"""The nightly job against hostile MongoDB documents and hostile moments (issue 14, 11, 12):
one bad value costs one row in both sinks, duplicates follow one rule, a 15 MB document is
quarantined small, too many rejects publish the quarantine then fail, SIGTERM cleans up."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bson import Binary, Decimal128, ObjectId
from prometheus_client.parser import text_string_to_metric_families
from score_env import (  # noqa: F401  (fixtures)
    COMPARED,
    DAY,
    SCORE,
    active_customers_fixture,
    by_id,
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
from churn import generator


def _clean_documents(n: int, seed: int) -> list[dict[str, Any]]:
    config = generator.GeneratorConfig(n_customers=n, seed=seed, labelled_share=0.0)
    docs = [d for chunk in generator.generate(config) for d in generator.to_documents(chunk)]
    return [dict(d, status="active") for d in docs]


def test_hostile_documents_cost_one_row_each_and_both_sinks_agree(
    env: dict[str, str], mongo_db: Any, s3_server: services.S3Server, s3_bucket: str
) -> None:
    mongo_db["customers"].delete_many({})
    docs = _clean_documents(2_000, seed=33)
    huge = "x" * (5 << 20)
    hostile = {
        "binary_contract_first": dict(docs[0], customer_id="H-BIN-1", contract=Binary(b"Month-to-month")),
        "uuid_id": dict(docs[1], customer_id=Binary.from_uuid(uuid.uuid4())),
        "objectid_id": dict(docs[2], customer_id=ObjectId("65a1b2c3d4e5f60718293a4b")),
        "decimal_money": dict(docs[3], customer_id="H-DEC", monthly_charges=Decimal128("70.35")),
        "capitalised_status": dict(docs[4], customer_id="H-ACTIVE", status="Active"),
        "int_duplicate": dict(docs[5], customer_id=12345),
        "string_duplicate": dict(docs[6], customer_id="12345"),
        # An unseen contract alone is scored as missing (`unknown: missing`): the negative tenure rejects it.
        "fifteen_megabytes": dict(docs[7], customer_id="H-HUGE", contract=huge, payment_method=huge, notes=huge,
                                  tenure=-1),
        "binary_contract_last": dict(docs[8], customer_id="H-BIN-2", contract=b"One year"),
    }
    # Documents are read in _id order: the hostile ones first, middle and last among the good.
    order = [
        hostile["binary_contract_first"],
        *docs[9:1000],
        *list(hostile.values())[1:-1],
        *docs[1000:],
        hostile["binary_contract_last"],
    ]
    for doc in order:
        mongo_db["customers"].insert_one(doc)

    result = run_score(env)

    ok(result)
    assert max(len(line) for line in result.stdout.splitlines()) < 20_000  # no 31 MB "one-line" error
    delta, mongo = s3_rows(s3_server, s3_bucket), mongo_rows(mongo_db)
    assert by_id(delta, [*COMPARED, "rank"]) == by_id(mongo, [*COMPARED, "rank"])
    scored = set(delta.column("customer_id").to_pylist())
    assert {"H-DEC", "H-ACTIVE", "12345"} <= scored
    assert delta.num_rows == len(order) - 6  # two binary contracts, two odd ids, one duplicate, one huge
    quarantine = {q["customer_id"]: q for q in mongo_db["churn_quarantine"].find({"run_date": DAY}, {"_id": 0})}
    assert (quarantine["H-BIN-1"]["reason"], quarantine["H-BIN-2"]["reason"]) == ("wrong_type", "wrong_type")
    assert quarantine['{"$oid": "65a1b2c3d4e5f60718293a4b"}']["field"] == "customer_id"
    assert (
        quarantine["12345"]["reason"] == "duplicate_id"
        and json.loads(quarantine["12345"]["record"])["customer_id"] == "12345"
    )  # the int came first in _id order and was kept
    assert quarantine["H-HUGE"]["reason"] == "out_of_bounds" and len(quarantine["H-HUGE"]["record"]) < 25_000
    delta_quarantine = tables(s3_server, s3_bucket).read_quarantine(dt.date.fromisoformat(DAY))
    assert sorted(delta_quarantine.column("customer_id").to_pylist()) == sorted(quarantine)

    shown = run_churn(env, "risk", "quarantine", "--date", DAY, "--limit", "2")
    ok(shown)
    assert "quarantine 2024-01-31: 6 rejected" in shown.stdout
    assert "duplicate_id" in shown.stdout and "wrong_type" in shown.stdout


def test_too_many_rejects_publish_the_quarantine_then_exit_3(
    env: dict[str, str], mongo_db: Any, s3_server: services.S3Server, s3_bucket: str
) -> None:
    mongo_db["customers"].delete_many({})
    config = generator.GeneratorConfig(n_customers=300, seed=8, dirty_rate=0.6, labelled_share=0.0)
    mongo_db["customers"].insert_many(
        [dict(d, status="active") for chunk in generator.generate(config) for d in generator.to_documents(chunk)]
    )

    result = run_score(env)

    assert result.returncode == 3
    (line,) = error_lines(result)
    assert "TooManyRejects" in line and "the quarantine holds them" in line
    rejected = mongo_db["churn_quarantine"].count_documents({"run_date": DAY})
    assert rejected > 50
    assert tables(s3_server, s3_bucket).read_quarantine(dt.date.fromisoformat(DAY)).num_rows == rejected
    assert s3_rows(s3_server, s3_bucket).num_rows == 0 and mongo_db["churn_risk"].count_documents({}) == 0


def test_sigterm_pushes_the_failure_metric_and_leaves_no_staging_directory(
    env: dict[str, str], tmp_path: Path, pushgateway_server: services.PushgatewayServer
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = temp / f"churn-score-{dead.pid}-killed99"  # what a SIGKILLed run leaves
    leftover.mkdir()
    (leftover / "risk.arrow").write_bytes(b"x" * 1000)
    started = time.time()
    process = subprocess.Popen(
        [SCORE, "--run-date", DAY, "--chunk-rows", "20"],
        env={**env, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not list(temp.glob(f"churn-score-{process.pid}-*/risk.arrow")):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 1, output[-2000:]
    assert "Interrupted: terminated by SIGTERM" in output
    # Its own staging and the killed run's leftover are gone (churn-model-* is the registry's to clean).
    assert list(temp.glob("churn-score-*")) == []
    with urllib.request.urlopen(f"{pushgateway_server.url}/metrics", timeout=5) as response:
        failures = [
            s.value
            for f in text_string_to_metric_families(response.read().decode())
            for s in f.samples
            if s.name == "churn_scoring_last_failure_timestamp_seconds" and s.labels.get("job") == "churn_scoring"
        ]
    assert failures and max(failures) >= started
