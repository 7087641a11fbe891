"""/metrics under two gunicorn workers: counts add up across workers and survive a worker's death."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from serve_harness import RECORD, ServeProcess, start_serve

REQUESTS = 120


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = start_serve(tmp_path_factory.mktemp("serve-metrics"), model_dir, workers=2)
    try:
        process.ready(workers=2)
        yield process
    finally:
        process.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(server: ServeProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = server.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


def invocation_counts_by_worker(metrics_dir: Path, tmp_path: Path) -> dict[int, float]:
    """Each worker's own /invocations 200 count, read from its own multiprocess file."""
    counts = {}
    for db in metrics_dir.glob("counter_*.db"):
        alone = tmp_path / db.stem
        alone.mkdir()
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        for family in registry.collect():
            for s in family.samples:
                if s.name == "churn_http_requests_total" and s.labels.get("route") == "/invocations" \
                        and s.labels.get("status") == "200":
                    counts[int(db.stem.split("_")[-1])] = counts.get(int(db.stem.split("_")[-1]), 0) + s.value
    return counts


def test_counts_add_up_across_both_workers(server: ServeProcess, tmp_path: Path) -> None:
    before = scrape(server)
    body = json.dumps([RECORD, {**RECORD, "contract": "Two year", "tenure": 70}])

    def one(_: int) -> int:
        # A new connection each time, so the kernel spreads requests over both workers.
        response = requests.post(server.url + "/invocations", data=body,
                                 headers={"Content-Type": "application/json", "Connection": "close"}, timeout=30)
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(REQUESTS)))
    assert statuses == [200] * REQUESTS
    assert server.post("/invocations", b"{", "application/json").status_code == 400

    per_worker = invocation_counts_by_worker(server.metrics_dir, tmp_path)
    assert len([c for c in per_worker.values() if c > 0]) == 2, f"one worker did all the work: {per_worker}"

    for _ in range(4):  # any worker answers /metrics with everyone's totals
        after = scrape(server)
        served = value(after, "churn_http_requests_total", route="/invocations", method="POST", status="200") - \
            value(before, "churn_http_requests_total", route="/invocations", method="POST", status="200")
        assert served == REQUESTS == sum(per_worker.values()) - value(
            before, "churn_http_requests_total", route="/invocations", method="POST", status="200")
        bad = value(after, "churn_http_requests_total", route="/invocations", method="POST", status="400")
        assert bad >= 1
        labels = sum(value(after, "churn_prediction_total", label=label) - value(before, "churn_prediction_total",
                                                                                label=label)
                     for label in ("Churn", "No Churn"))
        assert labels == 2 * REQUESTS
        assert value(after, "churn_prediction_probability_count") - \
            value(before, "churn_prediction_probability_count") == 2 * REQUESTS
        assert value(after, "prediction_latency_seconds_count") - \
            value(before, "prediction_latency_seconds_count") == REQUESTS
        assert value(after, "churn_http_request_duration_seconds_count", route="/invocations") >= REQUESTS + 1


def test_model_info_names_the_served_model(server: ServeProcess) -> None:
    version = server.get("/version").json()
    metrics = scrape(server)
    assert value(metrics, "churn_model_info", model_name=version["model_name"],
                 model_version=version["model_version"], run_id=version["run_id"]) == 1


def test_a_dead_workers_counts_stay_and_its_gauges_go(server: ServeProcess) -> None:
    before = scrape(server)
    served = value(before, "churn_http_requests_total", route="/invocations", method="POST", status="200")
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (victim in server.worker_pids() or len(server.worker_pids()) < 2):
        time.sleep(0.2)
    assert victim not in server.worker_pids()
    assert not list(server.metrics_dir.glob(f"gauge_livemax_{victim}.db")), "the dead worker's gauge file stayed"
    server.ready(workers=2)
    after = scrape(server)
    assert value(after, "churn_http_requests_total", route="/invocations", method="POST", status="200") >= served
    version = server.get("/version").json()
    assert value(after, "churn_model_info", model_name="churn", model_version=version["model_version"],
                 run_id=version["run_id"]) == 1
