"""The model a worker serves: loaded in the background, swapped atomically when the alias moves.

Requests read `current()` once and keep that model to the end, so a swap never changes a
model under a running request. A model that fails to load or fails its probe is logged and
skipped; the previous one keeps serving. A model refused as untrusted (a pickle format, a
type off the allow-list, files changed since registration) is never loaded again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from churn.errors import InvalidModel, ModelNotReady, UntrustedModel
from churn.serving_model import ServingModel
from churn_serve.model_sources import ModelSource

log = logging.getLogger("churn.serve")
NO_MODEL_LOG_SECONDS = 300.0


class ModelHolder:
    """Holds the served model and the thread that loads and reloads it."""

    def __init__(
        self,
        source: ModelSource,
        poll_seconds: float,
        retry_seconds: float = 5.0,
        on_swap: Callable[[ServingModel], None] | None = None,
    ) -> None:
        self.source = source
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds if poll_seconds <= 0 else min(retry_seconds, poll_seconds)
        self.on_swap = on_swap
        self._current: ServingModel | None = None
        self._rejected: str | None = None  # a version that failed its probe: not retried
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded_at: float | None = None
        self._nothing_since: float | None = None  # when the source first had no model for us
        self._nothing_logged = -math.inf
        self._nothing_polls = 0

    @property
    def ready(self) -> bool:
        return self._current is not None

    def current(self) -> ServingModel:
        model = self._current
        if model is None:
            raise ModelNotReady("the model is still loading; try again shortly")
        return model

    def start(self) -> None:
        """Load (and, for a registry, keep polling) in a daemon thread of this process."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="model-holder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            if self.ready and (not self.source.pollable or self.poll_seconds <= 0):
                return
            self._stop.wait(self.poll_seconds if self.ready else self.retry_seconds)

    def refresh(self) -> bool:
        """Check the source once; load and swap in a new model. True if the model changed."""
        try:
            key = self.source.latest()
        except Exception as err:  # the registry may be briefly unreachable: keep serving
            log.warning("model source unreachable", extra={"source": self.source.description, "reason": repr(err)})
            return False
        served = self._current
        if key is None:
            if served is None:
                self._no_model_yet()
            return False
        self._nothing_since = None
        if served is not None and self.source.pollable and key == served.loaded.version:
            return False
        if served is not None and not self.source.pollable:
            return False
        if key == self._rejected:
            return False
        return self._load(key)

    def _no_model_yet(self) -> None:
        """WARNING with the source polled: at once, then every NO_MODEL_LOG_SECONDS (not every poll)."""
        now = time.monotonic()
        if self._nothing_since is None:
            self._nothing_since, self._nothing_polls = now, 0
        self._nothing_polls += 1
        if now - self._nothing_logged < NO_MODEL_LOG_SECONDS:
            return
        self._nothing_logged = now
        log.warning("no model to serve yet; /ping answers 503 until one is found",
                    extra={"source": self.source.description, "polls": self._nothing_polls,
                           "waiting_seconds": round(now - self._nothing_since, 1)})

    def _load(self, key: str) -> bool:
        started = time.monotonic()
        try:
            loaded = self.source.load()
        except UntrustedModel as err:  # tampered or unsafe files: refused for good, never downloaded again
            self._rejected = key
            log.error("model refused as untrusted; the previous one keeps serving",
                      extra={"source": self.source.description, "version": key, "reason": err.message})
            return False
        except Exception as err:
            log.error("model failed to load; the previous one keeps serving",
                      extra={"source": self.source.description, "version": key, "reason": repr(err)})
            return False
        try:
            model = ServingModel.prepare(loaded)
        except InvalidModel as err:
            self._rejected = loaded.version
            self.source.release(loaded)
            log.error("model failed its checks; the previous one keeps serving",
                      extra={"version": loaded.version, "reason": err.message})
            return False
        previous, self._current = self._current, model
        self.loaded_at = time.time()
        if self.on_swap is not None:
            self.on_swap(model)
        if previous is not None:
            self.source.release(previous.loaded)
        log.info("model loaded", extra={"model_version": loaded.version, "run_id": loaded.run_id,
                                        "source": loaded.source, "seconds": round(time.monotonic() - started, 3),
                                        "previous": None if previous is None else previous.loaded.version})
        return True
