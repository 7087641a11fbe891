"""`docker run -v DIR:/opt/ml IMAGE serve`: the SageMaker serving contract, in the container,
as UID 10001 on a read-only root, under tini; SIGTERM drains and exits 0; the start imports
only modules whose byte-code the image ships (its cold start)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import container_runtime
import numpy as np
import pytest
import requests
from conftest import VERBOSE_IMPORTS, byte_code_use, free_port, hand_to_app_user
from container_runtime import RunSpec

from churn import generator
from churn.adapters.model_format import LoadedModel
from churn.model import to_frame
from churn.validation import validate

GRACE_SECONDS = 90  # terminationGracePeriodSeconds of k8s/base/serving-deployment.yaml


def records(n: int) -> list[dict[str, Any]]:
    table = next(iter(generator.generate(generator.GeneratorConfig(n_customers=n, seed=41, labelled_share=0.0))))
    return [{k: row[k] for k in ("tenure", "monthly_charges", "total_charges", "contract", "payment_method",
                                 "internet_service", "tech_support", "online_security", "support_calls")}
            for row in table.to_pylist()]


def expected(model: LoadedModel, rows: list[dict[str, Any]]) -> np.ndarray:
    schema = model.compiled.schema
    clean = validate([{**r, "customer_id": str(i)} for i, r in enumerate(rows)], schema).clean
    return np.asarray(model.trained.predict_proba(to_frame(clean, schema)))


def wait_for_ping(port: int, container: container_runtime.Running, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        try:
            status = requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code
            if status == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"/ping never answered 200 (last {status}):\n{container.output()[-3000:]}")


def nspid(host_pid: int) -> list[str]:
    """The PIDs of a process in each nested PID namespace, from the host's view."""
    status = Path(f"/proc/{host_pid}/status").read_text()
    return next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))


def test_serve_answers_like_the_venv_then_drains_on_sigterm_and_exits_0(
    runtime: container_runtime.Runtime, image: str, opt_ml: Path, model_dir: Path, loaded_model: LoadedModel,
    container_env: dict[str, str], started: list[container_runtime.Running],
) -> None:
    shutil.copytree(model_dir, opt_ml / "model")
    hand_to_app_user(opt_ml)
    port = free_port()
    env = {**container_env, "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
           "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus"}
    container = runtime.start(RunSpec(image, ["serve"], env=env, mounts={str(opt_ml): "/opt/ml"}))
    started.append(container)

    wait_for_ping(port, container)

    rows = records(200)
    answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"instances": rows},
                           headers={"Accept": "application/json"}, timeout=60)
    assert answer.status_code == 200, answer.text
    got = [p["probability"] for p in answer.json()["predictions"]]
    np.testing.assert_allclose(got, expected(loaded_model, rows), atol=1e-9, rtol=0)

    init = container.init_pid()
    if init is not None and isinstance(runtime, container_runtime.ChrootRuntime):
        assert Path(f"/proc/{init}/comm").read_text().strip() == "tini"
        assert nspid(init)[-1] == "1", "tini is PID 1 of the container's PID namespace"

    # A request in flight when SIGTERM arrives is answered; then the server exits 0.
    body = json.dumps(rows[0]).encode()
    in_flight = socket.create_connection(("127.0.0.1", port))
    in_flight.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    time.sleep(0.5)  # the worker is reading this request's body
    stopped_at = time.monotonic()
    container.signal(signal.SIGTERM)
    time.sleep(1.0)
    in_flight.sendall(body[10:])
    in_flight.settimeout(30)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = in_flight.recv(65536)
        if not chunk:
            break
        reply += chunk
    in_flight.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]

    returncode = container.wait(GRACE_SECONDS)
    assert returncode == 0, container.output()[-3000:]
    assert time.monotonic() - stopped_at < GRACE_SECONDS


def test_serve_imports_only_modules_whose_pyc_the_image_ships(
    runtime: container_runtime.Runtime, image: str, opt_ml: Path, model_dir: Path,
    container_env: dict[str, str], started: list[container_runtime.Running],
) -> None:
    """Start, load, answer, drain: every module the master and the worker import has its .pyc
    (the build recorded them), so the read-only container compiles nothing at start."""
    shutil.copytree(model_dir, opt_ml / "model")
    hand_to_app_user(opt_ml)
    port = free_port()
    env = {**container_env, **VERBOSE_IMPORTS, "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus"}
    container = runtime.start(RunSpec(image, ["serve"], env=env, mounts={str(opt_ml): "/opt/ml"}))
    started.append(container)
    wait_for_ping(port, container)
    answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"instances": records(3)}, timeout=60)
    assert answer.status_code == 200, answer.text
    container.signal(signal.SIGTERM)
    assert container.wait(GRACE_SECONDS) == 0, container.output()[-3000:]

    compiled, from_pyc = byte_code_use(container.output())
    assert len(from_pyc) > 500, "no verbose import log from the master and the worker"
    assert not compiled, f"{len(compiled)} modules compiled in memory at every start: {compiled[:40]}"
