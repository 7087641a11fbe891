"""Shared fixtures and helpers of the `score` job's integration tests.

Test modules import the fixtures by their function names (`env_fixture`, ...); pytest knows
them by `name=` (`env`, ...), so parameters do not shadow the imports.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from unknown_policy import rejected_kind

import services
from churn import generator
from churn.adapters.delta_lake import RiskTables
from churn.adapters.registry import PRODUCTION, ModelRegistry
from churn.adapters.tracking import Tracking

BIN = Path(sys.executable).parent
SCORE = str(BIN / "score")
CHURN = str(BIN / "churn")
DAY = "2024-01-31"
COMPARED = [
    "customer_id",
    "churn_probability",
    "churn_prediction",
    "risk_band",
    "revenue_at_risk",
    "reasons",
    "model_version",
]


@pytest.fixture(scope="module", name="registered_model")
def registered_model_fixture(mlflow_server: services.MlflowServer, model_dir: Path) -> str:
    """A model name whose `production` alias points at the session's small model."""
    from mlflow import MlflowClient

    name = f"churn-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri, registry_uri=mlflow_server.tracking_uri)
    tracking = Tracking(client, experiment=name)
    run_id = tracking.start("train", tags={})
    tracking.artifacts(run_id, model_dir, "model")
    tracking.finish(run_id)
    registry = ModelRegistry(client, name)
    registry.set_alias(PRODUCTION, registry.register(run_id, "model", model_dir=model_dir))
    return name


@pytest.fixture(scope="module", name="active_customers")
def active_customers_fixture() -> pa.Table:
    """600 active customers, ~1.5% of them broken so that validation must reject them."""
    config = generator.GeneratorConfig(n_customers=600, seed=21, dirty_rate=0.03, labelled_share=0.0)
    return pa.concat_tables(generator.generate(config))


def injected_rejects(customers: pa.Table) -> list[str]:
    """Ids of the rows validation rejects (an unseen category is scored as missing: `unknown: missing`)."""
    rejected = pa.array([rejected_kind(k) for k in customers.column("dirty_kind").to_pylist()])
    return sorted(customers.filter(rejected).column("customer_id").to_pylist())


def base_env(tmp_path: Path) -> dict[str, str]:
    """The runner's environment without any service setting, with the job's paths in tmp_path."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MONGODB", "AWS", "PUSHGATEWAY", "MLFLOW"))},
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml"),
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "LOG_FORMAT": "json",
    }


def s3_env(s3_server: services.S3Server, bucket: str) -> dict[str, str]:
    return {
        "RISK_TABLE_URI": f"s3://{bucket}/risk",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
    }


@pytest.fixture(name="env")
def env_fixture(
    tmp_path: Path,
    mongo_server: services.MongoServer,
    mongo_db: Any,
    active_customers: pa.Table,
    s3_server: services.S3Server,
    s3_bucket: str,
    pushgateway_server: services.PushgatewayServer,
    mlflow_server: services.MlflowServer,
    registered_model: str,
) -> dict[str, str]:
    """Environment of a job pointed at the real servers, with the customers loaded into MongoDB."""
    mongo_db["customers"].insert_many(generator.to_documents(active_customers))
    return {
        **base_env(tmp_path),
        **s3_env(s3_server, s3_bucket),
        "MONGODB_URI": mongo_server.uri,
        "MONGODB_DATABASE": mongo_db.name,
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "CHURN_MODEL_NAME": registered_model,
        "PUSHGATEWAY_URL": pushgateway_server.url,
    }


def delta_options(s3_server: services.S3Server) -> dict[str, str]:
    """delta-rs storage options for the test S3 server."""
    return {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
    }


def tables(s3_server: services.S3Server, bucket: str, prefix: str = "risk") -> RiskTables:
    return RiskTables(f"s3://{bucket}/{prefix}", delta_options(s3_server))


def run_score(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCORE, "--run-date", DAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def run_churn(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHURN, *args], env=env, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if '"level": "error"' in line]


def s3_rows(s3_server: services.S3Server, bucket: str, prefix: str = "risk") -> pa.Table:
    risk = tables(s3_server, bucket, prefix)
    if not risk.run_dates():
        return pa.table({})
    return risk.read(dt.date.fromisoformat(DAY))


def mongo_rows(db: Any) -> pa.Table:
    """Every row of the date in churn_risk, as the Delta table types them."""
    docs = list(db["churn_risk"].find({"run_date": DAY}, {"_id": 0, "attempt": 0}))
    for doc in docs:
        doc["run_date"] = dt.date.fromisoformat(doc["run_date"])
        doc["scored_at"] = doc["scored_at"].replace(tzinfo=dt.UTC)
    return pa.Table.from_pylist(docs)


def by_id(table: pa.Table, columns: list[str]) -> list[dict[str, Any]]:
    return table.select(columns).sort_by("customer_id").to_pylist()
