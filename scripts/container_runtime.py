"""Run the project's image as Kubernetes would, with Docker or, without an engine, buildah + chroot.

Used by the image tests (tests/image) and bench/bench_image.py. `detect()` picks:

- `DockerRuntime` when a Docker engine answers: `docker run --read-only --tmpfs /tmp
  --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges --network host`.
- `ChrootRuntime` otherwise (buildah installed): the image's root filesystem comes from
  `buildah from` + `buildah mount`; each run is `unshare --mount --pid --fork` (a mount and a
  PID namespace of its own), the root bind-mounted READ-ONLY, a fresh tmpfs on /tmp, the
  caller's directories on /opt/ml, then `chroot` and util-linux `setpriv` to UID/GID
  10001 with no supplementary groups, no_new_privs and an empty capability bounding set,
  then the image's ENTRYPOINT + command with the image's Env and WorkingDir. So tini
  really is PID 1 and a write outside /tmp and /opt/ml fails with EROFS.
  What it cannot do (docs/deployment.md "What the chroot runtime cannot prove"): no
  network namespace (host network), no seccomp profile, no cgroup limits, no user
  namespace, and the image's HEALTHCHECK is not run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

APP_USER = "10001:10001"


class RuntimeMissing(RuntimeError):
    """Neither a Docker engine nor buildah: the image cannot be built or run here."""


@dataclass(frozen=True)
class RunSpec:
    """`docker run IMAGE *command` with these settings (the k8s securityContext by default)."""

    image: str
    command: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)  # host dir -> container dir (read-write)
    user: str = APP_USER


@dataclass(frozen=True)
class Layer:
    created_by: str
    size: int  # uncompressed tar bytes
    compressed: int  # gzip -6 bytes (what a registry stores and a node pulls)


class Running(Protocol):
    def signal(self, sig: int) -> None: ...
    def wait(self, timeout: float) -> int: ...
    def kill(self) -> None: ...
    def init_pid(self) -> int | None: ...
    def output(self) -> str: ...


class Runtime(Protocol):
    name: str

    def build(self, image: str, repo: Path) -> None: ...
    def run(self, spec: RunSpec, timeout: float) -> subprocess.CompletedProcess[str]: ...
    def start(self, spec: RunSpec) -> Running: ...
    def rootfs(self, image: str) -> Any: ...  # context manager yielding the image's files (Path)
    def config(self, image: str) -> dict[str, Any]: ...
    def layers(self, image: str) -> list[Layer]: ...


def _check(args: Sequence[str], **kw: Any) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def build(image: str, repo: Path) -> None:
    """scripts/build-image.sh (docker or buildah, stand-in base when needed)."""
    proc = subprocess.run(["bash", str(repo / "scripts" / "build-image.sh")], env={**os.environ, "IMAGE": image},
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"building {image} failed:\n{tail}")


def _layers_from_archive(archive: Path) -> list[Layer]:
    """Per-layer sizes from a `docker save`-format archive (manifest.json + config history)."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        history = [h.get("created_by", "") for h in config.get("history", []) if not h.get("empty_layer")]
        layers = []
        for index, name in enumerate(manifest["Layers"]):
            member = tar.extractfile(name)
            assert member is not None
            size = compressed = 0
            gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
            while chunk := member.read(1 << 20):
                size += len(chunk)
                compressed += len(gzip.compress(chunk))
            compressed += len(gzip.flush())
            created_by = history[index] if index < len(history) else "?"
            layers.append(Layer(" ".join(created_by.split())[:110], size, compressed))
    return layers


# --------------------------------------------------------------------------------------- docker


class _DockerRunning:
    def __init__(self, name: str) -> None:
        self.name = name

    def signal(self, sig: int) -> None:
        _check(["docker", "kill", "--signal", signal.Signals(sig).name, self.name])

    def wait(self, timeout: float) -> int:
        return int(_check(["docker", "wait", self.name], timeout=timeout).strip())

    def kill(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)

    def init_pid(self) -> int | None:
        out = _check(["docker", "inspect", "--format", "{{.State.Pid}}", self.name]).strip()
        return int(out) if out.isdigit() and out != "0" else None

    def output(self) -> str:
        proc = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True)
        return proc.stdout + proc.stderr


class DockerRuntime:
    name = "docker"

    def build(self, image: str, repo: Path) -> None:
        build(image, repo)

    def _args(self, spec: RunSpec) -> list[str]:
        args = ["--read-only", "--tmpfs", "/tmp", "--user", spec.user, "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "--network", "host"]
        for host, inside in spec.mounts.items():
            args += ["-v", f"{host}:{inside}"]
        for key, value in spec.env.items():
            args += ["-e", f"{key}={value}"]
        return [*args, spec.image, *spec.command]

    def run(self, spec: RunSpec, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "run", "--rm", *self._args(spec)], capture_output=True, text=True,
                              timeout=timeout)

    def start(self, spec: RunSpec) -> Running:
        name = f"churn-test-{os.getpid()}-{time.monotonic_ns()}"
        _check(["docker", "run", "-d", "--name", name, *self._args(spec)])
        return _DockerRunning(name)

    @contextmanager
    def rootfs(self, image: str) -> Iterator[Path]:
        ctr = _check(["docker", "create", image]).strip()
        work = Path(tempfile.mkdtemp(prefix="churn-rootfs-"))
        try:
            export = subprocess.Popen(["docker", "export", ctr], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(work)], stdin=export.stdout, check=True)
            export.wait()
            yield work
        finally:
            subprocess.run(["docker", "rm", "-f", ctr], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)

    def config(self, image: str) -> dict[str, Any]:
        data = json.loads(_check(["docker", "image", "inspect", image]))[0]
        return dict(data["Config"])

    def layers(self, image: str) -> list[Layer]:
        with tempfile.TemporaryDirectory(prefix="churn-save-") as tmp:
            archive = Path(tmp) / "image.tar"
            _check(["docker", "save", "-o", str(archive), image])
            return _layers_from_archive(archive)


