"""Servers for bench_serving.py: ours (`serve`), `mlflow models serve`, and nginx buffering in front of ours."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server: its processes, its port, and the route that scores."""

    name: str
    port: int
    processes: list[subprocess.Popen[bytes]]
    path: str = "/invocations"
    mlflow: bool = False  # takes {"dataframe_split": ...}, not our bodies
    results: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        for process in reversed(self.processes):  # the front first, then what it fronts
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def pids(self) -> list[int]:
        """Every process of the server (mlflow's CLI starts uvicorn, which starts workers)."""
        found: list[int] = []
        for process in self.processes:
            found += process_tree(process.pid)
        return found


def process_tree(pid: int) -> list[int]:
    found = [pid]
    task_dir = Path(f"/proc/{pid}/task")
    if not task_dir.exists():
        return []
    for task in task_dir.iterdir():
        for child in (task / "children").read_text().split():
            found += process_tree(int(child))
    return found


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def base_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "LOG_FORMAT": "json",
            "MLFLOW_DISABLE_TELEMETRY": "true"}


def ours(work: Path, model: Path, name: str, workers: int, threads: int = 4, worker_class: str = "gthread",
         port: int | None = None, source: Path | None = None) -> Server:
    """`serve` on SAGEMAKER_BASE_DIR/model, with its own metrics directory.

    `source`: another checkout of this project (say `git archive main | tar -x -C DIR`) whose
    code serves instead, for a before/after ratio in one run (its packages go first on PYTHONPATH).
    """
    slug = name.replace(" ", "-")
    base = work / f"opt-ml-{slug}"
    if not (base / "model").exists():
        shutil.copytree(model, base / "model")
    port = port or free_port()
    env = {**base_env(), "SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
           "CHURN_BIND_ADDRESS": "127.0.0.1", "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
           "CHURN_WORKER_CLASS": worker_class, "CHURN_SERVER_THREADS": str(threads),
           "PROMETHEUS_MULTIPROC_DIR": str(work / f"prom-{slug}")}
    if source is not None:
        packages = work / f"packages-{slug}"
        packages.mkdir(exist_ok=True)
        for package, folder in (("churn", "lib/churn"), ("churn_serve", "serve"), ("churn_jobs", "jobs")):
            link = packages / package
            if not link.exists():
                link.symlink_to(source.resolve() / folder)
        env["PYTHONPATH"] = str(packages)
    return Server(name, port, [start([str(BIN / "serve")], env, work / f"serve-{slug}.log")])


def mlflow(work: Path, model: Path, workers: int) -> Server:
    port = free_port()
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local", "-w", str(workers),
            "-p", str(port), "-h", "127.0.0.1"]
    return Server("mlflow", port, [start(argv, base_env(), work / "mlflow.log")], mlflow=True)


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  client_max_body_size 6m;
  client_body_buffer_size 6m;
  client_header_timeout 60s;
  client_body_timeout 60s;
  keepalive_timeout 5s;
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering on;
    }}
  }}
}}
"""


def nginx_front(work: Path, model: Path, workers: int) -> Server | None:
    """nginx buffering requests in front of `serve` (what SageMaker's own containers do); None without nginx."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        return None
    upstream = ours(work, model, "behind-nginx", workers)
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, upstream=upstream.port, port=port))
    argv = [binary, "-c", str(conf), "-e", str(work / "nginx-error.log")]
    if os.geteuid() == 0:  # as root, nginx would run its workers as nobody, who cannot write the temp dirs
        argv += ["-g", "user root;"]
    front = start(argv, base_env(), work / "nginx.log")
    return Server("nginx+churn", port, [upstream.processes[0], front])


def wait_ready(server: Server, ready: Callable[[Server], bool], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in server.processes:
            if process.poll() is not None:
                raise SystemExit(f"{server.name} exited with {process.returncode}")
        try:
            if ready(server):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{server.name} did not answer within {timeout:.0f}s")
