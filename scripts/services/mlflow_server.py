"""An MLflow tracking server with a SQLite store and proxied artifacts in its data dir.

(Named mlflow_server, not mlflow, so it can never shadow the mlflow package.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.process import HOST, Server, child_env, find_binary, free_ports, http_ok, launch, prepare, wait_ready


@dataclass(kw_only=True)
class MlflowServer(Server):
    """An MLflow tracking server with proxied artifact storage in its data dir."""

    @property
    def tracking_uri(self) -> str:
        return self.url


def start_mlflow(data_dir: Path, timeout: float = 90.0) -> MlflowServer:
    """MLflow tracking server: SQLite backend and proxied artifacts inside `data_dir`."""
    data_dir = prepare(data_dir)
    binary = find_binary("mlflow")
    (port,) = free_ports(1)
    artifacts = data_dir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    argv = [
        binary, "server",
        "--backend-store-uri", f"sqlite:///{data_dir / 'mlflow.db'}",
        "--artifacts-destination", str(artifacts),
        "--host", HOST, "--port", str(port), "--workers", "1",
        # MLflow 3 rejects unknown Host headers; name both spellings of loopback.
        "--allowed-hosts", f"{HOST}:{port},localhost:{port}",
    ]
    env = child_env(data_dir, {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The job runner spawns seven huey consumers for GenAI jobs that we never
        # use: on two cores they slow start-up and shutdown for nothing.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    })
    process, log_path = launch("mlflow", argv, data_dir, env)
    server = MlflowServer(
        name="mlflow", url=f"http://{HOST}:{port}", port=port, data_dir=data_dir,
        log_path=log_path, process=process,
    )
    wait_ready(server, lambda: http_ok(f"{server.url}/health"), timeout)
    return server
