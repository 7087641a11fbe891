"""Fixtures for integration tests: real servers started once per session by scripts/services.

A missing server binary fails the tests that need it (never skips them), so CI
cannot go green without having run the integration suite.
"""

from __future__ import annotations

import re
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS_DIR) not in sys.path:
    sys.path.insert(0, str(SCRIPTS_DIR))

import services  # noqa: E402  (lives in scripts/, put on the path just above)

if TYPE_CHECKING:
    import pyarrow.fs
    from botocore.client import BaseClient as S3Client
    from pymongo import MongoClient
    from pymongo.database import Database

INTEGRATION_DIR = Path(__file__).resolve().parent
ServerT = TypeVar("ServerT", bound=services.Server)


def pytest_configure(config: pytest.Config) -> None:
    """Register the `integration` marker unless the project config already does."""
    if not any(line.startswith("integration:") for line in config.getini("markers")):
        config.addinivalue_line("markers", "integration: talks to real servers started by scripts/services")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as `integration` (hook sees all items)."""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _start(start: Callable[[], ServerT]) -> ServerT:
    """Start a server, turning a missing binary or failed start into a test failure."""
    try:
        return start()
    except services.MissingBinaryError as error:
        message = (f"{error}\nIntegration tests fail rather than skip without their servers: "
                   "install what is missing (`python scripts/services check` lists it).")
    except services.ServiceError as error:
        message = str(error)
    # Outside the except block, so the report shows the message, not a chained traceback.
    pytest.fail(message, pytrace=False)


# --------------------------------------------------------------------------- servers (session)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.MongoServer]:
    """SecantusDB on a free port; `.uri` is the MongoDB connection string."""
    server = _start(lambda: services.start_mongo(tmp_path_factory.mktemp("mongo")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.S3Server]:
    """SeaweedFS S3; `.endpoint_url`, `.access_key`, ... (moto only with CHURN_TEST_S3_BACKEND=moto|auto)."""
    server = _start(lambda: services.start_s3(tmp_path_factory.mktemp("s3")))
    if server.backend != "seaweedfs":
        warnings.warn(f"S3 tests run against {server.backend}, not SeaweedFS", stacklevel=1)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pushgateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.PushgatewayServer]:
    """Prometheus Pushgateway; `.url` is its base URL, `.address` its host:port."""
    server = _start(lambda: services.start_pushgateway(tmp_path_factory.mktemp("pushgateway")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus_server(
    tmp_path_factory: pytest.TempPathFactory, pushgateway_server: services.PushgatewayServer
) -> Iterator[services.PrometheusServer]:
    """Prometheus scraping `pushgateway_server` every second; `.query()`, `.wait_for()`."""
    server = _start(lambda: services.start_prometheus(
        tmp_path_factory.mktemp("prometheus"), [pushgateway_server.address]))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.MlflowServer]:
    """MLflow tracking server (SQLite + proxied artifacts); `.tracking_uri`."""
    server = _start(lambda: services.start_mlflow(tmp_path_factory.mktemp("mlflow")))
    yield server
    server.stop()


# --------------------------------------------------------------------------- clean state (per test)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses: the test's name plus a random suffix (lowercase, [a-z0-9-])."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def mongo_client(mongo_server: services.MongoServer) -> Iterator[MongoClient[dict[str, Any]]]:
    """A pymongo client connected to `mongo_server`, shared by the session."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def mongo_db(mongo_client: MongoClient[dict[str, Any]]) -> Iterator[Database[dict[str, Any]]]:
    """A database with a unique name, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield mongo_client[name]
    mongo_client.drop_database(name)


@pytest.fixture
def s3_client(s3_server: services.S3Server) -> S3Client:
    """A boto3 S3 client for `s3_server` with the test credentials."""
    import boto3

    client: S3Client = boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region,
        aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
    )
    return client


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> Iterator[str]:
    """A fresh, empty bucket; it and everything in it are deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3_client.delete_objects(Bucket=name, Delete={"Objects": keys})
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_fs(s3_server: services.S3Server) -> pyarrow.fs.S3FileSystem:
    """pyarrow's S3 filesystem on `s3_server`; give paths as `bucket/key`, not `s3://`."""
    import pyarrow.fs

    return pyarrow.fs.S3FileSystem(
        endpoint_override=s3_server.endpoint_host, scheme="http", region=s3_server.region,
        access_key=s3_server.access_key, secret_key=s3_server.secret_key,
    )


@pytest.fixture
def mlflow_uri(mlflow_server: services.MlflowServer) -> str:
    """The tracking URI; isolate tests by experiment/model names from `unique_name`."""
    return mlflow_server.tracking_uri
