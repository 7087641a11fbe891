"""The real-services harness works: each server started by scripts/services answers its clients."""

from __future__ import annotations

import glob
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

import services

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from pymongo.database import Database

# `python scripts/services up|check`: the package directory runs as a script.
SERVICES_SCRIPT = Path(services.__file__).resolve().parent


def test_mongo_returns_the_document_that_was_inserted(mongo_db: Database[dict[str, Any]]) -> None:
    customers = mongo_db["customers"]
    customers.insert_one({"customer_id": "C-1", "status": "active", "tenure": 12})

    found = customers.find_one({"customer_id": "C-1"}, {"_id": False})

    assert found == {"customer_id": "C-1", "status": "active", "tenure": 12}
    assert customers.count_documents({}) == 1


def test_parquet_written_through_pyarrow_fs_reads_back_from_s3(
    s3_fs: pyarrow.fs.S3FileSystem, s3_bucket: str, s3_client: BaseClient
) -> None:
    table = pa.table({"customer_id": ["C-1", "C-2"], "churn_probability": [0.9, 0.1]})
    path = f"{s3_bucket}/risk/run_date=2024-01-31/part-00000.parquet"

    pq.write_table(table, path, filesystem=s3_fs)

    assert pq.read_table(path, filesystem=s3_fs).equals(table)
    head = s3_client.head_object(Bucket=s3_bucket, Key="risk/run_date=2024-01-31/part-00000.parquet")
    assert head["ContentLength"] > 0


def _push_gauge(gateway: services.PushgatewayServer, job: str, value: float) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("churn_harness_rows", "Rows seen by the harness test.", registry=registry)
    gauge.set(value)
    push_to_gateway(gateway.address, job=job, registry=registry)


def test_pushgateway_exposes_a_pushed_metric(
    pushgateway_server: services.PushgatewayServer, unique_name: str
) -> None:
    _push_gauge(pushgateway_server, unique_name, 42)

    with urllib.request.urlopen(f"{pushgateway_server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "churn_harness_rows" and sample.labels.get("job") == unique_name
    ]
    assert [sample.value for sample in samples] == [42.0]


def test_prometheus_scrapes_a_metric_pushed_to_the_gateway(
    pushgateway_server: services.PushgatewayServer,
    prometheus_server: services.PrometheusServer,
    unique_name: str,
) -> None:
    _push_gauge(pushgateway_server, unique_name, 7)

    result = prometheus_server.wait_for(f'churn_harness_rows{{job="{unique_name}"}}', timeout=30)

    assert [series["value"][1] for series in result] == ["7"]


def test_mlflow_server_records_an_experiment_and_a_metric(mlflow_uri: str, unique_name: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    experiment_id = client.create_experiment(unique_name)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "f1", 0.75)
    client.set_terminated(run.info.run_id)

    assert client.get_experiment_by_name(unique_name).experiment_id == experiment_id  # type: ignore[union-attr]
    assert client.get_run(run.info.run_id).data.metrics == {"f1": 0.75}


def test_mlflow_server_stores_artifacts_in_its_data_dir(
    mlflow_server: services.MlflowServer, unique_name: str, tmp_path: Path
) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    run = client.create_run(client.create_experiment(unique_name))

    client.log_text(run.info.run_id, "champion notes", "notes/readme.txt")
    downloaded = client.download_artifacts(run.info.run_id, "notes/readme.txt", dst_path=str(tmp_path))

    assert Path(downloaded).read_text() == "champion notes"
    stored = list((mlflow_server.data_dir / "artifacts").rglob("readme.txt"))
    assert [path.read_text() for path in stored] == ["champion notes"]


def test_start_that_times_out_names_the_server_and_its_log(tmp_path: Path) -> None:
    with pytest.raises(services.ServiceError) as failure:
        services.start_mongo(tmp_path / "mongo", timeout=0)

    message = str(failure.value)
    assert message.startswith("mongo did not become ready")
    assert str(tmp_path / "mongo" / "mongo.log") in message


def test_up_writes_an_env_file_and_stops_its_servers_on_sigterm(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [sys.executable, str(SERVICES_SCRIPT), "up", "--only", "pushgateway", "--dir", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    env_file = tmp_path / "services.env"
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists():
            assert up.poll() is None, up.communicate()[0].decode()
            assert time.monotonic() < deadline, "services up wrote no services.env within 30 s"
            time.sleep(0.1)
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
        )
        gateway_url = exports["PUSHGATEWAY_URL"]
        with urllib.request.urlopen(f"{gateway_url}/-/ready", timeout=5) as response:
            assert response.status == 200
    finally:
        up.send_signal(signal.SIGTERM)
        output = up.communicate(timeout=60)[0].decode()

    assert up.returncode == 0, output
    assert not env_file.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{gateway_url}/-/ready", timeout=2)


def test_check_reports_every_server_binary_installed() -> None:
    result = subprocess.run(
        [sys.executable, str(SERVICES_SCRIPT), "check"],
        capture_output=True, text=True, check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    for name in services.SERVICE_NAMES:
        assert f"{name} " in result.stdout


def test_seaweedfs_starts_from_a_checkout_under_tmp() -> None:
    """weed gets a private /tmp (as root): a venv and data dir under the real /tmp must stay reachable."""
    checkout = Path(tempfile.mkdtemp(prefix="churn-checkout-", dir="/tmp"))
    try:
        weed = checkout / ".venv" / "bin" / "weed"
        weed.parent.mkdir(parents=True)
        weed.symlink_to(services.find_binary("s3"))
        data_dir = checkout / ".services" / "s3"
        sockets_before = set(glob.glob("/tmp/seaweedfs-*.sock"))

        server = services.start_seaweedfs(data_dir, binary=str(weed))
        try:
            import boto3

            client = boto3.client(
                "s3", endpoint_url=server.endpoint_url, region_name=server.region,
                aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
            )
            client.create_bucket(Bucket="from-tmp")
            client.put_object(Bucket="from-tmp", Key="k", Body=b"stored")
            body = client.get_object(Bucket="from-tmp", Key="k")["Body"].read()
        finally:
            server.stop()

        assert server.backend == "seaweedfs" and body == b"stored"
        assert any((data_dir / "data").iterdir()), "weed wrote its volumes somewhere other than its data dir"
        assert set(glob.glob("/tmp/seaweedfs-*.sock")) <= sockets_before, "weed left sockets in the real /tmp"
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


def test_a_seaweedfs_that_cannot_start_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(services.BACKEND_ENV, raising=False)
    monkeypatch.setattr(services.s3, "find_binary", lambda service: "/bin/false")  # a weed that exits at once

    with pytest.raises(services.ServiceError) as failure:
        services.start_s3(tmp_path / "s3", timeout=10)

    assert "seaweedfs" in str(failure.value).lower() and services.BACKEND_ENV in str(failure.value)


def test_the_moto_fallback_runs_only_when_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(services.BACKEND_ENV, "auto")
    monkeypatch.setattr(services.s3, "find_binary", lambda service: "/bin/false")

    server = services.start_s3(tmp_path / "s3", timeout=10)
    try:
        assert server.backend == "moto"
    finally:
        server.stop()
    monkeypatch.setenv(services.BACKEND_ENV, "minio")
    with pytest.raises(services.ServiceError, match="CHURN_TEST_S3_BACKEND='minio'"):
        services.s3_backend()
