"""MLflow tracking through an explicit client: runs, params, metrics, tags, artifacts.

Tags and params pass `redact` on the way in: a URL with a password never lands in MLflow.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from churn.adapters.mlflow_client import GuardedClient
from churn.settings import redact


class Tracking:
    def __init__(
        self, client: MlflowClient | GuardedClient, experiment: str = "churn", artifact_location: str | None = None
    ) -> None:
        self.client = client
        found = client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id if found else client.create_experiment(experiment, artifact_location=artifact_location)
        )

    def start(self, name: str, tags: dict[str, str], parent: str | None = None) -> str:
        all_tags = {k: redact(str(v)) for k, v in tags.items()}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def finish(self, run_id: str, ok: bool = True) -> None:
        self.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")

    def log(
        self,
        run_id: str,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        flat_params = [Param(k, redact(str(v))[:6000]) for k, v in _flatten(params or {}).items()]
        flat_metrics = [
            Metric(k, float(v), 0, 0)
            for k, v in _flatten(metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        flat_tags = [RunTag(k, redact(str(v))) for k, v in (tags or {}).items()]
        for i in range(0, max(len(flat_params), 1), 100):  # MLflow caps params per batch at 100
            self.client.log_batch(run_id, params=flat_params[i : i + 100])
        self.client.log_batch(run_id, metrics=flat_metrics, tags=flat_tags)

    def artifacts(self, run_id: str, local: Path, path: str | None = None) -> None:
        if local.is_dir():
            self.client.log_artifacts(run_id, str(local), path)
        else:
            self.client.log_artifact(run_id, str(local), path)

    def metrics_of(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
