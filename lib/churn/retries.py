"""The one retry policy for remote calls (MongoDB, the Delta risk table): bounded attempts,
exponential backoff, an optional total deadline, the same warning line for every retry and
the same one-line `UnavailableService` when the attempts run out.

Adapters take a `RetryPolicy` in their constructor (tests pass a fast one) and say which
errors are transient; everything else propagates at once, since retrying cannot fix it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

from churn.errors import UnavailableService

log = logging.getLogger("churn.retries")
T = TypeVar("T")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
MAX_REASON = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure before giving up with one line."""

    attempts: int = 3
    backoff: float = 0.5  # first wait in seconds; doubles per attempt
    max_wait: float = 8.0
    deadline: float | None = None  # total seconds across attempts (each try is bounded by its client)

    def call(
        self,
        where: str,
        what: str,
        action: Callable[[], T],
        transient: Callable[[BaseException], bool],
    ) -> T:
        """`action()`, retried while it raises a transient error; then UnavailableService naming
        `where` (a server or table URI), `what` was being done and how many attempts were made."""
        stop: stop_base = stop_after_attempt(self.attempts)
        if self.deadline is not None:
            stop = stop | stop_after_delay(self.deadline)
        retrying = Retrying(
            stop=stop,
            wait=wait_exponential(multiplier=self.backoff, max=self.max_wait),
            retry=retry_if_exception(transient),
            before_sleep=_log_retry(where, what),
            reraise=True,
        )
        try:
            return retrying(action)
        except Exception as err:
            if not transient(err):
                raise
            attempts = retrying.statistics.get("attempt_number", self.attempts)
            raise UnavailableService(
                f"{where}: could not {what} after {attempts} attempt{'s' if attempts != 1 else ''}: {one_line(err)}"
            ) from err


def _log_retry(where: str, what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "transient error, retrying",
            extra={
                "where": where,
                "what": what,
                "attempt": state.attempt_number,
                "wait_s": round(state.upcoming_sleep, 2),
                "error": one_line(error) if error is not None else "",
            },
        )

    return before_sleep


def one_line(err: BaseException, limit: int = MAX_REASON) -> str:
    """The gist of an error for a one-line reason: no colour codes, no continuation lines, bounded."""
    text = _ANSI.sub("", str(err)).strip()
    line = " ".join(part.strip(" ↳|") for part in text.splitlines() if part.strip(" ↳|")) if text else ""
    line = line or type(err).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
