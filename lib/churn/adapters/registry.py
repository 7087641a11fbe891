"""The MLflow model registry: versions, the `staging`/`production` aliases, verified loading.

Each version records the sha256 of its model directory at registration (tag
`SHA256_TAG`); `load` downloads, recomputes it and refuses a version whose files changed
since, or that never recorded one, before anything is deserialized.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn.adapters import model_format
from churn.adapters.mlflow_client import GuardedClient, reaching
from churn.errors import ModelNotFound, UntrustedModel
from churn.model_source import PRODUCTION, LoadedModel
from churn.settings import redact

log = logging.getLogger(__name__)
STAGING = "staging"
SINCE_TAG = "production_since"
ROLLED_BACK_TAG = "rolled_back"
SHA256_TAG = "churn.model_sha256"
VERDICT_TAG = "verdict"  # set by the promote stage: promoted (moved) | passed (would move; apply off) | rejected
TO_MAKE_ONE = "train and register one with `dvc repro` or `churn train` (or point MLFLOW_TRACKING_URI elsewhere)"


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

    def __init__(self, client: MlflowClient | GuardedClient, name: str = "churn") -> None:
        self.client = client
        self.name = name

    @property
    def tracking_uri(self) -> str:
        return str(self.client.tracking_uri)

    @property
    def where(self) -> str:
        """The tracking URI for messages, credentials redacted."""
        return f"MLFLOW_TRACKING_URI={redact(self.tracking_uri)}"

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
            self.client.set_model_version_tag(self.name, version, SINCE_TAG, str(time.time()))

    def versions(self) -> list[VersionInfo]:
        found = self.client.search_model_versions(f"name='{self.name}'")
        if not found:
            return []
        aliases = self._aliases()  # search results leave aliases out
        infos = (self._info(mv, tuple(sorted(aliases.get(str(mv.version), [])))) for mv in found)
        return sorted(infos, key=lambda v: int(v.version))

    def version(self, version: str) -> VersionInfo:
        """One version with its aliases and run metrics; ModelNotFound naming the registry if it does not exist."""
        try:
            mv = self.client.get_model_version(self.name, str(version))
        except MlflowException as err:
            if _is_missing(err):
                raise ModelNotFound(
                    f"model {self.name!r} has no version {version!r} in the registry at {self.where}"
                ) from err
            raise
        return self._info(mv, tuple(sorted(self._aliases().get(str(mv.version), []))))

    def download(self, info: VersionInfo, mv: Any, target: Path) -> str:
        """The version's model directory, downloaded under `target`."""
        if info.run_id:
            return str(self.client.download_artifacts(info.run_id, "model", str(target)))
        import mlflow

        with reaching(self.tracking_uri):
            return str(mlflow.artifacts.download_artifacts(mv.source, dst_path=str(target),
                                                           tracking_uri=self.tracking_uri))

    def _aliases(self) -> dict[str, list[str]]:
        """version -> its aliases, from the registered model (which holds the alias map)."""
        aliases: dict[str, list[str]] = {}
        for alias, version in dict(self.client.get_registered_model(self.name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        return aliases

    def load(self, alias: str = PRODUCTION, n_threads: int = 2) -> LoadedModel:
        """Download, verify and load the version under `alias`; ModelNotFound (saying what to run) if none.

        The files are deleted once loaded: the model lives in memory.
        """
        info = self.version_for(alias)
        if info is None:
            raise ModelNotFound(
                f"no version of model {self.name!r} has the alias {alias!r} in the registry at {self.where}: "
                f"{TO_MAKE_ONE}"
            )
        mv = self.client.get_model_version(self.name, info.version)
        target = Path(tempfile.mkdtemp(prefix="churn-model-"))
        try:
            local = self.download(info, mv, target)
            self.verify(info.version, dict(mv.tags or {}).get(SHA256_TAG), Path(local))
            return model_format.load(
                local, n_threads=n_threads, name=self.name, version=info.version, run_id=info.run_id,
                source=str(mv.source),
            )
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def verify(self, version: str, recorded: str | None, local: Path) -> None:
        """UntrustedModel unless the downloaded files hash to the sha256 recorded at registration."""
        if not recorded:
            raise UntrustedModel(
                f"model {self.name!r} version {version} has no recorded sha256 (tag {SHA256_TAG}): refused; "
                f"check it and record one with `churn model trust {version} --reason TEXT`"
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
