"""The one retry policy: retries transient errors with backoff and one log line each, gives up
with one line naming where, what and how many attempts; anything else passes through at once."""

from __future__ import annotations

import logging

import pytest

from churn.errors import UnavailableService
from churn.retries import RetryPolicy, one_line

FAST = RetryPolicy(attempts=3, backoff=0.001, max_wait=0.01)


def test_a_transient_error_is_retried_until_the_action_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset by peer")
        return "done"

    with caplog.at_level(logging.WARNING, logger="churn.retries"):
        assert FAST.call("MongoDB", "upsert risk rows", flaky, lambda e: isinstance(e, ConnectionError)) == "done"

    assert len(calls) == 3
    retries = [r for r in caplog.records if r.getMessage() == "transient error, retrying"]
    assert [(r.where, r.what, r.attempt) for r in retries] == [  # type: ignore[attr-defined]
        ("MongoDB", "upsert risk rows", 1),
        ("MongoDB", "upsert risk rows", 2),
    ]


def test_giving_up_names_where_what_and_the_attempt_count_in_one_line() -> None:
    def down() -> None:
        raise ConnectionError("connection refused\n  ↳ tcp connect error")

    with pytest.raises(UnavailableService) as raised:
        FAST.call("risk table s3://b/risk", "commit shard 2 of 2024-01-31", down, lambda e: True)

    assert raised.value.message == (
        "risk table s3://b/risk: could not commit shard 2 of 2024-01-31 after 3 attempts: "
        "connection refused tcp connect error"
    )


def test_an_error_that_retrying_cannot_fix_is_raised_at_once() -> None:
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("schema mismatch")

    with pytest.raises(ValueError, match="schema mismatch"):
        FAST.call("MongoDB", "write", bad, lambda e: isinstance(e, ConnectionError))
    assert calls == [1]


def test_a_deadline_stops_retrying_before_the_attempts_run_out() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("timeout")

    policy = RetryPolicy(attempts=100, backoff=0.05, max_wait=0.05, deadline=0.2)
    with pytest.raises(UnavailableService, match="after [1-9] attempts"):
        policy.call("S3", "reach", down, lambda e: True)
    assert len(calls) < 100


def test_one_line_strips_colour_codes_and_bounds_the_length() -> None:
    err = OSError("\x1b[31m↳\x1b[0m Error performing GET\n" + "x" * 1000)

    line = one_line(err)

    assert "\x1b" not in line and "\n" not in line and len(line) <= 300 and line.startswith("Error performing GET")
