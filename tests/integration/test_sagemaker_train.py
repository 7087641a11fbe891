"""The `train` executable on the SageMaker training contract, run as SageMaker runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from churn import generator
from churn.adapters import model_format

BIN = Path(sys.executable).parent


def opt_ml(tmp_path: Path, hyperparameters: dict | None = None, validation: bool = False, rows: int = 3_000) -> Path:
    base = tmp_path / "opt_ml"
    train = base / "input" / "data" / "train"
    train.mkdir(parents=True)
    generator.write_csv(generator.GeneratorConfig(n_customers=rows, seed=21, dirty_rate=0.01), train / "part-0.csv")
    if validation:
        valid = base / "input" / "data" / "validation"
        valid.mkdir(parents=True)
        generator.write_parquet(generator.GeneratorConfig(n_customers=1_000, seed=22), valid / "valid.parquet")
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or {}))
    return base


def run_train(base: Path, cwd: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "MONGODB"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "LOG_FORMAT": "json", **(extra_env or {})})
    return subprocess.run([str(BIN / "train")], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_train_reads_channels_and_writes_an_mlflow_model(tmp_path):
    # The search is on in the shipped params.yaml; this test's own override turns it off (CI time).
    base = opt_ml(tmp_path, {"n_estimators": "40", "learning_rate": "0.05", "tuning.enabled": "false",
                             "sagemaker_program": "ignored"}, validation=True)

    done = run_train(base, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    loaded = model_format.load(base / "model")
    # n_estimators is the cap; the refit keeps the cross-validated count.
    assert 1 <= loaded.trained.classifier.n_estimators <= 40
    assert loaded.trained.classifier.n_estimators == loaded.trained.best_iteration
    assert loaded.trained.classifier.learning_rate == 0.05
    train_metrics = json.loads((base / "output" / "data" / "train.json").read_text())
    # Every non-test row of the train channel (80% of 3,000, less dirty rejects) plus the validation channel.
    assert 3_000 * 0.8 * 0.97 + 1_000 <= train_metrics["valid"]["rows"] <= 3_000 * 0.8 + 1_000
    metrics = json.loads((base / "output" / "data" / "test.json").read_text())
    assert metrics["roc_auc"] > 0.7
    assert not (base / "output" / "failure").exists()
    assert list(tmp_path.glob("mlruns")) == [] and list(tmp_path.glob("mlflow.db")) == []


@pytest.mark.parametrize(
    ("hyperparameters", "named"),
    [
        ({"n_estimators": "many"}, "n_estimators"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"num_trees_typo": "10"}, "num_trees_typo"),
        ({"calibration.method": "magic"}, "calibration.method"),
    ],
)
def test_bad_hyperparameter_fails_with_the_key_in_the_failure_file(tmp_path, hyperparameters, named):
    base = opt_ml(tmp_path, hyperparameters, rows=500)

    done = run_train(base, tmp_path)

    assert done.returncode == 3
    failure = (base / "output" / "failure").read_text()
    assert named in failure
    assert len(failure.strip().splitlines()) == 1
    assert not (base / "model").exists()
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_train_data_fails_with_a_reason(tmp_path):
    base = opt_ml(tmp_path, rows=10)
    for f in (base / "input" / "data" / "train").iterdir():
        f.unlink()

    done = run_train(base, tmp_path)

    assert done.returncode != 0
    assert "no .parquet or .csv files" in (base / "output" / "failure").read_text()


def test_train_registers_and_promotes_when_a_tracking_server_is_set(tmp_path, mlflow_uri, unique_name):
    base = opt_ml(tmp_path, {"n_estimators": "30", "tuning.enabled": "false"})

    done = run_train(base, tmp_path, {"MLFLOW_TRACKING_URI": mlflow_uri, "CHURN_MODEL_NAME": unique_name})

    assert done.returncode == 0, done.stdout + done.stderr
    from mlflow import MlflowClient

    version = MlflowClient(mlflow_uri).get_model_version_by_alias(unique_name, "production")
    assert version.version == "1"  # a SageMaker training job promotes, as `churn train --promote` does
