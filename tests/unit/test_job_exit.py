"""The job boundary (churn_jobs.job_exit.run_job): one line, the right exit code; quick_exit.

An unwritable path (a read-only root filesystem, a directory owned by someone else) is
configuration: exit 3 (Kubernetes' FailJob rule, no retries), naming the path and the
variable that places it. Outages stay exit 1.
"""

from __future__ import annotations

import errno
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from churn.settings import Settings, unwritable
from churn_jobs.job_exit import run_job


def _raise(error: BaseException) -> None:
    raise error


def _run(body_error: BaseException, settings: Settings | None, caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    caplog.set_level(logging.ERROR, logger="churn")
    with pytest.raises(SystemExit) as stop:
        run_job("train", lambda: _raise(body_error), settings=settings)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    return int(stop.value.code or 0), record.getMessage()


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM])
def test_an_unwritable_path_exits_3_naming_the_path_and_its_variable(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env({"CHURN_WORK_DIR": "/home/churn", "CHURN_DATA_DIR": "/tmp/churn-data"})

    exit_code, message = _run(OSError(code, "Read-only file system", "/home/churn/data/snapshot"), settings, caplog)

    assert exit_code == 3
    assert "/home/churn/data/snapshot" in message and "CHURN_WORK_DIR='/home/churn'" in message
    assert "\n" not in message


def test_the_deepest_location_holding_the_path_is_the_one_named() -> None:
    settings = Settings.from_env({"CHURN_WORK_DIR": "/srv", "CHURN_DATA_DIR": "/srv/shared/data"})

    problem = unwritable(OSError(errno.EROFS, "Read-only file system", "/srv/shared/data/customers.parquet"), settings)

    assert "under CHURN_DATA_DIR='/srv/shared/data'" in problem.message


def test_a_relative_path_is_reported_absolute_against_the_working_directory(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    exit_code, message = _run(PermissionError(errno.EACCES, "Permission denied", "data"), Settings(), caplog)

    assert exit_code == 3 and str(tmp_path / "data") in message


def test_without_settings_every_location_variable_is_named(caplog: pytest.LogCaptureFixture) -> None:
    exit_code, message = _run(OSError(errno.EROFS, "Read-only file system", "/usr/lib/x"), None, caplog)

    assert exit_code == 3
    assert all(var in message for var in ("CHURN_WORK_DIR", "CHURN_DATA_DIR", "SAGEMAKER_BASE_DIR"))


def test_an_outage_is_still_worth_retrying(caplog: pytest.LogCaptureFixture) -> None:
    exit_code, message = _run(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Settings(), caplog)

    assert exit_code == 1 and "ConnectionRefusedError" in message


def test_a_missing_file_is_not_mistaken_for_a_read_only_one(caplog: pytest.LogCaptureFixture) -> None:
    _, message = _run(FileNotFoundError(errno.ENOENT, "No such file", "data/customers.parquet"), None, caplog)

    assert "FileNotFoundError" in message and "writable" not in message


def _exit_with(code: str, before: str = "") -> subprocess.CompletedProcess[str]:
    """A process that writes, registers an exit handler, maybe starts a thread, then quick_exit(code)."""
    script = textwrap.dedent(
        f"""
        import atexit, sys
        from churn_jobs.job_exit import quick_exit
        atexit.register(lambda: sys.stdout.write("handler ran\\n"))
        sys.stdout.write("unflushed line\\n")
        {before}
        quick_exit({code})
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("code", "status"), [("0", 0), ("3", 3), ("None", 0), ("'one-line reason'", 1)])
def test_quick_exit_keeps_the_exit_status_exit_handlers_and_buffered_output(code: str, status: int) -> None:
    done = _exit_with(code)

    assert done.returncode == status
    assert done.stdout == "unflushed line\nhandler ran\n"
    assert done.stderr == ("one-line reason\n" if status == 1 else "")


def test_quick_exit_waits_for_a_running_non_daemon_thread_as_a_normal_exit_does() -> None:
    late = "import threading, time; threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()"

    done = _exit_with("3", before=late)

    assert done.returncode == 3
    assert "thread done" in done.stdout and "handler ran" in done.stdout
