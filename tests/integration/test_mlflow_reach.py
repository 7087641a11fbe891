"""Every command that talks to MLflow gives up on an unreachable tracking server in bounded time,
with one line naming MLFLOW_TRACKING_URI (its password redacted) and exit 1 (worth retrying)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import services

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
SECRET = "planted-Pa55word"
# MLflow's own defaults took 245.7 s to give up on one call to a refused port here (7 retries,
# backoff x2); the commands now give up well inside these bounds, which a regression would pass.
REFUSED_BOUND_S = 60
SILENT_BOUND_S = 120


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A real TCP server that accepts connections and never answers (a hung proxy or a stuck process)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://ops:{SECRET}@127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def refused_uri() -> str:
    (port,) = services.free_ports(1)
    return f"http://ops:{SECRET}@127.0.0.1:{port}"


def run(argv: list[str], tracking_uri: str, tmp_path: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW", "CHURN", "MONGODB", "PUSHGATEWAY"))},
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "LOG_FORMAT": "json",
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml"),
    }
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


def one_line_naming_the_server(result: subprocess.CompletedProcess[str], why: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert SECRET not in output and "Traceback" not in output
    errors = [json.loads(line) for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1, output[-3000:]
    assert "MLFLOW_TRACKING_URI=http://ops:***@127.0.0.1:" in errors[0]["msg"] and why in errors[0]["msg"]


COMMANDS = {
    "model list": ["churn", "model", "list"],
    "model show": ["churn", "model", "show", "1"],
    "model promote": ["churn", "model", "promote", "1", "--reason", "test"],
    "model rollback": ["churn", "model", "rollback", "--reason", "test"],
    "score": ["score", "--run-date", "2024-01-31", "--source", "customers.parquet"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_refused_connection_fails_in_seconds(command: str, refused_uri: str, tmp_path: Path) -> None:
    (tmp_path / "customers.parquet").write_bytes(b"")  # never read: the model is resolved first
    one_line_naming_the_server(run(COMMANDS[command], refused_uri, tmp_path, REFUSED_BOUND_S), "connection refused")


@pytest.mark.parametrize("command", ["model list", "score"])
def test_a_server_that_never_answers_fails_in_bounded_time(command: str, silent_server: str, tmp_path: Path) -> None:
    (tmp_path / "customers.parquet").write_bytes(b"")
    one_line_naming_the_server(run(COMMANDS[command], silent_server, tmp_path, SILENT_BOUND_S), "no answer in time")


def test_a_training_stage_fails_in_seconds_when_mlflow_is_down(refused_uri: str, tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["hyperparameters"]["n_estimators"] = 20
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    churn = ["churn", "--params", str(tmp_path / "params.yaml")]
    generate = [*churn, "data", "generate", "--customers", "400", "--out", str(tmp_path / "data" / "customers.parquet")]
    for argv in (generate, [*churn, "stage", "ingest", "--root", str(tmp_path)],
                 [*churn, "stage", "validate", "--root", str(tmp_path)]):
        done = run(argv, refused_uri, tmp_path, 120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    trained = run([*churn, "stage", "train", "--root", str(tmp_path)], refused_uri, tmp_path, REFUSED_BOUND_S * 2)

    one_line_naming_the_server(trained, "connection refused")