# --------------------------------------------------------------------------------------- chroot

# Runs as PID 1 of the new PID namespace, in a private copy of the mount namespace:
# read-only root, proc, a minimal /dev, tmpfs /tmp, the caller's mounts, then the job.
_CHROOT_SCRIPT = r"""
set -eu
R="$1"; shift
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir -p "$R/dev/shm" && mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
while [ "$1" != "--" ]; do mount --bind "$1" "$R$2"; shift 2; done
shift
exec chroot "$R" "$@"
"""


class _ChrootRunning:
    def __init__(self, process: subprocess.Popen[str], log: Path, cleanup: Any) -> None:
        self.process = process
        self.log = log
        self._cleanup = cleanup

    def init_pid(self) -> int | None:
        """Host PID of the namespace's PID 1 (the child `unshare --fork` made)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None

    def signal(self, sig: int) -> None:
        pid = self.init_pid()
        if pid is not None:
            os.kill(pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is not None:
                self._cleanup()

    def kill(self) -> None:
        if self.process.poll() is None:
            pid = self.init_pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)  # PID 1 gone: the kernel kills the whole namespace
            self.process.kill()
            self.process.wait(30)
        self._cleanup()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ChrootRuntime:
    name = "buildah+chroot"

    def build(self, image: str, repo: Path) -> None:
        build(image, repo)

    def config(self, image: str) -> dict[str, Any]:
        data = json.loads(_check(["buildah", "inspect", "--type", "image", image]))
        return dict(data["OCIv1"]["config"])

    @contextmanager
    def rootfs(self, image: str) -> Iterator[Path]:
        """The image's files: a throwaway working container, mounted; removed afterwards."""
        ctr = _check(["buildah", "from", "--pull-never", "--quiet", image]).strip()
        try:
            yield Path(_check(["buildah", "mount", ctr]).strip())
        finally:
            subprocess.run(["buildah", "umount", ctr], capture_output=True)
            subprocess.run(["buildah", "rm", ctr], capture_output=True)

    def _command(self, spec: RunSpec, root: Path) -> list[str]:
        config = self.config(spec.image)
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        env.update(spec.env)
        uid, _, gid = spec.user.partition(":")
        inside = [
            "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups", "--no-new-privs",
            "--bounding-set=-all", "--inh-caps=-all",
            "/usr/bin/env", "-i", f"--chdir={config.get('WorkingDir') or '/'}",
            *(f"{k}={v}" for k, v in env.items()),
            *(config.get("Entrypoint") or []), *(spec.command or config.get("Cmd") or []),
        ]
        mounts: list[str] = []
        for host, target in spec.mounts.items():
            if not (root / target.lstrip("/")).is_dir():
                raise RuntimeError(f"{target} is not a directory in {spec.image}: the read-only root cannot get a "
                                   "new mount point")
            mounts += [host, target]
        return ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "--kill-child",
                "sh", "-c", _CHROOT_SCRIPT, "sh", str(root), *mounts, "--", *inside]

    def run(self, spec: RunSpec, timeout: float) -> subprocess.CompletedProcess[str]:
        with self.rootfs(spec.image) as root:
            return subprocess.run(self._command(spec, root), capture_output=True, text=True, timeout=timeout)

    def start(self, spec: RunSpec) -> Running:
        context = self.rootfs(spec.image)
        root = context.__enter__()
        log = Path(tempfile.mkstemp(prefix="churn-container-", suffix=".log")[1])
        with log.open("w") as out:
            process = subprocess.Popen(self._command(spec, root), stdout=out, stderr=subprocess.STDOUT, text=True)
        done = False

        def cleanup() -> None:
            nonlocal done
            if not done:
                done = True
                context.__exit__(None, None, None)

        return _ChrootRunning(process, log, cleanup)

    def layers(self, image: str) -> list[Layer]:
        with tempfile.TemporaryDirectory(prefix="churn-save-") as tmp:
            archive = Path(tmp) / "image.tar"
            _check(["buildah", "push", "--quiet", image, f"docker-archive:{archive}"])
            return _layers_from_archive(archive)


def detect() -> Runtime:
    """Docker when an engine answers, else buildah; neither: RuntimeMissing naming what to install."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return DockerRuntime()
    missing = [tool for tool in ("buildah", "unshare", "chroot") if not shutil.which(tool)]
    if not missing:
        return ChrootRuntime()
    raise RuntimeMissing(
        "the image can be neither built nor run here: no Docker engine answers and "
        f"{', '.join(missing)} not found; install it with 'apt-get install -y buildah debootstrap' "
        "(Debian packages; debootstrap builds the stand-in base when the official one cannot be pulled)"
    )
