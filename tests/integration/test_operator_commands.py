"""The commands operators reached for, against real servers: the nightly drift report on S3
(two shards side by side, merged), `churn explain` from the Delta table on S3 and from
MongoDB (re-scoring the customer's MongoDB record with the registry's model), and
`churn predict` with the registry's production model."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from prometheus_client import delete_from_gateway
from prometheus_client.parser import text_string_to_metric_families
from score_env import (  # noqa: F401  (fixtures)
    DAY,
    SCORE,
    active_customers_fixture,
    env_fixture,
    ok,
    registered_model_fixture,
    run_churn,
    tables,
)

import services

SHARDS = 2


@pytest.fixture(name="namespace")
def namespace_fixture(unique_name: str, pushgateway_server: services.PushgatewayServer) -> Iterator[str]:
    """An environment of its own on the shared Pushgateway, deleted afterwards."""
    yield unique_name
    for shard in range(SHARDS):
        delete_from_gateway(pushgateway_server.url, job="churn_scoring",
                            grouping_key={"namespace": unique_name, "shard": str(shard)})


def pushed_psi(pushgateway_server: services.PushgatewayServer, namespace: str) -> dict[str, dict[str, float]]:
    """shard -> feature -> the PSI the shard pushed."""
    with urllib.request.urlopen(f"{pushgateway_server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "churn_scoring_feature_psi" and sample.labels.get("namespace") == namespace:
                found.setdefault(sample.labels["shard"], {})[sample.labels["feature"]] = sample.value
    return found


def page_psi(page: str) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(r'data-feature="([^"]+)" data-psi="([^"]+)"', page)}


def test_sharded_night_writes_its_drift_report_to_s3_and_the_commands_explain_and_predict_from_real_servers(
    env: dict[str, str],
    namespace: str,
    active_customers: pa.Table,
    s3_server: services.S3Server,
    s3_bucket: str,
    s3_client: Any,
    pushgateway_server: services.PushgatewayServer,
    tmp_path: Path,
) -> None:
    env = {**env, "CHURN_ENVIRONMENT": namespace, "SCORE_SHARD_COUNT": str(SHARDS)}
    shards = [
        subprocess.Popen([SCORE, "--run-date", DAY], env={**env, "JOB_COMPLETION_INDEX": str(i)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(SHARDS)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in shards]
    assert [p.returncode for p in shards] == [0] * SHARDS, "\n".join(o[-2000:] for o in outputs)

    # -- the drift report: linked from each shard's final line, the run's page merged from both
    finals = [json.loads(next(line for line in o.splitlines() if '"scoring run finished"' in line)) for o in outputs]
    folder = f"s3://{s3_bucket}/risk/_reports/{DAY}"
    links = sorted(f["drift_report"] for f in finals)
    assert f"{folder}/drift.html" in links and all(link.startswith(folder) for link in links)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=f"risk/_reports/{DAY}/")
    keys = {item["Key"].rsplit("/", 1)[1] for item in listed["Contents"]}
    shard_files = {f"shard-{i}-of-{SHARDS}.{kind}" for i in range(SHARDS) for kind in ("json", "html")}
    assert keys == {"drift.html", *shard_files}

    def page(name: str) -> str:
        obj = s3_client.get_object(Bucket=s3_bucket, Key=f"risk/_reports/{DAY}/{name}")
        assert obj["ContentType"].startswith("text/html")
        return str(obj["Body"].read().decode())

    pushed = pushed_psi(pushgateway_server, namespace)
    for shard in range(SHARDS):  # each shard's page shows the PSI its metrics pushed
        assert page_psi(page(f"shard-{shard}-of-{SHARDS}.html")) == pytest.approx(pushed[str(shard)], abs=1e-12)
    run_page = page("drift.html")
    kinds = pc.fill_null(active_customers.column("dirty_kind"), "").to_pylist()
    unseen = sum(1 for k in kinds if k in ("reject:unknown_contract", "reject:unknown_internet_service"))
    assert "(the whole run)" in run_page and f"read {active_customers.num_rows:,}" in run_page
    assert set(page_psi(run_page)) == set(pushed["0"]) and unseen > 0 and "Unseen categories" in run_page
    shown_unseen = [int(n.replace(",", "")) for n in re.findall(r"<td>(?:contract|internet_service)</td><td>[^<]*"
                                                                 r"</td><td>([\d,]+)</td>", run_page)]
    assert sum(shown_unseen) == unseen
    risk = tables(s3_server, s3_bucket)  # Delta readers skip _reports: the table reads as before
    day = dt.date.fromisoformat(DAY)
    assert risk.shards(day) == (SHARDS, list(range(SHARDS))) and risk.read(day).num_rows == sum(
        f["rows_scored"] for f in finals)

    # -- explain: the riskiest customer, from the Delta table on S3, then from MongoDB with --full
    rows = risk.read(day).to_pylist()
    top = max((r for r in rows if r["reasons"]), key=lambda r: r["churn_probability"])
    stored = run_churn(env, "explain", top["customer_id"], "--date", DAY)
    ok(stored)
    assert f"churn probability {top['churn_probability']:.2f}" in stored.stdout
    assert f"within shard {top['shard']} of {SHARDS}" in stored.stdout
    assert f"{top['reasons'][0]['feature'].replace('_', ' ')} " in stored.stdout

    full = run_churn(env, "explain", top["customer_id"], "--from", "mongo", "--full", "--format", "json")
    ok(full)
    story = json.loads(full.stdout.strip().splitlines()[-1])
    assert story["row"]["churn_probability"] == top["churn_probability"]
    assert story["record_source"].endswith(".customers") and story["model_version"] == top["model_version"]
    assert story["full"]["churn_probability"] == pytest.approx(top["churn_probability"], abs=1e-12)
    assert "to the same probability" in story["notes"][0] and len(story["full"]["effects"]) == 9

    # -- predict: the registry's production model (no model directory), a local file
    source = tmp_path / "some.csv"
    pq.write_table(active_customers.slice(0, 50), tmp_path / "some.parquet")
    pacsv.write_csv(pq.read_table(tmp_path / "some.parquet"), source)
    predicted = run_churn(env, "predict", "--source", str(source), "--out", str(tmp_path / "out.parquet"))
    ok(predicted)
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    by_id = {r["customer_id"]: r for r in rows}
    assert len(out) == 50 and {r["model_version"] for r in out} == {top["model_version"]}
    for row in out:
        if row["status"] == "scored":
            assert row["churn_probability"] == by_id[row["customer_id"]]["churn_probability"]
