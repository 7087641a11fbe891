"""A tampered model never runs: `score` and `serve` refuse crafted directories and registry versions.

Each payload would create a marker directory if it were ever deserialized; every test
asserts the marker never appears, and that the refusal is one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from crafted_models import pickle_model, planted_skops_model, prove_pickle_runs
from mlflow import MlflowClient
from serve_harness import RECORD, start_serve

from churn import files, generator
from churn.adapters.registry import PRODUCTION, SHA256_TAG, ModelRegistry

SCORE = str(Path(sys.executable).parent / "score")
OTHER_SETTINGS = ("MONGODB", "AWS", "PUSHGATEWAY", "MLFLOW", "CHURN")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def customers_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("customers") / "customers.parquet"
    config = generator.GeneratorConfig(n_customers=50, seed=5, labelled_share=0.0)
    files.write_parquet(pa.concat_tables(generator.generate(config)), path)
    return path


@pytest.fixture
def client(mlflow_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def publish(client: MlflowClient, name: str, model_dir: Path) -> tuple[str, str]:
    """Log `model_dir` as a run's `model` artifacts and register it (sha256 recorded); (version, run_id)."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifacts(run_id, str(model_dir), "model")
    client.set_terminated(run_id)
    return ModelRegistry(client, name).register(run_id, model_dir=model_dir), run_id


