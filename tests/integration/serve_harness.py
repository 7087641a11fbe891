"""Start the real `serve` (gunicorn + the churn app) as a process on a free port, for integration tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent
RECORD = {
    "tenure": 31, "monthly_charges": 88.67, "total_charges": 2875.71, "contract": "Month-to-month",
    "payment_method": "Mailed check", "internet_service": "Fiber optic", "tech_support": "No",
    "online_security": "Yes", "support_calls": 2,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    """A running `serve`; `stop()` ends only this process group."""

    process: subprocess.Popen[bytes]
    port: int
    base: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_dir(self) -> Path:
        """PROMETHEUS_MULTIPROC_DIR, or the directory the server made in its temp dir (TMPDIR=base)."""
        made = sorted(self.base.glob(f"churn-prometheus-{self.process.pid}-*"))
        return made[0] if made else self.base / "prometheus"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, body: Any = None, content_type: str = "application/json", **kwargs: Any
             ) -> requests.Response:
        import json

        data = body if isinstance(body, (bytes, str)) or body is None or hasattr(body, "__next__") \
            else json.dumps(body)
        headers = {"Content-Type": content_type, **kwargs.pop("headers", {})}
        return requests.post(self.url + path, data=data, headers=headers, timeout=60, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"serve did not listen within {timeout}s:\n{self.log()[-3000:]}")

    def ready(self, timeout: float = 120, workers: int = 1) -> None:
        """Wait until every one of `workers` workers has loaded its model and /ping answers 200.

        Pings alone cannot tell: the kernel may hand every probe to the one fast worker. A
        worker that loaded its model has written its churn_model_info gauge file.
        """
        self.listening()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive()
            try:
                ok = requests.get(self.url + "/ping", timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            pids = self.worker_pids()
            loaded = [pid for pid in pids if (self.metrics_dir / f"gauge_livemax_{pid}.db").exists()]
            if ok and len(pids) == workers and len(loaded) == workers:
                return
            time.sleep(0.1)
        raise AssertionError(f"serve not ready within {timeout}s:\n{self.log()[-3000:]}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the master only, as a container runtime does
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def _alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")


def start_serve(base: Path, model_dir: Path | None = None, workers: int = 2, **env: str) -> ServeProcess:
    """`serve` with SAGEMAKER_BASE_DIR=base (holding a copy of `model_dir` as base/model, if given).

    PROMETHEUS_MULTIPROC_DIR="" lets the server make its own metrics directory in TMPDIR (base).
    """
    base.mkdir(parents=True, exist_ok=True)
    if model_dir is not None and not (base / "model").exists():
        shutil.copytree(model_dir, base / "model")
    port = free_port()
    child_env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "CHURN_BIND_ADDRESS": "127.0.0.1",  # test servers are never reachable from outside
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(base / "prometheus"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "LOG_FORMAT": "json",
        "TMPDIR": str(base),
        **env,
    }
    log_path = base / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(BIN / "serve")], env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=base)
    return ServeProcess(process, port, base, log_path)
