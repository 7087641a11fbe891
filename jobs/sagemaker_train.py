"""The `train` executable SageMaker runs: `churn train` with the container's settings."""

from __future__ import annotations

import sys

from churn_jobs.cli import cli


def main() -> None:
    cli(args=["train", *sys.argv[1:]], prog_name="train")
