"""The prometheus_client multiprocess directory: empty at start, and never left behind in the temp dir.

With PROMETHEUS_MULTIPROC_DIR set (Kubernetes mounts one) that directory is used and emptied.
Otherwise the server makes `churn-prometheus-PID-*` in the temp dir, removes it at exit (the
master's on_exit hook) and, at start, removes those of servers that died without exiting (SIGKILL).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "churn-prometheus-"


def prepare(given: str | None) -> Path:
    """The directory to use, created and empty."""
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # a restart must not add up old counts
            stale.unlink()
        return directory
    remove_stale(Path(tempfile.gettempdir()))
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def remove_own(directory: str | None) -> None:
    """At the master's exit: remove the directory if this process made it (never a given one)."""
    if directory and Path(directory).name.startswith(f"{PREFIX}{os.getpid()}-"):
        shutil.rmtree(directory, ignore_errors=True)


def remove_stale(temp: Path) -> list[Path]:
    """Remove the directories of servers that are no longer running; returns what was removed."""
    removed = []
    for candidate in temp.glob(f"{PREFIX}*"):
        pid = candidate.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and candidate.is_dir() and not _running(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():  # our own pid on someone else's directory: a previous life of this container
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
