"""Hot reload from a real MLflow registry: the production alias moves while requests run, none fails."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import requests
import yaml
from mlflow import MlflowClient
from serve_harness import RECORD, ServeProcess, start_serve

from churn.adapters.registry import PRODUCTION, ModelRegistry

POLL = "0.5"


def publish(client: MlflowClient, registry: ModelRegistry, experiment_id: str, model_dir: Path) -> str:
    """Log a model directory as a run's artifacts and register it; returns the version."""
    run = client.create_run(experiment_id)
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    return registry.register(run.info.run_id, model_dir=model_dir)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Load:
    """Requests in a loop from three threads (keep-alive and not), recording every outcome."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        self.statuses: Counter[int] = Counter()
        self.versions: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i % 2 == 0,)) for i in range(3)]

    def _run(self, keep_alive: bool) -> None:
        session = requests.Session()
        body = json.dumps(RECORD)
        while not self._stop.is_set():
            try:
                post = session.post if keep_alive else requests.post
                response = post(self.server.url + "/invocations", data=body,
                                headers={"Content-Type": "application/json"}, timeout=30)
                self.statuses[response.status_code] += 1
                self.versions.append(response.headers.get("X-Model-Version", ""))
            except requests.RequestException as err:
                self.errors.append(repr(err))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def recent(self, n: int = 30) -> set[str]:
        return set(self.versions[-n:])


def broken_copy(model_dir: Path, target: Path, how: str) -> Path:
    shutil.copytree(model_dir, target)
    if how == "unloadable":
        for pickled in [*target.glob("*.skops"), *target.glob("*.pkl")]:
            pickled.write_bytes(b"not a model")
    else:  # loads, but the metadata's categories disagree with the pipeline: the probe catches it
        mlmodel = target / "MLmodel"
        meta = yaml.safe_load(mlmodel.read_text())
        contract = next(f for f in meta["metadata"]["churn"]["schema"]["features"] if f["name"] == "contract")
        contract["values"] = list(reversed(contract["values"]))
        mlmodel.write_text(yaml.safe_dump(meta))
    return target


def test_alias_moves_are_served_without_failing_a_request_and_bad_models_are_refused(
    mlflow_uri: str, unique_name: str, model_dir: Path, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    registry = ModelRegistry(client, unique_name)
    experiment_id = client.create_experiment(unique_name)
    first = publish(client, registry, experiment_id, model_dir)
    registry.set_alias(PRODUCTION, first)

    server = start_serve(tmp_path / "base", workers=2, MLFLOW_TRACKING_URI=mlflow_uri,
                         CHURN_MODEL_URI=f"models:/{unique_name}@production", MODEL_POLL_SECONDS=POLL)
    try:
        server.ready(workers=2)
        assert server.get("/version").json()["model_version"] == first
        with Load(server) as load:
            wait_for(lambda: len(load.versions) > 20, 60, "requests to flow")
            second = publish(client, registry, experiment_id, model_dir)
            registry.set_alias(PRODUCTION, second)
            wait_for(lambda: load.recent() == {second}, 90, f"both workers to serve version {second}")

            for how in ("unloadable", "inconsistent"):
                bad = publish(client, registry, experiment_id, broken_copy(model_dir, tmp_path / how, how))
                registry.set_alias(PRODUCTION, bad)
                wait_for(lambda bad=bad: server.log().count(f'"version": "{bad}"') >= 2, 90,
                         f"both workers to refuse version {bad}")
                time.sleep(float(POLL) * 3)
                assert load.recent() == {second}, f"a {how} model replaced a good one"
        assert load.errors == [] and set(load.statuses) == {200}, (load.statuses, load.errors[:3])
        assert {first, second} <= set(load.versions)
        log = server.log()
        assert "model failed to load" in log and "model failed its checks" in log
    finally:
        server.stop()
