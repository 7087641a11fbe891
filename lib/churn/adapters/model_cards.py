"""Model cards from the registry: gather one version's facts, and log the Markdown card to MLflow."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.exceptions import MlflowException

from churn.adapters.registry import SHA256_TAG, VERDICT_TAG, ModelRegistry
from churn.model_card import ModelCard, metrics_with_intervals

CARD_ARTIFACT = "model_card"


def card(registry: ModelRegistry, version: str) -> ModelCard:
    """The card of `version`: registry tags, its run's params/metrics/tags/plots and its MLmodel metadata."""
    info = registry.version(version)
    client = registry.client
    run: Any = client.get_run(info.run_id) if info.run_id else None
    tags = dict(run.data.tags) if run else {}
    metadata = _churn_metadata(client, info.run_id) if info.run_id else {}
    plots = sorted(f"{run.info.artifact_uri}/{a.path}" for a in client.list_artifacts(info.run_id, "plots")) \
        if run else []
    sizes = {name.replace("test.rows", "test rows"): int(value) for name, value in info.metrics.items()
             if name.endswith("rows")}
    return ModelCard(
        name=registry.name,
        version=info.version,
        aliases=info.aliases,
        run_id=info.run_id,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.created / 1000)) if info.created else "",
        verdict=info.tags.get(VERDICT_TAG, ""),
        verdict_reason=tags.get("promotion.reason", ""),
        data_hash=str(metadata.get("data_hash") or tags.get("data_hash", "")),
        data_source=tags.get("source", ""),
        sizes=sizes,
        features=list((metadata.get("schema") or {}).get("features", [])),
        threshold=float(metadata["threshold"]) if "threshold" in metadata else None,
        calibration=str(metadata.get("calibration", "")),
        params=dict(run.data.params) if run else {},
        metrics=metrics_with_intervals(info.metrics),
        plots=plots,
        model_sha256=info.tags.get(SHA256_TAG, ""),
        git_commit=str(metadata.get("git_commit") or tags.get("git_commit", "")),
        trained_at=str(metadata.get("trained_at", "")),
        moves={k: v for k, v in info.tags.items() if k.split(".")[0] in ("promote", "rollback", "trust")},
    )


def log_markdown(registry: ModelRegistry, model_card: ModelCard) -> str:
    """Log the card as Markdown to the version's run; returns the artifact path."""
    path = f"{CARD_ARTIFACT}/v{model_card.version}.md"
    registry.client.log_text(model_card.run_id, model_card.markdown(), path)
    return path


def _churn_metadata(client: Any, run_id: str) -> dict[str, Any]:
    """The churn metadata of the run's MLmodel (downloaded alone: YAML read as data, nothing loaded)."""
    target = Path(tempfile.mkdtemp(prefix="churn-card-"))
    try:
        local = client.download_artifacts(run_id, "model/MLmodel", str(target))
        spec = yaml.safe_load(Path(local).read_text(encoding="utf-8"))
    except (MlflowException, OSError, yaml.YAMLError):  # no model artifact: a card from the registry alone
        return {}
    finally:
        shutil.rmtree(target, ignore_errors=True)
    metadata = (spec or {}).get("metadata") or {}
    return dict(metadata.get("churn") or {}) if isinstance(metadata, dict) else {}
