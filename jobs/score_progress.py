"""The nightly job's progress: counts and rate as periodic log lines, so a long run shows it is alive."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("churn.score")  # the nightly job's logger: progress lines read with its other lines
PROGRESS_SECONDS = 10.0


class Progress:
    """Counts and rate every PROGRESS_SECONDS as a log line; a bar too when stdout is a terminal."""

    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.started = time.monotonic()
        self.last = self.started
        self.bar: Any = None
        if sys.stdout.isatty() and not os.environ.get("CI"):
            from tqdm import tqdm

            self.bar = tqdm(unit=" customers", desc=f"shard {shard}", file=sys.stderr)

    def update(self, tally: Any) -> None:
        now = time.monotonic()
        if self.bar is not None:
            self.bar.update(tally.read - self.bar.n)
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            log.info(
                "scoring progress",
                extra={
                    "shard": self.shard,
                    "read": tally.read,
                    "scored": tally.scored,
                    "rejected": tally.rejected,
                    "rows_per_s": round(tally.read / max(now - self.started, 1e-9)),
                },
            )

    def close(self, tally: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        seconds = time.monotonic() - self.started
        log.info(
            "scored",
            extra={
                "shard": self.shard,
                "read": tally.read,
                "scored": tally.scored,
                "rejected": tally.rejected,
                "seconds": round(seconds, 2),
                "rows_per_s": round(tally.read / max(seconds, 1e-9)),
            },
        )
