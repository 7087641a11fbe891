"""Two environments push the nightly job's metrics to ONE real Pushgateway (as staging and
production do in the cluster): each keeps its own group, Prometheus sees both apart, and
the alert rules of observability/prometheus/alerts.yaml blame only the one that failed."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import delete_from_gateway
from prometheus_client.parser import text_string_to_metric_families

import services
from churn.adapters.pushgateway import JOB, MetricsSink, RunMetrics

ALERTS = Path(__file__).resolve().parents[2] / "observability" / "prometheus" / "alerts.yaml"


def _rule(name: str) -> str:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    (rule,) = [rule for rule in rules if rule["alert"] == name]
    return str(rule["expr"])


def _gateway_values(gateway: services.PushgatewayServer, metric: str) -> dict[str | None, float]:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels.get("namespace"): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric and sample.labels.get("job") == "churn_scoring"
    }


@pytest.fixture
def environments(pushgateway_server: services.PushgatewayServer, unique_name: str) -> Iterator[tuple[str, str]]:
    """Two environment names; their groups are deleted afterwards (other tests read shard 0 of the job)."""
    names = (f"{unique_name}-prod", f"{unique_name}-staging")
    yield names
    for name in names:
        delete_from_gateway(pushgateway_server.url, job=JOB, grouping_key={"namespace": name, "shard": "0"})


def test_two_environments_keep_their_own_groups_on_one_pushgateway(
    pushgateway_server: services.PushgatewayServer,
    prometheus_server: services.PrometheusServer,
    environments: tuple[str, str],
    unique_name: str,
) -> None:
    production, staging = environments

    def sink(environment: str) -> MetricsSink:
        return MetricsSink(0, gateway=pushgateway_server.url, environment=environment)

    assert sink(production).success(RunMetrics(rows_read=200, rows_scored=200, rows_written=200))
    assert sink(staging).success(RunMetrics(rows_read=100, rows_scored=90, rows_rejected=10, rows_written=90))
    assert sink(staging).failure()  # staging's next run fails; production is fine

    rows_read = _gateway_values(pushgateway_server, "churn_scoring_rows_read")
    failures = _gateway_values(pushgateway_server, "churn_scoring_last_failure_timestamp_seconds")
    assert (rows_read.get(production), rows_read.get(staging)) == (200.0, 100.0)
    assert staging in failures and production not in failures

    # Prometheus keeps the pushed labels (honor_labels) and the rules see two environments.
    prometheus_server.wait_for(
        f'churn_scoring_last_failure_timestamp_seconds{{namespace="{staging}"}}', timeout=30
    )
    read = prometheus_server.wait_for(f'churn_scoring_rows_read{{namespace=~"{unique_name}-.*"}}', timeout=30)
    assert {series["metric"]["namespace"]: series["value"][1] for series in read} == {production: "200", staging: "100"}
    failed = [
        (series["metric"]["namespace"], series["metric"]["shard"])
        for series in prometheus_server.query(_rule("ChurnScoringRunFailed"))
        if series["metric"].get("namespace", "").startswith(unique_name)
    ]
    assert failed == [(staging, "0")]
