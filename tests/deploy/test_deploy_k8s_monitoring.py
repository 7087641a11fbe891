"""Prometheus Operator objects (kube-prometheus-stack ignores the prometheus.io annotations):
the serving PodMonitor in every overlay, and the PrometheusRule in k8s/monitoring, both
checked against the operator's CRD models (kubernetes-validate has no CRD schemas)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator
from deploy_helpers import K8S, OBSERVABILITY, containers, one, render, selector_matches

Docs = list[dict[str, Any]]
RULES = OBSERVABILITY / "prometheus" / "alerts.yaml"
GENERATOR = OBSERVABILITY / "prometheus" / "generate_prometheusrule.py"


def strictly(model: Any, doc: dict[str, Any]) -> Any:
    """Validate `doc` with the operator's model; a field the model does not know is an error."""
    parsed = model.model_validate(doc)
    assert parsed.model_dump(by_alias=True, exclude_none=True, mode="json") == doc, (
        f"{doc['kind']}/{doc['metadata']['name']} has fields the CRD does not define"
    )
    return parsed


def test_strict_check_rejects_a_misspelt_field() -> None:
    """Guard: a typo (`pathh`) would be ignored by pydantic and by the operator; not here."""
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "podMetricsEndpoints": [{"port": "http", "pathh": "/x"}]},
    }
    with pytest.raises(AssertionError, match="fields the CRD does not define"):
        strictly(operator.PodMonitor, doc)


def test_podmonitor_scrapes_the_serving_pods_as_job_churn_serving(any_render: tuple[str, Docs]) -> None:
    _, docs = any_render
    doc = one(docs, "PodMonitor", "churn-serving")
    monitor = strictly(operator.PodMonitor, doc)
    deployment = one(docs, "Deployment", "churn-serving")
    template = deployment["spec"]["template"]
    (container,) = containers(template)

    assert selector_matches(doc["spec"]["selector"], template["metadata"]["labels"])
    (endpoint,) = monitor.spec.pod_metrics_endpoints
    port = next(p for p in container["ports"] if p["name"] == endpoint.port)
    annotations = template["metadata"]["annotations"]
    assert port["containerPort"] == int(annotations["prometheus.io/port"]) == 8080
    assert endpoint.path == annotations["prometheus.io/path"] == "/metrics"
    # The alert rules and the dashboard select up{job="churn-serving"}: the same job name as
    # the annotation-based scrape job in observability/prometheus/prometheus.yml.
    (relabel,) = [r for r in endpoint.relabelings or [] if r.target_label == "job"]
    assert (relabel.action, relabel.replacement) == ("replace", "churn-serving")
    assert doc["metadata"]["labels"]["release"], "kube-prometheus-stack selects monitors by release label"


def test_prometheusrule_is_generated_from_alerts_yaml_and_fresh() -> None:
    proc = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (doc,) = render(K8S / "monitoring")
    rule = strictly(operator.PrometheusRule, doc)
    assert doc["metadata"]["namespace"] == "monitoring"
    assert doc["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    assert {r.alert for g in rule.spec.groups for r in g.rules} >= {"ChurnScoringRunFailed", "ChurnServingDown"}


def test_the_rule_set_is_applied_once_per_cluster_not_per_overlay(rendered: dict[str, Docs]) -> None:
    """The rules keep `namespace`: one copy watches both environments, a copy per overlay would page twice."""
    for name, docs in rendered.items():
        assert not [d for d in docs if d["kind"] == "PrometheusRule"], name
