"""`serve` / `churn serve`: build the settings once, then run gunicorn with the churn app.

The master imports the whole serving stack (preload) and the workers share those pages
copy-on-write; each worker still loads its model in its own thread (see gunicorn_conf).
prometheus_client decides at import time whether it runs in multiprocess mode, so nothing
is imported before PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any, NoReturn

import click

from churn import logs
from churn.errors import ChurnError, ConfigError, mapping_for
from churn.settings import Settings

log = logging.getLogger("churn.serve")

# Set before the stack is imported so the master stays single-threaded (forking a threaded
# process can deadlock the child): OpenBLAS starts a thread pool at import, and pyarrow's
# jemalloc a background thread. Serving needs neither (one row per LightGBM call).
_SINGLE_THREADED_IMPORTS = {"OPENBLAS_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false"}
# What a worker imports to load and serve a model, imported once in the master so every worker
# shares it. A name missing here costs memory, not correctness.
SHARED_MODULES = (
    "churn.invocations", "churn.serving_model", "churn.adapters.model_format", "churn.adapters.registry",
    "mlflow.models", "mlflow.sklearn", "skops.io", "pyarrow.pandas_compat", "lightgbm.sklearn",
)


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; a bad setting exits 3 with the reason."""
    logs.configure(settings.log_format)
    try:
        application = _application(settings)
    except ChurnError as err:
        _fail(err)
    application.run()


def _fail(err: ChurnError) -> NoReturn:
    log.error(f"serve failed: {type(err).__name__}: {err.message}", extra={"exit_code": mapping_for(err).exit_code})
    sys.exit(mapping_for(err).exit_code)


def _application(settings: Settings) -> Any:
    """Check everything that can be checked cheaply, here in the master, and build the app once."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for name, value in _SINGLE_THREADED_IMPORTS.items():
        os.environ.setdefault(name, value)
    from churn_serve import gunicorn_conf, metrics_dir

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.prepare(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        raise ConfigError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set")

    from gunicorn.app.base import BaseApplication

    from churn.params import load_params
    from churn_serve.model_sources import source_for

    params = load_params(settings.params_path)  # a bad params file fails here, not in every worker
    source = source_for(settings)
    log.info("model source", extra={"source": source.description, "poll_seconds": settings.model_poll_seconds})

    class ServeApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_conf.options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            """Runs once, in the master (preload): the workers fork with the stack already imported."""
            from churn.invocations import ServingOptions
            from churn_serve.app import create_app
            from churn_serve.metrics import Metrics
            from churn_serve.model_holder import ModelHolder

            _import_shared_modules()
            metrics = Metrics()
            holder = ModelHolder(
                source,
                settings.model_poll_seconds,
                on_swap=lambda m: metrics.model_loaded(m.loaded.name, m.loaded.version, m.loaded.run_id),
            )
            return create_app(holder, ServingOptions.from_params(params), metrics)

    return ServeApplication()


def _import_shared_modules() -> None:
    for name in SHARED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:  # a module renamed elsewhere: each worker imports it alone
            log.warning("not preloaded; each worker imports it", extra={"module": name, "reason": str(err)})


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default 0.0.0.0; 127.0.0.1 keeps it local).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8080).")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Workers; 0 = one per core.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Request threads per worker.")
@click.option("--worker-class", type=click.Choice(["gthread", "sync"]), default=None)
@click.option("--timeout", type=click.IntRange(min=1), default=None,
              help="Seconds to receive a request and to answer it.")
@click.option("--model-uri", default=None, help="models:/NAME@ALIAS or a model directory.")
@click.option("--poll-seconds", type=click.FloatRange(min=0), default=None, help="Registry poll interval; 0 = never.")
@click.pass_context
def serve_command(ctx: click.Context, host: str | None, port: int | None, workers: int | None, threads: int | None,
                  worker_class: str | None, timeout: int | None, model_uri: str | None,
                  poll_seconds: float | None) -> None:
    """Serve real-time churn scores (SageMaker contract: /ping, /invocations on 8080, /metrics)."""
    given = {"bind_address": host, "port": port, "workers": workers, "server_threads": threads,
             "worker_class": worker_class, "timeout": timeout, "model_uri": model_uri,
             "model_poll_seconds": poll_seconds}
    flags: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    parent = getattr(ctx.obj, "settings", None)  # set when run as `churn serve`
    try:
        settings = parent.with_(**flags) if isinstance(parent, Settings) else Settings.from_env(None, **flags)
    except ConfigError as err:  # exit 3 (do not retry), as every job does: click's usage errors exit 2
        logs.configure(os.environ.get("LOG_FORMAT") or "auto")
        _fail(err)
    run(settings)


def main() -> None:
    """The `serve` console script (what SageMaker runs as `docker run IMAGE serve`)."""
    serve_command(prog_name="serve")


if __name__ == "__main__":
    main()
