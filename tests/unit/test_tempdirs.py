"""Staging directories: removed when the block ends, and a killed process's leftovers removed
at the next start, never a live process's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from churn import tempdirs


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_scoped_directory_is_removed_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), tempdirs.scoped("churn-score-", tmp_path) as staging:
        (staging / "risk.arrow").write_bytes(b"x" * 100)
        raise RuntimeError("SIGTERM turned into an exception")

    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = tmp_path / f"churn-score-{_dead_pid()}-abcd1234"
    live = tmp_path / f"churn-score-{os.getppid()}-efgh5678"  # the test runner's parent: alive
    mine = tempdirs.create("churn-score-", tmp_path)
    other_prefix = tmp_path / f"churn-model-{_dead_pid()}-ijkl"
    for path in (dead, live, other_prefix):
        path.mkdir()
        (path / "part").write_text("staged rows")

    removed = tempdirs.clean_stale("churn-score-", tmp_path)

    assert removed == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, mine.name, other_prefix.name])


def test_old_style_names_without_a_pid_are_removed_only_once_abandoned(tmp_path: Path) -> None:
    fresh = tmp_path / "churn-score-k2j3h4g5"
    stale = tmp_path / "churn-score-z9y8x7w6"
    fresh.mkdir()
    stale.mkdir()
    old = tempdirs.LEGACY_AGE_SECONDS + 60
    os.utime(stale, (stale.stat().st_atime - old, stale.stat().st_mtime - old))

    assert tempdirs.clean_stale("churn-score-", tmp_path) == [stale]
    assert fresh.exists()
