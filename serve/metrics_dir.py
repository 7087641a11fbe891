"""The prometheus_client multiprocess directory: empty at start, and never left behind in the temp dir.

With PROMETHEUS_MULTIPROC_DIR set (Kubernetes mounts one) that directory is used and emptied.
Otherwise the server makes `churn-prometheus-PID-*` in the temp dir (churn.tempdirs), removes it
at exit (the master's on_exit hook) and, at start, removes those of servers that died without
exiting (SIGKILL).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from churn import tempdirs

PREFIX = "churn-prometheus-"


def prepare(given: str | None) -> Path:
    """The directory to use, created and empty."""
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # a restart must not add up old counts
            stale.unlink()
        return directory
    tempdirs.clean_stale(PREFIX)
    return tempdirs.create(PREFIX)


def remove_own(directory: str | None) -> None:
    """At the master's exit: remove the directory if this process made it (never a given one)."""
    if directory and Path(directory).name.startswith(f"{PREFIX}{os.getpid()}-"):
        shutil.rmtree(directory, ignore_errors=True)
