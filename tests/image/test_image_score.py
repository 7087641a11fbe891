"""`docker run IMAGE score`: the nightly job in the container against the real test servers on
loopback (MongoDB wire server, S3, Pushgateway, MLflow registry), checked through the
project's own readers (`churn risk top`), not the storage layout."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import container_runtime
import pyarrow as pa
from conftest import VERBOSE_IMPORTS, byte_code_use, json_lines
from container_runtime import RunSpec
from prometheus_client.parser import text_string_to_metric_families

import services
from churn import generator
from churn.adapters.registry import PRODUCTION, ModelRegistry
from churn.adapters.tracking import Tracking

DAY = "2024-03-31"
CHURN = str(Path(sys.executable).parent / "churn")


def register(tracking_uri: str, model_dir: Path) -> str:
    """A registered model whose `production` alias is the session's small model; its name."""
    from mlflow import MlflowClient

    name = f"churn-image-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    tracking = Tracking(client, experiment=name)
    run_id = tracking.start("train", tags={})
    tracking.artifacts(run_id, model_dir, "model")
    tracking.finish(run_id)
    registry = ModelRegistry(client, name)
    registry.set_alias(PRODUCTION, registry.register(run_id, "model", model_dir=model_dir))
    return name


def risk_top(env: dict[str, str], *args: str) -> list[dict[str, str]]:
    """`churn risk top` in this venv (the project's reader), as CSV rows."""
    done = subprocess.run([CHURN, "risk", "top", "--date", DAY, "--limit", "100000", "--format", "csv", *args],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_score_reads_active_customers_and_publishes_risk_table_churn_risk_and_metrics(
    runtime: container_runtime.Runtime, image: str, model_dir: Path, container_env: dict[str, str],
    mongo_server: services.MongoServer, mongo_db: Any, s3_server: services.S3Server, s3_bucket: str,
    pushgateway_server: services.PushgatewayServer, mlflow_server: services.MlflowServer,
) -> None:
    customers = pa.concat_tables(generator.generate(
        generator.GeneratorConfig(n_customers=400, seed=51, labelled_share=0.0)))
    mongo_db["customers"].insert_many(generator.to_documents(customers))
    model_name = register(mlflow_server.tracking_uri, model_dir)
    where = {
        "MONGODB_URI": mongo_server.uri,
        "MONGODB_DATABASE": mongo_db.name,
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "CHURN_MODEL_NAME": model_name,
        "RISK_TABLE_URI": f"s3://{s3_bucket}/risk",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
        "PUSHGATEWAY_URL": pushgateway_server.url,
    }
    # As the CronJob runs it: the registry's production model, working files on /tmp.
    env = {**container_env, **where, **VERBOSE_IMPORTS, "CHURN_MODEL_URI": f"models:/{model_name}@{PRODUCTION}",
           "CHURN_DATA_DIR": "/tmp/churn-data"}

    done = runtime.run(RunSpec(image, ["score", "--run-date", DAY], env=env), timeout=600)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert any(line.get("rows") for line in json_lines(done.stdout + done.stderr)), "no structured progress log"
    local = {**{k: v for k, v in os.environ.items() if not k.startswith(("MONGODB", "AWS", "PUSHGATEWAY", "MLFLOW"))},
             **where}
    from_s3 = risk_top(local)
    from_mongo = risk_top(local, "--from", "mongo")
    active = customers.num_rows
    assert len(from_s3) == active == len(from_mongo)
    assert from_s3 == from_mongo
    assert {row["customer_id"] for row in from_s3} == set(customers.column("customer_id").to_pylist())
    assert mongo_db["churn_risk"].count_documents({"run_date": DAY}) == active

    with urllib.request.urlopen(f"{pushgateway_server.url}/metrics", timeout=5) as response:
        samples = {
            s.name: s.value
            for f in text_string_to_metric_families(response.read().decode())
            for s in f.samples
            if s.labels.get("job") == "churn_scoring" and s.labels.get("shard") == "0" and "band" not in s.labels
        }
    assert samples["churn_scoring_rows_scored"] == active
    assert samples["churn_scoring_last_success_timestamp_seconds"] > 0

    # Every module the job imported (MongoDB, S3, MLflow's REST client included) ships its .pyc.
    compiled, from_pyc = byte_code_use(done.stdout + done.stderr)
    loaded = " ".join(compiled + from_pyc)
    assert "/pymongo/" in loaded and "/mlflow/store/model_registry/" in loaded and "/deltalake/" in loaded, (
        "no verbose import log of the MongoDB, MLflow REST and Delta Lake paths")
    assert not compiled, f"{len(compiled)} modules compiled in memory at every start: {compiled[:40]}"
