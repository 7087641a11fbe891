"""gunicorn configuration for `serve`: options from the one Settings object, and the process hooks.

Worker class gthread, by measurement (bench/bench_serving.py, 2 workers, 2 busy cores): it keeps
connections alive, so 16 keep-alive clients got ~1,600-1,900 req/s against ~580 for sync, which
closes every connection. gunicorn sets TCP_NODELAY on the listener and Linux accepted sockets
inherit it, so keep-alive answers do not stall on Nagle (p50 ~1.1 ms). No preload: importing
pyarrow starts a jemalloc thread and forking a threaded master deadlocked a worker in tests;
preload saved no memory at 2 workers (436 vs 442 MiB PSS in all) and ~80 MiB per extra worker.
Each worker imports the stack and loads its model in its own thread (/ping is 503 until then).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from churn.settings import Settings

log = logging.getLogger("churn.serve")
WORKER_CLASSES = {"gthread": "churn_serve.worker.DrainingThreadWorker", "sync": "sync"}
KEEPALIVE_SECONDS = 5  # idle connections also hold up a SIGTERM drain this long at most


def worker_count(settings: Settings) -> int:
    """SAGEMAKER_MODEL_SERVER_WORKERS, or one per usable core."""
    if settings.workers:
        return settings.workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def options(settings: Settings) -> dict[str, Any]:
    """The gunicorn settings (names as in gunicorn's docs) for these Settings."""
    chosen: dict[str, Any] = {
        "bind": [f"0.0.0.0:{settings.port}"],
        "workers": worker_count(settings),
        "worker_class": WORKER_CLASSES[settings.worker_class],
        # gunicorn turns a sync worker with threads into gthread: sync means one thread.
        "threads": settings.server_threads if settings.worker_class == "gthread" else 1,
        "timeout": settings.timeout,
        "graceful_timeout": settings.timeout,  # SIGTERM: in-flight requests get this long to finish
        "keepalive": KEEPALIVE_SECONDS,
        "preload_app": False,
        "accesslog": None,  # the request metrics cover it; a log line per request costs latency
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "churn-serve",
        "control_socket_disable": True,  # gunicorn 24+'s admin socket: unused, and it wants a writable $HOME
        "when_ready": when_ready,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "child_exit": child_exit,
    }
    if Path("/dev/shm").is_dir():  # the heartbeat file: a disk-backed /tmp can stall it under load
        chosen["worker_tmp_dir"] = "/dev/shm"
    return chosen


def prepare_metrics_dir(directory: Path) -> None:
    """Master, before the app exists: an empty metrics directory (a restart must not add up old counts)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def when_ready(server: Any) -> None:
    log.info("serving", extra={"bind": [str(s) for s in server.LISTENERS], "workers": server.num_workers})


def post_worker_init(worker: Any) -> None:
    """Each worker: start loading the model (and polling for new ones) in its own thread."""
    worker.wsgi.extensions["churn"]["holder"].start()


def worker_exit(server: Any, worker: Any) -> None:
    """Worker, after draining: stop polling the registry."""
    wsgi = getattr(worker, "wsgi", None)
    if wsgi is not None:
        wsgi.extensions["churn"]["holder"].stop()


def child_exit(server: Any, worker: Any) -> None:
    """Master, when a worker is gone: drop its live gauges (model info) from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
