"""gunicorn's gthread worker with a drain that ends when the last connection does.

gunicorn 26's graceful shutdown waits in one poll for the whole graceful timeout, so a client
holding an idle keep-alive connection kept every SIGTERM waiting the full 60 s (measured). Here
the wait is sliced, so idle connections are closed as their keep-alive expires and the worker
exits within seconds once in-flight requests are answered.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker

_SLICE_SECONDS = 0.5


class DrainingThreadWorker(ThreadWorker):
    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(min(timeout, _SLICE_SECONDS))
