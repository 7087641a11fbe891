"""Working directories in the temp dir that a killed process cannot leak for good.

Each directory is named PREFIX<pid>-<random>: `scoped` removes it when the block ends (also
on an exception or SIGTERM turned into one), and `clean_stale`, called at the next start,
removes every PREFIX directory whose process is gone (a SIGKILL or OOM leaves them behind).
Directories of a live process are never touched, whoever owns them.

Shared by every entrypoint that stages files: `score` (churn-score-), the model registry's
downloads (churn-model-), serving's Prometheus multiprocess dirs (churn-prometheus-).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
# Directories named before pids were part of the name: only removed once clearly abandoned.
LEGACY_AGE_SECONDS = 24 * 3600


def create(prefix: str, root: str | Path | None = None) -> Path:
    """A new directory PREFIX<pid>-XXXXXXXX in `root` (default: the temp dir)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))


@contextlib.contextmanager
def scoped(prefix: str, root: str | Path | None = None) -> Iterator[Path]:
    """`create`, removed when the block ends however it ends (short of SIGKILL)."""
    path = create(prefix, root)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clean_stale(prefix: str, root: str | Path | None = None) -> list[Path]:
    """Remove PREFIX directories of processes that no longer run; returns what was removed."""
    base = Path(root or tempfile.gettempdir())
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    removed: list[Path] = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return removed
    for path in candidates:
        match = pattern.match(path.name)
        if match:
            stale = not _alive(int(match.group(1)))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > LEGACY_AGE_SECONDS
            except OSError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    if removed:
        log.info("removed leftover temp directories", extra={"prefix": prefix, "count": len(removed)})
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
