"""The MLflow model registry: versions, the `staging`/`production` aliases, rollback.

Each version records the sha256 of its model directory at registration (tag
`SHA256_TAG`); `load` downloads, recomputes it and refuses a version whose files changed
since, or that never recorded one, before anything is deserialized.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn.adapters import model_format
from churn.errors import ModelNotFound, UntrustedModel

log = logging.getLogger(__name__)
PRODUCTION = "production"
STAGING = "staging"
_SINCE = "production_since"
_ROLLED_BACK = "rolled_back"
SHA256_TAG = "churn.model_sha256"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    run_id: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    tags: dict[str, str]
    created: int


class ModelRegistry:
    """One registered model (default `churn`) in an MLflow tracking server."""

    def __init__(self, client: MlflowClient, name: str = "churn") -> None:
        self.client = client
        self.name = name

    def version_for(self, alias: str) -> VersionInfo | None:
        try:
            mv = self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as err:
            if _is_missing(err):
                return None
            raise
        return self._info(mv)

    def register(
        self, run_id: str, artifact_path: str = "model", tags: dict[str, str] | None = None, *, model_dir: Path
    ) -> str:
        """A new version from the run's `artifact_path`, recording the sha256 of `model_dir` (what was logged there)."""
        tags = {**(tags or {}), SHA256_TAG: model_format.digest(model_dir)}
        try:
            self.client.get_registered_model(self.name)
        except MlflowException as err:
            if not _is_missing(err):
                raise
            self.client.create_registered_model(self.name)
        source = f"runs:/{run_id}/{artifact_path}"
        mv = self.client.create_model_version(self.name, source, run_id=run_id, tags=tags)
        return str(mv.version)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)
        if alias == PRODUCTION:
            self.client.set_model_version_tag(self.name, version, _SINCE, str(time.time()))

    def versions(self) -> list[VersionInfo]:
        found = self.client.search_model_versions(f"name='{self.name}'")
        if not found:
            return []
        # Search results leave aliases out; the registered model holds the alias map.
        aliases: dict[str, list[str]] = {}
        for alias, version in dict(self.client.get_registered_model(self.name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        infos = (self._info(mv, tuple(sorted(aliases.get(str(mv.version), [])))) for mv in found)
        return sorted(infos, key=lambda v: int(v.version))

    def rollback(self) -> tuple[str, str]:
        """Move `production` back to the version that held it before; returns (from, to)."""
        current = self.version_for(PRODUCTION)
        if current is None:
            raise ModelNotFound(f"model {self.name!r} has no production version to roll back")
        earlier = [
            v
            for v in self.versions()
            if v.version != current.version
            and _SINCE in v.tags
            and v.tags.get(_ROLLED_BACK) != "true"
            and float(v.tags[_SINCE]) < float(current.tags.get(_SINCE, "inf"))
        ]
        if not earlier:
            raise ModelNotFound(f"model {self.name!r} has no earlier production version")
        target = max(earlier, key=lambda v: float(v.tags[_SINCE]))
        self.client.set_model_version_tag(self.name, current.version, _ROLLED_BACK, "true")
        # Keep the target's original production_since so a second rollback goes further back.
        self.client.set_registered_model_alias(self.name, PRODUCTION, target.version)
        self.client.set_registered_model_alias(self.name, STAGING, target.version)
        return current.version, target.version

    def load(self, alias: str = PRODUCTION, n_threads: int = 2, dest: Path | None = None) -> model_format.LoadedModel:
        """Download and load the version under `alias`; ModelNotFound if there is none."""
        info = self.version_for(alias)
        if info is None:
            raise ModelNotFound(f"no model version of {self.name!r} has the alias {alias!r}")
        mv = self.client.get_model_version(self.name, info.version)
        target = dest or Path(tempfile.mkdtemp(prefix="churn-model-"))
        local = self.client.download_artifacts(info.run_id, "model", str(target)) if info.run_id else None
        if local is None:
            import mlflow

            local = mlflow.artifacts.download_artifacts(mv.source, dst_path=str(target))
        self.verify(info.version, dict(mv.tags or {}).get(SHA256_TAG), Path(local))
        return model_format.load(
            local, n_threads=n_threads, name=self.name, version=info.version, run_id=info.run_id, source=str(mv.source)
        )

    def verify(self, version: str, recorded: str | None, local: Path) -> None:
        """UntrustedModel unless the downloaded files hash to the sha256 recorded at registration."""
        if not recorded:
            raise UntrustedModel(
                f"model {self.name!r} version {version} has no recorded sha256 (tag {SHA256_TAG}): "
                "refused; register it with `churn` so its files can be verified"
            )
        actual = model_format.digest(local)
        if actual != recorded:
            raise UntrustedModel(
                f"model {self.name!r} version {version}: its files changed since registration "
                f"(sha256 {actual}, registered {recorded}): refused"
            )

    def _info(self, mv: Any, aliases: tuple[str, ...] | None = None) -> VersionInfo:
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = dict(self.client.get_run(mv.run_id).data.metrics)
            except MlflowException:
                metrics = {}
        return VersionInfo(
            version=str(mv.version),
            run_id=str(mv.run_id or ""),
            aliases=aliases if aliases is not None else tuple(getattr(mv, "aliases", []) or []),
            metrics=metrics,
            tags=dict(mv.tags or {}),
            created=int(mv.creation_timestamp or 0),
        )


def _is_missing(err: MlflowException) -> bool:
    return getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")
