"""Start and stop the real servers that integration tests and local runs talk to.

One module per server (`mongo`: SecantusDB, `s3`: SeaweedFS or moto, `prometheus`:
the Pushgateway and Prometheus, `mlflow_server`: MLflow), the shared process plumbing
(`process`) and the command line (`cli`, run as `python scripts/services up|check`).

Each ``start_*`` function launches one server on 127.0.0.1 on free ports, inside a
data directory the caller owns, waits until it answers, and returns a handle whose
``stop()`` ends only that server. Stdlib only at import time; client libraries
(pymongo, boto3, moto) are imported lazily by the readiness checks that need them.
"""

from services.cli import SERVICE_NAMES, main, service_env, start_all, stop_all
from services.mlflow_server import MlflowServer, start_mlflow
from services.mongo import MongoServer, start_mongo
from services.process import (
    HOST,
    REPO_ROOT,
    MissingBinaryError,
    Server,
    ServiceError,
    find_binary,
    free_ports,
)
from services.prometheus import (
    PrometheusServer,
    PushgatewayServer,
    prometheus_config,
    start_prometheus,
    start_pushgateway,
)
from services.s3 import (
    BACKEND_ENV,
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    S3Server,
    s3_backend,
    start_moto,
    start_s3,
    start_seaweedfs,
)

__all__ = [
    "BACKEND_ENV",
    "HOST",
    "REPO_ROOT",
    "S3_ACCESS_KEY",
    "S3_REGION",
    "S3_SECRET_KEY",
    "SERVICE_NAMES",
    "MissingBinaryError",
    "MlflowServer",
    "MongoServer",
    "PrometheusServer",
    "PushgatewayServer",
    "S3Server",
    "Server",
    "ServiceError",
    "find_binary",
    "free_ports",
    "main",
    "prometheus_config",
    "s3_backend",
    "service_env",
    "start_all",
    "start_moto",
    "start_mlflow",
    "start_mongo",
    "start_prometheus",
    "start_pushgateway",
    "start_s3",
    "start_seaweedfs",
    "stop_all",
]
