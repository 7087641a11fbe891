"""Log lines never carry a password, whoever logged it and wherever it hides in the record."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from churn import logs

SECRET = "hunter2-planted"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_password_in_a_message_an_argument_an_extra_or_a_traceback_is_redacted(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(fmt)
        log = logging.getLogger("some.library")
        url = f"http://ops:{SECRET}@mlflow:5000"
        log.warning(f"cannot reach {url}")
        log.warning("cannot reach %s", url)
        log.warning("source", extra={"source": url, "nested": {"uris": [url]}, "count": 3})
        try:
            raise ConnectionError(f"API request to {url}/api failed")
        except ConnectionError:
            log.exception("failed")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"retrying {url}", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = capsys.readouterr()
    text = out.out + out.err
    assert SECRET not in text
    assert text.count("ops:***@mlflow:5000") >= 6
    if fmt == "json":
        lines = [json.loads(line) for line in out.out.splitlines()]
        assert lines[2]["count"] == 3 and lines[2]["nested"] == {"uris": ["http://ops:***@mlflow:5000"]}


def test_warnings_reach_the_log_after_an_earlier_configure_inside_catch_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with warnings.catch_warnings():
            logs.configure("json")
        logs.configure("json")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("second configure still captures", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = capsys.readouterr()
    assert '"msg":' in out.out and "second configure still captures" in out.out
