"""`churn model ...`: the registered model's versions, model cards, promotion and rollback by hand.

Every command reaches MLflow through churn_jobs.clients (bounded retries, one clear line
when the tracking server is unreachable) and exits 3 when there is nothing to act on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import click

from churn.settings import Settings
from churn_jobs.job_exit import run_job

if TYPE_CHECKING:
    from churn.adapters.registry import ModelRegistry
    from churn.adapters.registry_actions import RegistryActions

log = logging.getLogger("churn")


class HasSettings(Protocol):
    """The `churn` group's context object (churn_jobs.cli.Context)."""

    settings: Settings


@click.group()
def model() -> None:
    """The registered model: versions, model cards, promotion and rollback by hand."""


def _registry(obj: HasSettings) -> ModelRegistry:
    from churn.adapters.registry import ModelRegistry
    from churn_jobs import clients

    return ModelRegistry(clients.mlflow_client(obj.settings), obj.settings.model_name)


def _actions(obj: HasSettings) -> RegistryActions:
    from churn.adapters.registry_actions import RegistryActions

    return RegistryActions(_registry(obj))


def _operator() -> str:
    """user@host of whoever runs the command, for the audit tags."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


_reason = click.option("--reason", required=True, help="Why: recorded on the version with who and when.")
_force = click.option("--force", is_flag=True, help="Move a version that never passed evaluation.")
_by = click.option("--by", default=None, help="Who acts (default: user@host).")


@model.command("list")
@click.pass_obj
def model_list(obj: HasSettings) -> None:
    """Versions with their aliases and test metrics."""
    from churn.adapters.registry import TO_MAKE_ONE
    from churn.errors import ModelNotFound

    registry = _registry(obj)

    def versions() -> Any:
        found = registry.versions()
        if not found:
            raise ModelNotFound(f"no versions of model {registry.name!r} in the registry at {registry.where}: "
                                f"{TO_MAKE_ONE}")
        return found

    found = run_job("model list", versions)
    click.echo(f"{'version':>7}  {'aliases':<20} {'verdict':<9} {'test f1':>8} {'roc auc':>8} {'brier':>7}  run")
    for v in found:
        m = v.metrics
        click.echo(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {v.tags.get('verdict', '-'):<9} "
            f"{m.get('test.f1', float('nan')):>8.4f} {m.get('test.roc_auc', float('nan')):>8.4f} "
            f"{m.get('test.brier', float('nan')):>7.4f}  {v.run_id}"
        )


@model.command("promote")
@click.argument("version")
@_reason
@_force
@_by
@click.pass_obj
def model_promote(obj: HasSettings, version: str, reason: str, force: bool, by: str | None) -> None:
    """Move `production` (and `staging`) to VERSION by hand."""
    actions = _actions(obj)
    before, after = run_job("model promote", lambda: actions.promote(version, reason, by or _operator(), force))
    click.echo(f"production: version {before or '-'} -> version {after}")


@model.command("rollback")
@click.option("--to", "to", default=None, help="Version to restore (default: the previous production version).")
@_reason
@_force
@_by
@click.pass_obj
def model_rollback(obj: HasSettings, to: str | None, reason: str, force: bool, by: str | None) -> None:
    """Move `production` back to the previous production version, or to --to VERSION."""
    actions = _actions(obj)
    before, after = run_job("model rollback", lambda: actions.rollback(reason, by or _operator(), to, force))
    click.echo(f"production: version {before} -> version {after}")


@model.command("show")
@click.argument("version")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True)
@click.option("--log/--no-log", "log_card", default=False, show_default=True,
              help="Also log the card as Markdown to the version's MLflow run (model_card/vN.md).")
@click.pass_obj
def model_show(obj: HasSettings, version: str, fmt: str, log_card: bool) -> None:
    """The model card of VERSION: data, schema, params, threshold, test metrics, verdict, plots."""
    from churn.adapters import model_cards

    registry = _registry(obj)
    card = run_job("model show", lambda: model_cards.card(registry, version))
    click.echo(card.text() if fmt == "text" else card.markdown(), nl=False)
    if log_card:
        path = run_job("model show", lambda: model_cards.log_markdown(registry, card))
        log.info("model card logged", extra={"run_id": card.run_id, "artifact": path})


@model.command("trust")
@click.argument("version")
@_reason
@click.option("--force", is_flag=True, help="Replace a different sha256 recorded before (files changed on purpose).")
@_by
@click.pass_obj
def model_trust(obj: HasSettings, version: str, reason: str, force: bool, by: str | None) -> None:
    """Record the sha256 of VERSION's files (for versions registered before it was recorded).

    The files must pass the same checks as loading (skops only, the project's allow-list);
    nothing is deserialized. From then on any change to them is refused at load.
    """
    actions = _actions(obj)
    digest = run_job("model trust", lambda: actions.trust(version, reason, by or _operator(), force))
    click.echo(f"version {version}: sha256 {digest} recorded")
