"""What an operator does to the registry by hand: promote, roll back, trust a version's files.

Each act is refused when it would put an unevaluated version in production (unless
forced), and recorded with who, when and why: the latest act as tags on the version
(`promote.*`, `rollback.*`, `trust.*`) and every act as one `audit.*` JSON tag on the
registered model.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from churn.adapters import model_format
from churn.adapters.registry import (
    PRODUCTION,
    ROLLED_BACK_TAG,
    SHA256_TAG,
    SINCE_TAG,
    STAGING,
    VERDICT_TAG,
    ModelRegistry,
    VersionInfo,
)
from churn.errors import ConfigError, ModelNotFound, UntrustedModel
from churn.settings import redact

log = logging.getLogger(__name__)


class RegistryActions:
    """Hand acts on one registered model, each recorded."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def promote(self, version: str, reason: str, by: str, force: bool = False) -> tuple[str | None, str]:
        """Move `production` (and `staging`) to `version`; returns (from, to)."""
        registry = self.registry
        target = registry.version(version)
        _evaluated_or_forced(target, force)
        current = registry.version_for(PRODUCTION)
        before = current.version if current else None
        registry.set_alias(STAGING, target.version)
        registry.set_alias(PRODUCTION, target.version)
        registry.client.set_model_version_tag(registry.name, target.version, ROLLED_BACK_TAG, "false")
        self._audit("promote", target.version, before, reason, by, force)
        return before, target.version

    def rollback(self, reason: str, by: str, to: str | None = None, force: bool = False) -> tuple[str, str]:
        """Move `production` back to `to`, or to the version that held it before; returns (from, to)."""
        registry = self.registry
        current = registry.version_for(PRODUCTION)
        if current is None:
            raise ModelNotFound(f"model {registry.name!r} has no production version to roll back in {registry.where}")
        if to is not None:
            target = registry.version(to)
            if target.version == current.version:
                raise ConfigError(f"version {to} of {registry.name!r} is already production")
            _evaluated_or_forced(target, force)
        else:
            target = self._previous_production(current)
        client = registry.client
        client.set_model_version_tag(registry.name, current.version, ROLLED_BACK_TAG, "true")
        if SINCE_TAG not in target.tags:  # never served before: its production time starts now
            client.set_model_version_tag(registry.name, target.version, SINCE_TAG, str(time.time()))
        # A former champion keeps its original production_since, so a second rollback goes further back.
        client.set_registered_model_alias(registry.name, PRODUCTION, target.version)
        client.set_registered_model_alias(registry.name, STAGING, target.version)
        self._audit("rollback", target.version, current.version, reason, by, force)
        return current.version, target.version

    def trust(self, version: str, reason: str, by: str, force: bool = False) -> str:
        """Record the sha256 of a version registered without one (before it was recorded); returns it.

        The files must pass model_format.check (skops only, the allow-list: nothing runs);
        a different sha256 recorded before is kept unless `force`.
        """
        registry = self.registry
        info = registry.version(version)
        mv = registry.client.get_model_version(registry.name, info.version)
        target = Path(tempfile.mkdtemp(prefix="churn-model-"))
        try:
            local = Path(registry.download(info, mv, target))
            model_format.check(local)
            actual = model_format.digest(local)
        finally:
            shutil.rmtree(target, ignore_errors=True)
        recorded = info.tags.get(SHA256_TAG)
        if recorded and recorded != actual and not force:
            raise UntrustedModel(
                f"model {registry.name!r} version {info.version}: its files (sha256 {actual}) differ from the "
                f"sha256 recorded at registration ({recorded}); --force to record the new one"
            )
        registry.client.set_model_version_tag(registry.name, info.version, SHA256_TAG, actual)
        self._audit("trust", info.version, recorded, reason, by, force)
        return actual

    def _previous_production(self, current: VersionInfo) -> VersionInfo:
        earlier = [
            v
            for v in self.registry.versions()
            if v.version != current.version
            and SINCE_TAG in v.tags
            and v.tags.get(ROLLED_BACK_TAG) != "true"
            and float(v.tags[SINCE_TAG]) < float(current.tags.get(SINCE_TAG, "inf"))
        ]
        if not earlier:
            raise ModelNotFound(
                f"model {self.registry.name!r} has no earlier production version; name one with --to VERSION"
            )
        return max(earlier, key=lambda v: float(v.tags[SINCE_TAG]))

    def _audit(self, action: str, version: str, before: str | None, reason: str, by: str, forced: bool) -> None:
        registry = self.registry
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry = {"action": action, "version": version, "from": before or "", "reason": redact(reason),
                 "by": redact(by), "at": at, "forced": "true" if forced else "false"}
        for key in ("reason", "by", "at", "from", "forced"):
            registry.client.set_model_version_tag(registry.name, version, f"{action}.{key}", entry[key])
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        registry.client.set_registered_model_tag(registry.name, f"audit.{stamp}.{action}.v{version}", json.dumps(entry))


def evaluation_gap(info: VersionInfo) -> str | None:
    """Why a version has not passed evaluation (no test metrics, no verdict, a rejection), or None."""
    verdict = info.tags.get(VERDICT_TAG)
    if not any(k.startswith("test.") for k in info.metrics):
        return "its run has no test metrics"
    if not verdict:
        return "it has no promotion verdict"
    if verdict == "rejected":
        return "its verdict was 'rejected'"
    return None


def _evaluated_or_forced(info: VersionInfo, force: bool) -> None:
    gap = evaluation_gap(info)
    if gap and not force:
        raise ConfigError(f"version {info.version} never passed evaluation ({gap}); --force to move it anyway")
    if gap:
        log.warning("moving an unevaluated version by force", extra={"version": info.version, "gap": gap})
