"""A password planted in every URL setting never shows in the output of failing runs.

PUSHGATEWAY_URL, MLFLOW_TRACKING_URI, MONGODB_URI and AWS_ENDPOINT_URL_S3 each carry
user:password and point at a port nobody listens on; score, churn model list and serve
fail (or wait) and everything they print is searched for the password. Each test also
checks the redacted form is there, so the path that would leak was really taken.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from serve_harness import start_serve

import services
from churn import files, generator

BIN = Path(sys.executable).parent
SECRET = "planted-Pa55word"
CONFIGURED = ("MLFLOW", "CHURN", "MONGODB", "PUSHGATEWAY", "AWS")


@pytest.fixture
def dead() -> str:
    """user:password@host:port of a port nobody listens on."""
    (port,) = services.free_ports(1)
    return f"ops:{SECRET}@127.0.0.1:{port}"


@pytest.fixture
def customers(tmp_path: Path) -> Path:
    path = tmp_path / "customers.parquet"
    files.write_parquet(pa.concat_tables(generator.generate(generator.GeneratorConfig(n_customers=30, seed=3))), path)
    return path


def run(argv: list[str], tmp_path: Path, **env: str) -> str:
    child = {
        **{k: v for k, v in os.environ.items() if not k.startswith(CONFIGURED)},
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml"),
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        **env,
    }
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=child, capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert done.returncode != 0, done.stdout[-2000:]
    return done.stdout + done.stderr


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_score_failing_on_mongodb_names_no_password(dead: str, tmp_path: Path, log_format: str) -> None:
    output = run(["score", "--run-date", "2024-01-31"], tmp_path, LOG_FORMAT=log_format,
                 MONGODB_URI=f"mongodb://{dead}/?directConnection=true", PUSHGATEWAY_URL=f"http://{dead}",
                 MLFLOW_TRACKING_URI=f"http://{dead}", AWS_ENDPOINT_URL_S3=f"http://{dead}",
                 RISK_TABLE_URI="s3://bucket/risk")
    assert SECRET not in output
    host = dead.rpartition("@")[2]
    assert f'"target": "http://{host}"' in output or f"target=http://{host}" in output, (
        "the pushgateway warning names the target, without its credentials")


def test_score_failing_on_s3_names_no_password(dead: str, tmp_path: Path, customers: Path) -> None:
    output = run(["score", "--run-date", "2024-01-31", "--source", str(customers)], tmp_path, LOG_FORMAT="json",
                 PUSHGATEWAY_URL=f"http://{dead}", AWS_ENDPOINT_URL_S3=f"http://{dead}",
                 RISK_TABLE_URI="s3://bucket/risk")
    assert SECRET not in output and "risk table s3://bucket/risk" in output


def test_score_failing_on_mlflow_names_no_password(dead: str, tmp_path: Path, customers: Path) -> None:
    output = run(["score", "--run-date", "2024-01-31", "--source", str(customers)], tmp_path, LOG_FORMAT="json",
                 PUSHGATEWAY_URL=f"http://{dead}", MLFLOW_TRACKING_URI=f"http://{dead}")
    assert SECRET not in output and "MLFLOW_TRACKING_URI=http://ops:***@127.0.0.1" in output


def test_model_list_failing_names_no_password(dead: str, tmp_path: Path) -> None:
    output = run(["churn", "model", "list"], tmp_path, LOG_FORMAT="text", MLFLOW_TRACKING_URI=f"http://{dead}")
    assert SECRET not in output and "MLFLOW_TRACKING_URI=http://ops:***@127.0.0.1" in output


def test_a_bad_pushgateway_url_is_refused_without_its_password(dead: str, tmp_path: Path) -> None:
    output = run(["score"], tmp_path, LOG_FORMAT="json", PUSHGATEWAY_URL=f"ftp://{dead}")
    assert SECRET not in output and "PUSHGATEWAY_URL='ftp://ops:***@127.0.0.1" in output


def test_serve_start_up_and_its_retries_name_no_password(dead: str, tmp_path: Path) -> None:
    server = start_serve(tmp_path / "base", workers=1, MLFLOW_TRACKING_URI=f"http://{dead}",
                         PUSHGATEWAY_URL=f"http://{dead}", MONGODB_URI=f"mongodb://{dead}/",
                         AWS_ENDPOINT_URL_S3=f"http://{dead}", MODEL_POLL_SECONDS="1")
    try:
        server.listening()
        deadline = time.monotonic() + 90
        while "model source unreachable" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server.get("/ping").status_code == 503
    finally:
        server.stop()
    log = server.log()
    assert "model source unreachable" in log, log[-3000:]
    assert SECRET not in log
    assert "models:/churn@production at MLFLOW_TRACKING_URI=http://ops:***@127.0.0.1" in log
