"""`train`: the whole training pipeline in one process, as SageMaker and Kubernetes run it.

In a SageMaker training job (a `train` channel under /opt/ml/input/data) it reads the
channels and hyperparameters.json and writes the model to /opt/ml/model; elsewhere it
reads MongoDB (MONGODB_URI) or a local file. It logs, registers and promotes through
MLflow (a throwaway local store in a SageMaker job without MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from churn import files
from churn.params import Params
from churn.settings import Settings
from churn.validation import validate
from churn_jobs import stages
from churn_jobs.sagemaker import OptMl

log = logging.getLogger(__name__)


def run(settings: Settings, params: Params, root: Path | None = None, source: Path | None = None,
        promote: bool | None = None) -> dict[str, Any]:
    """Train, evaluate and judge; move production to a winner only with `promote` (default
    promotion.apply). Returns the promotion record."""
    opt_ml = OptMl(settings.opt_ml)
    if not opt_ml.is_training_job():
        layout = stages.Layout(root or Path.cwd())
        return stages.run_all(settings, params, layout, source, promote)

    params = params.with_overrides(opt_ml.hyperparameters())
    work = Path(tempfile.mkdtemp(prefix="churn-train-"))
    try:
        if not settings.mlflow_tracking_uri:
            settings = settings.with_(mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
        layout = stages.Layout(work)
        if opt_ml.validation_channel.is_dir():
            valid = validate(files.read_table(opt_ml.validation_channel), params.schema, require_label=True)
            files.write_parquet(valid.clean, layout.snapshot / "valid_clean.parquet")
        record = stages.run_all(settings, params, layout, opt_ml.train_channel, promote)
        if opt_ml.model_dir.exists():
            shutil.rmtree(opt_ml.model_dir)
        shutil.copytree(layout.model, opt_ml.model_dir)
        (opt_ml.output_dir / "data").mkdir(parents=True, exist_ok=True)
        for name in ("test.json", "train.json", "promotion.json"):
            shutil.copy(layout.metrics / name, opt_ml.output_dir / "data" / name)
        log.info("model written", extra={"path": str(opt_ml.model_dir)})
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)