def run_score(tmp_path: Path, source: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child = {
        **{k: v for k, v in os.environ.items() if not k.startswith(OTHER_SETTINGS)},
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "SAGEMAKER_BASE_DIR": str(tmp_path / "opt-ml"),
        "LOG_FORMAT": "json",
        **env,
    }
    return subprocess.run([SCORE, "--run-date", "2024-01-31", "--source", str(source), *args], env=child,
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a run that must have exited 3 with nothing else wrong."""
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-3000:]
    errors = [json.loads(line) for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    message: str = errors[0]["msg"]
    assert "UntrustedModel" in message and "\n" not in message
    return message


@pytest.mark.parametrize("attack", ["cloudpickle", "planted-skops"])
def test_score_refuses_a_crafted_model_directory(
    model_dir: Path, customers_file: Path, tmp_path: Path, attack: str
) -> None:
    marker = tmp_path / "pwned"
    if attack == "cloudpickle":
        crafted = pickle_model(model_dir, tmp_path / "crafted", marker)
    else:
        crafted = planted_skops_model(model_dir, tmp_path / "crafted", marker)

    message = refusal(run_score(tmp_path, customers_file, "--model-uri", str(crafted)))

    assert ("'cloudpickle'" if attack == "cloudpickle" else "allow-list") in message
    assert not marker.exists(), "the crafted model ran inside score"
    assert not (tmp_path / "data" / "risk").exists() or not any((tmp_path / "data" / "risk").rglob("*.parquet"))


def test_score_refuses_a_registry_version_whose_files_changed_after_registration(
    client: MlflowClient, mlflow_uri: str, unique_name: str, model_dir: Path, customers_file: Path, tmp_path: Path
) -> None:
    version, run_id = publish(client, unique_name, model_dir)
    ModelRegistry(client, unique_name).set_alias(PRODUCTION, version)
    recorded = client.get_model_version(unique_name, version).tags[SHA256_TAG]
    marker = tmp_path / "pwned"
    # Whoever can write the artifact store swaps a pickle in under the registered version.
    client.log_artifacts(run_id, str(pickle_model(model_dir, tmp_path / "crafted", marker)), "model")

    message = refusal(run_score(tmp_path, customers_file, "--model-uri", f"models:/{unique_name}@production",
                                MLFLOW_TRACKING_URI=mlflow_uri))

    assert f"version {version}" in message and recorded in message
    actual = message.split("sha256 ")[1].split(",")[0]
    assert len(actual) == 64 and actual != recorded
    assert not marker.exists(), "the swapped-in pickle ran inside score"
    prove_pickle_runs(tmp_path / "crafted", marker)


def test_score_refuses_a_registry_version_registered_without_a_sha256(
    client: MlflowClient, mlflow_uri: str, unique_name: str, model_dir: Path, customers_file: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    crafted = pickle_model(model_dir, tmp_path / "crafted", marker)
    experiment_id = client.create_experiment(unique_name)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifacts(run_id, str(crafted), "model")
    client.create_registered_model(unique_name)
    version = client.create_model_version(unique_name, f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias(unique_name, "production", version)

    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "CHURN_MODEL_NAME": unique_name}
    message = refusal(run_score(tmp_path, customers_file, **env))

    assert f"version {version} has no recorded sha256" in message
    assert not marker.exists()


def test_score_refuses_a_pickle_even_when_its_sha256_was_recorded(
    client: MlflowClient, mlflow_uri: str, unique_name: str, model_dir: Path, customers_file: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    version, _ = publish(client, unique_name, pickle_model(model_dir, tmp_path / "crafted", marker))
    ModelRegistry(client, unique_name).set_alias(PRODUCTION, version)

    message = refusal(run_score(tmp_path, customers_file, MLFLOW_TRACKING_URI=mlflow_uri,
                                CHURN_MODEL_NAME=unique_name))

    assert "'cloudpickle'" in message and not marker.exists()


def test_serve_never_loads_a_crafted_model_directory_and_says_why(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = pickle_model(model_dir, tmp_path / "crafted", marker)
    server = start_serve(tmp_path / "base", crafted, workers=1)
    try:
        server.listening()
        wait_for(lambda: "model refused as untrusted" in server.log(), 60, "the refusal in the log")
        assert server.get("/ping").status_code == 503
        assert server.post("/invocations", RECORD).status_code == 503
        time.sleep(1)
        assert server.get("/ping").status_code == 503
    finally:
        server.stop()
    refused = [json.loads(line) for line in server.log().splitlines() if "model refused as untrusted" in line]
    assert refused and "'cloudpickle'" in refused[0]["reason"]
    assert not marker.exists(), "the crafted pickle ran inside a serve worker"


def test_hot_reload_keeps_the_old_model_when_production_moves_to_a_tampered_version(
    client: MlflowClient, mlflow_uri: str, unique_name: str, model_dir: Path, tmp_path: Path
) -> None:
    registry = ModelRegistry(client, unique_name)
    good, _ = publish(client, unique_name, model_dir)
    registry.set_alias(PRODUCTION, good)
    server = start_serve(tmp_path / "base", workers=1, MLFLOW_TRACKING_URI=mlflow_uri,
                         CHURN_MODEL_URI=f"models:/{unique_name}@production", MODEL_POLL_SECONDS="0.5")
    marker = tmp_path / "pwned"
    try:
        server.ready(workers=1)
        tampered, run_id = publish(client, unique_name, model_dir)
        client.log_artifacts(run_id, str(pickle_model(model_dir, tmp_path / "crafted", marker)), "model")
        registry.set_alias(PRODUCTION, tampered)

        wait_for(lambda: f"version {tampered}: its files changed since registration" in server.log(), 60,
                 f"the refusal of version {tampered}")
        time.sleep(1.5)  # three more polls: the refused version is not fetched again
        answer = server.post("/invocations", RECORD)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == good
        assert server.get("/version").json()["model_version"] == good
    finally:
        server.stop()
    assert server.log().count("model refused as untrusted") == 1
    assert not marker.exists(), "the swapped-in pickle ran inside a serve worker"



def test_a_version_registered_before_sha256s_loads_once_an_operator_trusts_it(
    client: MlflowClient, mlflow_uri: str, unique_name: str, model_dir: Path, customers_file: Path, tmp_path: Path
) -> None:
    experiment_id = client.create_experiment(unique_name)
    client.create_registered_model(unique_name)
    versions = {}
    marker = tmp_path / "pwned"
    for kind, directory in (("old", model_dir), ("crafted", pickle_model(model_dir, tmp_path / "crafted", marker))):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_artifacts(run_id, str(directory), "model")
        versions[kind] = client.create_model_version(unique_name, f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias(unique_name, "production", versions["old"])
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "CHURN_MODEL_NAME": unique_name}
    assert f"churn model trust {versions['old']}" in refusal(run_score(tmp_path, customers_file, **env))

    def churn(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "churn"), "model", *args],
                              env={**os.environ, **env, "LOG_FORMAT": "json"}, capture_output=True, text=True,
                              timeout=120)

    crafted = churn("trust", versions["crafted"], "--reason", "old version")
    assert crafted.returncode == 3 and "'cloudpickle'" in crafted.stdout and not marker.exists()
    trusted = churn("trust", versions["old"], "--reason", "registered before sha256s", "--by", "ops")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    tags = client.get_model_version(unique_name, versions["old"]).tags
    assert f"sha256 {tags[SHA256_TAG]} recorded" in trusted.stdout and tags["trust.by"] == "ops"

    scored = run_score(tmp_path, customers_file, **env)
    assert scored.returncode == 0, scored.stdout[-3000:]
    assert json.loads(scored.stdout.splitlines()[-1])["model_version"] == versions["old"]
