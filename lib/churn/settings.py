"""Where things are: every environment variable this system reads, in one place.

`Settings.from_env` is called once in each entrypoint's `main()`; CLI flags override it.
With nothing set, everything runs on one laptop: local Parquet files, MLflow in SQLite,
metrics in a Prometheus text file.

`redact` is the one function that hides credentials in URLs (user:password@, token
query parameters): every log line (see churn.logs), error message and MLflow tag passes
through it.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from churn.errors import ConfigError

PROJECT_MARKER = "dvc.yaml"  # beside lib/ in a checkout of this project
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")

# name in the environment -> Settings attribute
ENV = {
    "CHURN_PARAMS": "params_path",
    "CHURN_WORK_DIR": "work_dir",
    "CHURN_DATA_DIR": "data_dir",
    "MONGODB_URI": "mongodb_uri",
    "MONGODB_DATABASE": "mongodb_database",
    "CUSTOMERS_COLLECTION": "customers_collection",
    "RISK_COLLECTION": "risk_collection",
    "QUARANTINE_COLLECTION": "quarantine_collection",
    "MLFLOW_TRACKING_URI": "mlflow_tracking_uri",
    "CHURN_MODEL_NAME": "model_name",
    "CHURN_MODEL_URI": "model_uri",
    "RISK_TABLE_URI": "risk_table_uri",
    "AWS_ENDPOINT_URL_S3": "s3_endpoint_url",
    "AWS_REGION": "aws_region",
    "PUSHGATEWAY_URL": "pushgateway_url",
    "METRICS_TEXTFILE": "metrics_textfile",
    "SCORE_SHARD_COUNT": "shard_count",
    "JOB_COMPLETION_INDEX": "shard_index",
    "LOG_FORMAT": "log_format",
    "SAGEMAKER_BASE_DIR": "sagemaker_base_dir",
    "SAGEMAKER_BIND_TO_PORT": "port",
    "CHURN_BIND_ADDRESS": "bind_address",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "workers",
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": "timeout",
    "MODEL_POLL_SECONDS": "model_poll_seconds",
    "CHURN_THREADS": "threads",
    "CUSTOMERS_FILTER": "customers_filter",
    "CHURN_SERVER_THREADS": "server_threads",
    "CHURN_WORKER_CLASS": "worker_class",
    "CHURN_ENVIRONMENT": "environment",
}


@dataclass(frozen=True)
class Settings:
    params_path: str | None = None
    # The training pipeline's working tree (data/, models/, metrics/, plots/): the current
    # directory on a laptop (the repo, as dvc.yaml expects); a writable volume in a container.
    work_dir: str = "."
    data_dir: str = "data"
    mongodb_uri: str | None = None
    mongodb_database: str = "churn"
    customers_collection: str = "customers"
    risk_collection: str = "churn_risk"
    quarantine_collection: str = "churn_quarantine"
    mlflow_tracking_uri: str | None = None
    model_name: str = "churn"
    model_uri: str | None = None
    risk_table_uri: str | None = None
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    pushgateway_url: str | None = None
    metrics_textfile: str | None = None
    shard_count: int = 1
    shard_index: int = 0
    log_format: str = "auto"
    sagemaker_base_dir: str = "/opt/ml"
    port: int = 8080
    bind_address: str = "0.0.0.0"  # all interfaces, as containers need; 127.0.0.1 keeps a laptop's server private
    workers: int = 0  # 0: one per core
    timeout: int = 60
    model_poll_seconds: float = 30.0
    threads: int = 2
    customers_filter: str | None = None  # JSON MongoDB filter added to {status: active} by `score`
    server_threads: int = 4  # request threads per gunicorn gthread worker
    worker_class: str = "gthread"  # gthread keeps connections alive; sync closes each one
    # Which deployment this is (the Kubernetes namespace, from the downward API): part of
    # the Pushgateway grouping key, so staging and production never overwrite each other.
    environment: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment, apply non-None overrides (CLI flags), check every value."""
        env = os.environ if env is None else env
        types = {f.name: f.type for f in fields(cls)}
        given = {k: v for k, v in overrides.items() if v is not None}
        values: dict[str, Any] = {}
        for var, attr in ENV.items():
            raw = env.get(var)
            if raw is None or raw == "" or attr in given:
                continue
            values[attr] = _cast(var, raw, types[attr])
        values.update(given)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.shard_count < 1:
            raise ConfigError(f"SCORE_SHARD_COUNT={self.shard_count} must be >= 1")
        if not 0 <= self.shard_index < self.shard_count:
            raise ConfigError(f"JOB_COMPLETION_INDEX={self.shard_index} must be in [0, {self.shard_count})")
        if self.mongodb_uri and urlparse(self.mongodb_uri).scheme not in ("mongodb", "mongodb+srv"):
            raise ConfigError(f"MONGODB_URI={redact(self.mongodb_uri)!r} must start with mongodb:// or mongodb+srv://")
        if self.pushgateway_url and urlparse(self.pushgateway_url).scheme not in ("http", "https"):
            raise ConfigError(f"PUSHGATEWAY_URL={redact(self.pushgateway_url)!r} must be an http(s) URL")
        if self.log_format.lower() not in ("auto", "json", "text"):
            raise ConfigError(f"LOG_FORMAT={self.log_format!r} must be auto, json or text")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"SAGEMAKER_BIND_TO_PORT={self.port} is not a port")
        if not _is_host(self.bind_address):
            raise ConfigError(f"CHURN_BIND_ADDRESS={self.bind_address!r} must be an IP address or a host name")
        if self.timeout < 1:
            raise ConfigError(f"SAGEMAKER_MODEL_SERVER_TIMEOUT={self.timeout} must be >= 1")
        if self.workers < 0:
            raise ConfigError(f"SAGEMAKER_MODEL_SERVER_WORKERS={self.workers} must be >= 0 (0: one per core)")
        if self.threads < 1:
            raise ConfigError(f"CHURN_THREADS={self.threads} must be >= 1")
        if self.server_threads < 1:
            raise ConfigError(f"CHURN_SERVER_THREADS={self.server_threads} must be >= 1")
        if self.worker_class not in ("gthread", "sync"):
            raise ConfigError(f"CHURN_WORKER_CLASS={self.worker_class!r} must be gthread or sync")
        if not math.isfinite(self.model_poll_seconds) or self.model_poll_seconds < 0:
            raise ConfigError(f"MODEL_POLL_SECONDS={self.model_poll_seconds} must be a finite number >= 0")
        if self.environment is not None and not _ENVIRONMENT.fullmatch(self.environment):
            raise ConfigError(
                f"CHURN_ENVIRONMENT={self.environment!r} must be a name like a Kubernetes namespace "
                "(letters, digits, '-', '_', '.')"
            )

    def with_(self, **changes: Any) -> Settings:
        """A checked copy with some values changed (a flag that names a location, say)."""
        changed = replace(self, **changes)
        changed.check()
        return changed

    @property
    def customers_query(self) -> dict[str, Any]:
        """CUSTOMERS_FILTER as a MongoDB query ({} when unset): the same customers for score and train."""
        if not self.customers_filter:
            return {}
        try:
            value = json.loads(self.customers_filter)
        except (json.JSONDecodeError, TypeError) as err:
            raise ConfigError(f"CUSTOMERS_FILTER={self.customers_filter!r} is not a JSON object") from err
        if not isinstance(value, dict):
            raise ConfigError(f"CUSTOMERS_FILTER={self.customers_filter!r} is not a JSON object")
        return value

    # -- derived locations, each with a laptop default -------------------------------------
    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI, else mlflow.db in the project root (never the current directory).

        The project root is the checkout this package runs from (the directory holding
        dvc.yaml and lib/); an installed package has none, and uses CHURN_DATA_DIR's parent.
        """
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(project_root() or Path(self.data_dir).resolve().parent) / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """For a SQLite store, artifacts live beside the database rather than in the cwd."""
        if self.tracking_uri.startswith("sqlite:///"):
            return str(Path(self.tracking_uri[len("sqlite:///"):]).parent / "mlartifacts")
        return None

    @property
    def risk_uri(self) -> str:
        return self.risk_table_uri or str(Path(self.data_dir, "risk").resolve())

    @property
    def textfile(self) -> str:
        return self.metrics_textfile or str(Path(self.data_dir, "metrics", "churn_scoring.prom").resolve())

    @property
    def registry_model_uri(self) -> str:
        return self.model_uri or f"models:/{self.model_name}@production"

    @property
    def opt_ml(self) -> Path:
        return Path(self.sagemaker_base_dir)

    def local_locations(self) -> dict[str, Path]:
        """Every local path a job may write, by the variable that moves it (absolute)."""
        places = {
            "CHURN_WORK_DIR": Path(self.work_dir),
            "CHURN_DATA_DIR": Path(self.data_dir),
            "METRICS_TEXTFILE": Path(self.textfile).parent,
            "SAGEMAKER_BASE_DIR": self.opt_ml,
        }
        if "://" not in self.risk_uri:
            places["RISK_TABLE_URI"] = Path(self.risk_uri)
        if self.tracking_uri.startswith("sqlite:///"):
            places["MLFLOW_TRACKING_URI"] = Path(self.tracking_uri[len("sqlite:///"):]).parent
        return {var: Path(os.path.abspath(path)) for var, path in places.items()}


# The variables that place a job's local files, named when one of them is not writable.
LOCATION_VARS = ("CHURN_WORK_DIR", "CHURN_DATA_DIR", "METRICS_TEXTFILE", "RISK_TABLE_URI", "SAGEMAKER_BASE_DIR")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def unwritable(err: OSError, settings: Settings | None = None) -> ConfigError:
    """A one-line configuration error for a path the job may not write (read-only root, wrong owner).

    Names the path and the variable whose location holds it (the deepest one), so the fix
    is obvious; retrying cannot help, hence a ConfigError (exit 3), not an outage.
    """
    path = Path(os.path.abspath(err.filename)) if err.filename else None
    problem = f"{err.strerror or 'not writable'}: {path or 'a local path'}"
    if settings is not None and path is not None:
        holders = [(var, place) for var, place in settings.local_locations().items() if path.is_relative_to(place)]
        if holders:
            var, place = max(holders, key=lambda held: len(held[1].parts))
            return ConfigError(f"{problem}; it is under {var}={str(place)!r}: point {var} at a writable directory")
    names = ", ".join(LOCATION_VARS)
    return ConfigError(f"{problem}; point the job's locations ({names}) at a writable directory")


def _cast(var: str, raw: str, kind: Any) -> Any:
    text = raw.strip()
    target = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if target.startswith("int"):
            return int(text)
        if target.startswith("float"):
            return float(text)
    except ValueError as err:
        raise ConfigError(f"{var}={raw!r} is not a valid {target.split(' ')[0]}") from err
    return text


_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s:/?#@]*):(?P<password>[^\s/?#@]+)@")
_SECRET_PARAMS = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|token|access_token|secret|api_key|apikey|sig|signature)=)[^&\s#'\"]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with the password of every URL in it (and secret-looking query values) replaced by ***."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m['key']}***", text)


def project_root() -> Path | None:
    """The checkout this package runs from (an editable install), or None for an installed package."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / PROJECT_MARKER).is_file() and (root / "lib" / "churn").is_dir() else None


def _is_host(text: str) -> bool:
    """An IPv4/IPv6 address or a DNS host name (what a server can bind to)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(text)) and len(text) <= 253
