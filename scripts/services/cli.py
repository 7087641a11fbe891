"""The command line of the test servers, for local runs outside pytest.

    python scripts/services up [--only mongo,s3,pushgateway,prometheus,mlflow] [--dir DIR]
    python scripts/services check

``up`` starts the servers in fresh subdirectories of DIR (default ``.services/``),
writes ``DIR/services.env`` (``export`` lines: MONGODB_URI, AWS_ENDPOINT_URL_S3,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, PUSHGATEWAY_URL,
PROMETHEUS_URL, MLFLOW_TRACKING_URI) once all are ready, and stays in the
foreground until SIGTERM/SIGINT; then it removes the env file, stops the servers
and keeps their data dirs and logs. ``check`` lists which executables are installed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from services.mlflow_server import MlflowServer, start_mlflow
from services.mongo import MongoServer, start_mongo
from services.process import REPO_ROOT, MissingBinaryError, Server, ServiceError, find_binary, log_tail, prepare
from services.prometheus import PrometheusServer, PushgatewayServer, start_prometheus, start_pushgateway
from services.s3 import S3Server, start_s3

SERVICE_NAMES = ("mongo", "s3", "pushgateway", "prometheus", "mlflow")


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
    base_dir = prepare(base_dir)
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
                    print(f"services: {server.name} died; log {server.log_path}\n{log_tail(server.log_path)}",
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
    """Entry point of `python scripts/services`."""
    parser = argparse.ArgumentParser(
        prog="services", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
