"""S3 for the tests: SeaweedFS (`weed mini`), a real S3 server; moto only when asked for.

Which server `start_s3` runs comes from its `backend` argument or, by default, from
CHURN_TEST_S3_BACKEND: `seaweedfs` (the default), `moto`, or `auto` (SeaweedFS, and moto
if weed cannot start). A silent fallback would let a whole CI run pass against a
different S3 implementation than the one the tests name, so without `auto` a SeaweedFS
that cannot start is an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.process import (
    HOST,
    PIP_HINT,
    MissingBinaryError,
    Server,
    ServiceError,
    child_env,
    find_binary,
    free_ports,
    launch,
    prepare,
    tcp_open,
    wait_ready,
)

# Fixed, obviously fake credentials for the local S3 server: not secrets.
S3_ACCESS_KEY = "churn-test"
S3_SECRET_KEY = "churn-test-secret"
S3_REGION = "us-east-1"

BACKEND_ENV = "CHURN_TEST_S3_BACKEND"
BACKENDS = ("seaweedfs", "moto", "auto")


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


def _s3_ready(server: S3Server) -> Callable[[], bool]:
    def ready() -> bool:
        if not tcp_open(server.port):
            return False
        import boto3

        client = boto3.client(
            "s3", endpoint_url=server.url, region_name=server.region,
            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        )
        client.list_buckets()
        return True

    return ready


# --------------------------------------------------------------------------- a private /tmp for weed
# weed hard-codes its gRPC unix sockets as /tmp/seaweedfs-<svc>-grpc-<port>.sock. As
# root we give it a /tmp of its own in a private mount namespace, so it writes nothing
# into the real one. Mounting over /tmp hides whatever lives under the real /tmp (a
# checkout under /tmp: the venv's `weed`, the data dir), so the real /tmp is first
# bind-mounted at PRIVATE/outer, which then shows up as /tmp/outer, and every path
# given to weed is rewritten through `ns_path`. `$0` is PRIVATE; argv follows.
TMP = Path("/tmp")
OUTER = "outer"
_PRIVATE_TMP = [
    "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
    f'mount --rbind /tmp "$0/{OUTER}" && mount --rbind "$0" /tmp && exec "$@"',
]


def ns_path(path: str | Path) -> str:
    """Where `path` (of the real filesystem) is seen from inside the private-/tmp namespace."""
    # abspath, not resolve: a symlink under /tmp stays a symlink under /tmp/outer.
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(TMP)
    except ValueError:
        return str(absolute)
    return str(TMP / OUTER / relative)


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


def start_seaweedfs(data_dir: Path, timeout: float = 30.0, binary: str | None = None) -> S3Server:
    """SeaweedFS `weed mini` serving S3, every port free-chosen, every file in `data_dir`.

    `binary` is the `weed` to run (default: the venv's, then PATH's).
    """
    data_dir = prepare(data_dir)
    binary = binary or find_binary("s3")
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc,
     s3, s3_grpc, admin, admin_grpc) = free_ports(10)
    for sub in ("data", "logs", "admin"):
        (data_dir / sub).mkdir(exist_ok=True)
    private_tmp = data_dir / "tmp"
    (private_tmp / OUTER).mkdir(parents=True, exist_ok=True)
    private = _can_private_tmp(private_tmp)
    where = ns_path if private else str

    # Every component gets an explicit port: the defaults (8333, 9333, ... and
    # +10000 for gRPC) would collide with any other weed on the machine.
    argv = [
        where(binary), f"-logdir={where(data_dir / 'logs')}", "mini",
        f"-dir={where(data_dir / 'data')}", f"-ip={HOST}", f"-ip.bind={HOST}",
        "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
        f"-admin.dataDir={where(data_dir / 'admin')}",
        f"-filer.localSocket={where(data_dir / 'filer.sock')}",
        f"-s3.localSocket={where(data_dir / 's3.sock')}",
    ]
    env = child_env(data_dir, {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY})
    stray_sockets: list[Path] = []
    if private:
        # unshare and sh exec in place, so the Popen pid is weed's own pid.
        argv = [*_PRIVATE_TMP, str(private_tmp), *argv]
        env["TMPDIR"] = str(TMP)  # the private one
    else:
        # No private /tmp (not root): remove the sockets weed leaves in the real one on stop.
        stray_sockets = [
            TMP / f"seaweedfs-{svc}-grpc-{port}.sock"
            for svc, port in (("master", master_grpc), ("volume", volume_grpc),
                              ("filer", filer_grpc), ("s3", s3_grpc), ("admin", admin_grpc))
        ]
    process, log_path = launch("seaweedfs", argv, data_dir, env)
    server = S3Server(
        name="s3", url=f"http://{HOST}:{s3}", port=s3, data_dir=data_dir,
        log_path=log_path, process=process, backend="seaweedfs",
    )

    def remove_stray_sockets() -> None:
        for path in stray_sockets:
            if path.is_socket():
                path.unlink(missing_ok=True)

    server.cleanups.append(remove_stray_sockets)
    wait_ready(server, _s3_ready(server), timeout)
    return server


def start_moto(data_dir: Path, timeout: float = 30.0) -> S3Server:
    """moto's in-process S3 server: only when asked for (CHURN_TEST_S3_BACKEND=moto or auto)."""
    data_dir = prepare(data_dir)
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
    wait_ready(server, _s3_ready(server), timeout)
    return server


def s3_backend(environ: dict[str, str] | None = None) -> str:
    """The backend CHURN_TEST_S3_BACKEND asks for (default seaweedfs); a typo is an error."""
    value = (os.environ if environ is None else environ).get(BACKEND_ENV, "").strip() or "seaweedfs"
    if value not in BACKENDS:
        raise ServiceError(f"{BACKEND_ENV}={value!r}: use one of {', '.join(BACKENDS)}")
    return value


def start_s3(data_dir: Path, timeout: float = 30.0, backend: str | None = None) -> S3Server:
    """An S3 server: SeaweedFS, moto, or SeaweedFS falling back to moto (`auto`, explicit only)."""
    backend = backend or s3_backend()
    if backend == "seaweedfs":
        try:
            return start_seaweedfs(data_dir, timeout)
        except ServiceError as error:
            raise type(error)(
                f"{error}\nSeaweedFS is the S3 server the tests run against; set {BACKEND_ENV}=auto "
                "to fall back to moto (or =moto to use it) explicitly."
            ) from error
    if backend == "moto":
        return start_moto(data_dir, timeout)
    if backend != "auto":
        raise ValueError(f"unknown S3 backend {backend!r}: use {', '.join(BACKENDS)}")
    try:
        return start_seaweedfs(data_dir, timeout)
    except ServiceError as weed_error:
        try:
            return start_moto(data_dir, timeout)
        except ServiceError as moto_error:
            raise ServiceError(f"{weed_error}\nfallback to moto failed too: {moto_error}") from weed_error
