"""The one place a job turns an exception into a one-line reason and an exit code."""

from __future__ import annotations

import atexit
import errno
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from churn.errors import ChurnError, mapping_for
from churn.settings import Settings, redact, unwritable

log = logging.getLogger("churn")
T = TypeVar("T")
# A path the job may not write (read-only root filesystem, another owner): a rerun fails
# the same way, so it is configuration (exit 3), never an outage worth retrying.
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
MAX_REASON = 2_000


def run_job(
    name: str, body: Callable[[], T], failure_file: Path | None = None, settings: Settings | None = None
) -> T:
    """Run `body`; on error log one line, write `failure_file` if given, exit non-zero.

    `settings`, when given, lets an unwritable path be reported with the variable that places it.
    """
    try:
        return body()
    except ChurnError as err:
        fail(name, f"{type(err).__name__}: {err.message}", mapping_for(err).exit_code, failure_file)
    except OSError as err:
        if err.errno not in NOT_WRITABLE:
            _unexpected(name, err, failure_file)
        problem = unwritable(err, settings)
        fail(name, f"{type(problem).__name__}: {problem.message}", mapping_for(problem).exit_code, failure_file)
    except Exception as err:  # the job boundary: anything else is a bug or an outage
        _unexpected(name, err, failure_file)


def _unexpected(name: str, err: Exception, failure_file: Path | None) -> NoReturn:
    log.debug("traceback", exc_info=True)
    reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    fail(name, reason, mapping_for(err).exit_code, failure_file, exc=err)


def fail(name: str, reason: str, code: int, failure_file: Path | None, exc: BaseException | None = None) -> NoReturn:
    reason = redact(reason)  # also before logging is configured, and in the failure file
    if len(reason) > MAX_REASON:  # an error quoting a huge document stays one readable line
        reason = f"{reason[:MAX_REASON]}...[{len(reason) - MAX_REASON} more characters]"
    with_trace = exc is not None and log.isEnabledFor(logging.DEBUG)
    log.error(f"{name} failed: {reason}", extra={"job": name, "exit_code": code}, exc_info=with_trace)
    if failure_file is not None:
        try:
            failure_file.parent.mkdir(parents=True, exist_ok=True)
            failure_file.write_text(reason + "\n")
        except OSError:
            log.warning("could not write failure file", extra={"path": str(failure_file)})
    sys.exit(code)


def quick_exit(code: int | str | None) -> NoReturn:
    """End the process as `sys.exit(code)` would, without the interpreter's teardown.

    A job that is done gains nothing from Python freeing the objects of its thousands of
    modules one by one (about a second here with LightGBM, scikit-learn and pyarrow loaded):
    the exit handlers still run (log handlers flush, temporary directories go), the standard
    streams are flushed, and the exit status is the one `sys.exit` gives. While a non-daemon
    thread is still running this is a plain `sys.exit`, which waits for it.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(status & 0xFF)
