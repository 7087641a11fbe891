"""`docker run -v DIR:/opt/ml IMAGE train`: the SageMaker training contract, in the container."""

from __future__ import annotations

import json
from pathlib import Path

import container_runtime
from conftest import hand_to_app_user, json_lines
from container_runtime import RunSpec

from churn import generator
from churn.adapters import model_format


def sagemaker_layout(opt_ml: Path, hyperparameters: dict[str, str], rows: int) -> None:
    """A CSV train channel, a Parquet validation channel, and hyperparameters.json (strings, as SageMaker writes).

    (One channel mixing CSV and Parquet files fails in churn.files.read_table: reported, not this file's area.)
    """
    train = opt_ml / "input" / "data" / "train"
    train.mkdir(parents=True)
    generator.write_csv(generator.GeneratorConfig(n_customers=rows, seed=31, dirty_rate=0.01), train / "part-0.csv")
    valid = opt_ml / "input" / "data" / "validation"
    valid.mkdir(parents=True)
    generator.write_parquet(generator.GeneratorConfig(n_customers=rows // 2, seed=32), valid / "part-0.parquet")
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    hand_to_app_user(opt_ml)


def test_train_reads_a_csv_and_a_parquet_channel_and_writes_an_mlflow_model(
    runtime: container_runtime.Runtime, image: str, opt_ml: Path, container_env: dict[str, str]
) -> None:
    # The shipped search is turned off by this test's own override (CI time); n_estimators is then the cap.
    sagemaker_layout(opt_ml, {"n_estimators": "30", "model.n_jobs": "1", "tuning.enabled": "false",
                              "sagemaker_program": "ignored"}, rows=1_500)

    done = runtime.run(RunSpec(image, ["train"], env=container_env, mounts={str(opt_ml): "/opt/ml"}), timeout=900)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loaded = model_format.load(opt_ml / "model")  # the project's own reader, in this venv
    assert 1 <= loaded.trained.classifier.n_estimators <= 30  # the refit keeps the cross-validated count
    metrics = json.loads((opt_ml / "output" / "data" / "test.json").read_text())
    assert metrics["roc_auc"] > 0.7
    assert not (opt_ml / "output" / "failure").exists()
    ingested = [line for line in json_lines(done.stdout + done.stderr) if line.get("rows")]
    assert ingested, "no structured log line with row counts"


def test_bad_hyperparameter_writes_the_failure_file_naming_it_and_exits_3(
    runtime: container_runtime.Runtime, image: str, opt_ml: Path, container_env: dict[str, str]
) -> None:
    sagemaker_layout(opt_ml, {"n_estimators": "many"}, rows=300)

    done = runtime.run(RunSpec(image, ["train"], env=container_env, mounts={str(opt_ml): "/opt/ml"}), timeout=600)

    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    failure = (opt_ml / "output" / "failure").read_text()
    assert "n_estimators" in failure and len(failure.strip().splitlines()) == 1
    assert not (opt_ml / "model").exists()
    assert "Traceback" not in done.stdout + done.stderr
