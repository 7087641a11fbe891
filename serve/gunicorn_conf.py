"""gunicorn configuration for `serve`: options from the one Settings object, and the process hooks.

Worker class gthread, by measurement (bench/bench_serving.py, 2 workers, 2 busy cores): it keeps
connections alive, so 16 keep-alive clients got ~1,600-1,900 req/s against ~580 for sync, which
closes every connection. gunicorn sets TCP_NODELAY on the listener and Linux accepted sockets
inherit it, so keep-alive answers do not stall on Nagle (p50 ~1.1 ms). Our gthread worker
buffers whole requests in its event loop before a thread sees them (churn_serve.worker).

Preload, by measurement (bench/bench_serving.py --sections memory): the master imports the serving stack
(numpy, pyarrow, LightGBM, sklearn, pandas, mlflow, flask) once and the workers share it
copy-on-write; gc.freeze() before each fork keeps the collector from writing to (and so
copying) every shared object. Without preload each worker held its own ~220 MiB. The master
stays single-threaded (server.py keeps OpenBLAS and jemalloc from starting threads at
import; forking a threaded master once deadlocked a worker) and loads no model: each worker
loads its model in its own thread after the fork (/ping is 503 until then).
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Any

from churn.settings import Settings

log = logging.getLogger("churn.serve")
# sync is kept for comparison (bench_serving.py): it has no buffering front, so stalled clients block it.
WORKER_CLASSES = {"gthread": "churn_serve.worker.DrainingThreadWorker", "sync": "churn_serve.worker.JsonSyncWorker"}
KEEPALIVE_SECONDS = 5  # idle connections are closed after this (and at once when a worker stops)


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
        "bind": [bind_address(settings)],
        "workers": worker_count(settings),
        "worker_class": WORKER_CLASSES[settings.worker_class],
        # gunicorn turns a sync worker with threads into gthread: sync means one thread.
        "threads": settings.server_threads if settings.worker_class == "gthread" else 1,
        "timeout": settings.timeout,
        "graceful_timeout": settings.timeout,  # SIGTERM: in-flight requests get this long to finish
        "keepalive": KEEPALIVE_SECONDS,
        "preload_app": True,
        "accesslog": None,  # the request metrics cover it; a log line per request costs latency
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "churn-serve",
        "control_socket_disable": True,  # gunicorn 24+'s admin socket: unused, and it wants a writable $HOME
        "when_ready": when_ready,
        "pre_fork": pre_fork,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "child_exit": child_exit,
        "on_exit": on_exit,
    }
    if Path("/dev/shm").is_dir():  # the heartbeat file: a disk-backed /tmp can stall it under load
        chosen["worker_tmp_dir"] = "/dev/shm"
    return chosen


def bind_address(settings: Settings) -> str:
    """host:port as gunicorn takes it ([v6]:port for an IPv6 address)."""
    host = settings.bind_address
    return f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"


def when_ready(server: Any) -> None:
    log.info("serving", extra={"bind": [str(s) for s in server.LISTENERS], "workers": server.num_workers})


def pre_fork(server: Any, worker: Any) -> None:
    """Master: everything it holds now is shared with the child; the collector must not touch it."""
    gc.freeze()


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


def on_exit(server: Any) -> None:
    """Master, last: remove the metrics directory it made in the temp dir."""
    from churn_serve import metrics_dir

    metrics_dir.remove_own(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
