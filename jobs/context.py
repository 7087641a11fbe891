"""What every `churn` subcommand gets from the group: settings and params, built once."""

from __future__ import annotations

import click

from churn.params import Params, load_params
from churn.settings import Settings


class Context:
    """Settings and params, built once from the environment and the group's flags."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._params: Params | None = None

    @property
    def params(self) -> Params:
        if self._params is None:
            self._params = load_params(self.settings.params_path)
        return self._params


pass_context = click.make_pass_decorator(Context)
