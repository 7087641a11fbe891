"""Every log line stays a line a log shipper keeps: an error quoting a huge rejected document is cut."""

from __future__ import annotations

import json
import logging

import pytest

from churn.logs import JsonFormatter, TextFormatter


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("churn", logging.ERROR, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_a_31_megabyte_message_and_field_become_a_line_of_a_few_kilobytes(formatter: logging.Formatter) -> None:
    huge = "x" * (31 << 20)

    line = formatter.format(_record(f"score failed: BulkWriteError {huge}", error=huge, document={"notes": huge}))

    assert len(line) < 20_000 and "\n" not in line
    assert "more characters" in line


def test_small_fields_are_logged_as_they_are() -> None:
    line = JsonFormatter().format(_record("scored", rows=10, bands={"high": 2}, reason="ok"))

    payload = json.loads(line)
    assert (payload["msg"], payload["rows"], payload["bands"], payload["reason"]) == ("scored", 10, {"high": 2}, "ok")
