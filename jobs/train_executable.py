"""The `train` executable SageMaker runs: `churn train` as a command of its own.

SageMaker runs `train` with no arguments (`docker run IMAGE train`); its help must read
`Usage: train [OPTIONS]`, so it is not the `churn` group invoked with "train" prepended
(which printed `Usage: train train`) but one command carrying the group's options
(--params, --log-format) and the train command's own, built from both so they never drift.

A SageMaker training job is a production act, like the training CronJob: unless told
`--no-promote`, a winning challenger is promoted (a laptop's `dvc repro` or a plain
`churn train` only registers and judges it).
"""

from __future__ import annotations

from typing import Any

import click

from churn_jobs.cli import cli, train_command


def command() -> click.Command:
    """`churn train` with the `churn` group's options, as a top-level command."""

    @click.pass_context
    def callback(ctx: click.Context, params_path: str | None, log_format: str | None, **flags: Any) -> None:
        assert cli.callback is not None and train_command.callback is not None
        ctx.invoke(cli.callback, params_path=params_path, log_format=log_format)  # builds ctx.obj
        if flags.get("promote") is None:
            flags["promote"] = True
        ctx.invoke(train_command.callback, **flags)

    return click.Command(
        "train",
        params=[*cli.params, *train_command.params],
        callback=callback,
        help=train_command.help,
        context_settings=cli.context_settings,
    )


def main() -> None:
    command()(prog_name="train")
