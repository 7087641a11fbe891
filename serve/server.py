"""`serve` / `churn serve`: build the settings once, then run gunicorn with the churn app.

prometheus_client decides at import time whether it runs in multiprocess mode, so nothing
here imports it (or the app) before PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from churn import logs
from churn.errors import ChurnError, ConfigError, mapping_for
from churn.settings import Settings

log = logging.getLogger("churn.serve")


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; a bad setting exits non-zero with the reason."""
    logs.configure(settings.log_format)
    try:
        application = _application(settings)
    except ChurnError as err:
        log.error(f"serve failed: {type(err).__name__}: {err.message}")
        sys.exit(mapping_for(err).exit_code)
    application.run()


def _application(settings: Settings) -> Any:
    """Check everything that can be checked cheaply, here in the master; build the app per worker."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="churn-prometheus-")
    from churn_serve import gunicorn_conf

    gunicorn_conf.prepare_metrics_dir(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
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
            """Runs in each worker (no preload): pyarrow, LightGBM and mlflow are imported after the fork."""
            from churn.invocations import ServingOptions
            from churn_serve.app import create_app
            from churn_serve.metrics import Metrics
            from churn_serve.model_holder import ModelHolder

            metrics = Metrics()
            holder = ModelHolder(
                source,
                settings.model_poll_seconds,
                on_swap=lambda m: metrics.model_loaded(m.loaded.name, m.loaded.version, m.loaded.run_id),
            )
            return create_app(holder, ServingOptions.from_params(params), metrics)

    return ServeApplication()


@click.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8080).")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Workers; 0 = one per core.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Request threads per worker.")
@click.option("--worker-class", type=click.Choice(["gthread", "sync"]), default=None)
@click.option("--timeout", type=click.IntRange(min=1), default=None, help="Worker timeout in seconds.")
@click.option("--model-uri", default=None, help="models:/NAME@ALIAS or a model directory.")
@click.option("--poll-seconds", type=click.FloatRange(min=0), default=None, help="Registry poll interval; 0 = never.")
@click.pass_context
def serve_command(ctx: click.Context, port: int | None, workers: int | None, threads: int | None,
                  worker_class: str | None, timeout: int | None, model_uri: str | None,
                  poll_seconds: float | None) -> None:
    """Serve real-time churn scores (SageMaker contract: /ping, /invocations on 8080, /metrics)."""
    given = {"port": port, "workers": workers, "server_threads": threads, "worker_class": worker_class,
             "timeout": timeout, "model_uri": model_uri, "model_poll_seconds": poll_seconds}
    flags: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    parent = getattr(ctx.obj, "settings", None)  # set when run as `churn serve`
    try:
        if isinstance(parent, Settings):
            settings = parent.with_(**flags)
            settings.check()
        else:
            settings = Settings.from_env(None, **flags)
    except ConfigError as err:
        raise click.UsageError(err.message) from err
    run(settings)


def main() -> None:
    """The `serve` console script (what SageMaker runs as `docker run IMAGE serve`)."""
    serve_command(prog_name="serve")


if __name__ == "__main__":
    main()
