"""Observability as code: the metric contract (observability/metrics.yaml), the
Grafana dashboard and its provisioning, the Prometheus alert rules with their
promtool unit tests, and the scrape configuration they assume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from deploy_helpers import DOCS, OBSERVABILITY, load_yaml, markdown_anchors, metrics_contract, run, tool

PROM = OBSERVABILITY / "prometheus"
ALERTS = PROM / "alerts.yaml"
ALERT_TESTS = PROM / "alerts_test.yaml"
SCRAPE = PROM / "prometheus.yml"
GRAFANA = OBSERVABILITY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "churn.json"
GENERATOR = GRAFANA / "generate_dashboard.py"

# The metric contract of the deployment brief: the code exports these, nothing else.
CONTRACT = {
    "serving": {
        "churn_http_requests_total": ("counter", {"route", "method", "status"}),
        "churn_http_request_duration_seconds": ("histogram", {"route"}),
        "prediction_latency_seconds": ("histogram", set()),
        "churn_prediction_total": ("counter", {"label"}),
        "churn_prediction_probability": ("histogram", set()),
        "churn_model_info": ("gauge", {"model_name", "model_version", "run_id"}),
    },
    "batch": {
        "churn_scoring_rows_read": ("gauge", set()),
        "churn_scoring_rows_scored": ("gauge", set()),
        "churn_scoring_rows_rejected": ("gauge", set()),
        "churn_scoring_rows_written": ("gauge", set()),
        "churn_scoring_duration_seconds": ("gauge", set()),
        "churn_scoring_risk_band_customers": ("gauge", {"band"}),
        "churn_scoring_high_risk_customers": ("gauge", set()),
        "churn_scoring_probability": ("histogram", set()),
        "churn_scoring_feature_psi": ("gauge", {"feature"}),
        "churn_scoring_score_psi": ("gauge", set()),
        "churn_scoring_model_info": ("gauge", {"model_name", "model_version", "run_id"}),
        "churn_scoring_last_success_timestamp_seconds": ("gauge", set()),
        "churn_scoring_last_failure_timestamp_seconds": ("gauge", set()),
        "churn_scoring_reject_share": ("gauge", set()),
        "churn_scoring_unseen_category_share": ("gauge", {"feature"}),
    },
}

REQUIRED_ALERTS = {
    "ChurnScoringNotSucceeded",
    "ChurnScoringNeverSucceeded",
    "ChurnScoringRunFailed",
    "ChurnScoringRejectShareHigh",
    "ChurnFeatureDrift",
    "ChurnScoreDrift",
    "ChurnServingErrorRateHigh",
    "ChurnServingLatencyP99High",
    "ChurnServingDown",
}


# ------------------------------------------------------------------ the contract file
def test_metrics_yaml_is_exactly_the_contract() -> None:
    contract = metrics_contract()
    entries = contract["metrics"]
    names = [m["name"] for m in entries]
    assert len(names) == len(set(names)), "duplicate metric names"
    for m in entries:
        assert set(m) == {"name", "type", "labels", "help", "source"}, m["name"]
        assert m["type"] in ("counter", "gauge", "histogram"), m["name"]
        assert m["source"] in ("serving", "batch"), m["name"]
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", m["name"])
        assert isinstance(m["labels"], list) and len(m["labels"]) == len(set(m["labels"]))
        assert "le" not in m["labels"] and m["help"].strip()
        if m["type"] == "counter":
            assert m["name"].endswith("_total"), f"{m['name']}: counters are exposed with _total"
        if m["source"] == "batch":
            assert m["name"].startswith("churn_scoring_"), m["name"]
            assert m["type"] != "counter", "Pushgateway metrics are per-run values, not counters"
    got: dict[str, dict[str, tuple[str, set[str]]]] = {m["source"]: {} for m in entries}
    for m in entries:
        got[m["source"]][m["name"]] = (m["type"], set(m["labels"]))
    assert got == CONTRACT
    assert set(contract["target_labels"]["batch"]) >= {"job", "namespace", "shard"}


def series_labels() -> dict[str, set[str]]:
    """Every series name a PromQL expression may select, with the labels it may carry."""
    contract = metrics_contract()
    allowed: dict[str, set[str]] = {}
    for m in contract["metrics"]:
        labels = set(m["labels"]) | set(contract["target_labels"][m["source"]])
        if m["type"] == "histogram":
            allowed[m["name"] + "_bucket"] = labels | {"le"}
            allowed[m["name"] + "_sum"] = labels
            allowed[m["name"] + "_count"] = labels
        else:
            allowed[m["name"]] = labels
    for m in contract["scrape_generated"]:
        allowed[m["name"]] = set(m["labels"])
    return allowed


# ------------------------------------------------------------------ PromQL checks
GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1d",
    "${namespace}": "churn",
    "$namespace": "churn",
    "${datasource}": "prometheus",
}


def _substitute(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def analyse(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """Parse a PromQL expression: its selectors (metric name, labels in the matchers)
    and every label named in a by/without/on/ignoring clause."""
    found: list[tuple[str, set[str]]] = []
    grouping: set[str] = set()

    def pre(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        if (
            isinstance(node, promql_parser.BinaryExpr)
            and node.modifier is not None
            and node.modifier.matching is not None
        ):
            grouping.update(node.modifier.matching.labels)
        if isinstance(node, promql_parser.VectorSelector):
            names = [m.value for m in node.matchers.matchers if m.name == "__name__"]
            name = node.name or (names[0] if names else None)
            assert name, f"selector without a metric name in {expr}"
            found.append((name, {m.name for m in node.matchers.matchers if m.name != "__name__"}))

    promql_parser.walk(promql_parser.parse(expr), pre_visit=pre)
    return found, grouping


def check_promql(expr: str, where: str) -> set[str]:
    """Assert the expression parses and selects only contract series and labels; return the series."""
    allowed = series_labels()
    found, grouping = analyse(expr)
    for name, labels in found:
        assert name in allowed, f"{where}: {name} is not in observability/metrics.yaml\n  {expr}"
        unknown = labels - allowed[name]
        assert not unknown, f"{where}: {name} has no label {unknown}\n  {expr}"
    possible = set().union(*(allowed[name] for name, _ in found)) if found else set()
    assert grouping <= possible, f"{where}: grouping by unknown labels {grouping - possible}\n  {expr}"
    return {name for name, _ in found}


def test_promql_check_rejects_unknown_metrics_and_labels() -> None:
    """Guard: the checker really fails on a wrong name, label or grouping."""
    check_promql("sum by (band) (churn_scoring_risk_band_customers)", "ok")
    for bad in (
        "rate(churn_requests_total[5m])",
        'churn_prediction_total{lable="Churn"}',
        "sum by (band) (churn_scoring_feature_psi)",
        "churn_scoring_probability",
    ):  # a histogram has no bare series
        with pytest.raises(AssertionError):
            check_promql(bad, "bad")
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(churn_http_requests_total[5m])")


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for child in [panel] + panel.get("panels", []):
            for target in child.get("targets", []):
                yield child["title"], target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["definition"])
            assert m, var["definition"]
            yield f"variable {var['name']}", m.group(1)


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def test_every_promql_names_only_exported_metrics() -> None:
    used: set[str] = set()
    dashboard = json.loads(DASHBOARD.read_text())
    for title, expr in dashboard_exprs(dashboard):
        used |= check_promql(_substitute(expr), f"dashboard panel {title!r}")
    for rule in alert_rules():
        used |= check_promql(rule["expr"], f"alert {rule['alert']}")
    # Every exported metric is shown or alerted on somewhere.
    exported = series_labels()
    families = {m["name"] for m in metrics_contract()["metrics"]}
    unused = {f for f in families if not any(u == f or u.startswith(f + "_") for u in used)}
    assert not unused, f"exported but neither on the dashboard nor in an alert: {unused}"
    assert used <= set(exported)


# ------------------------------------------------------------------ environments
# Staging and production share the Pushgateway (and usually Prometheus): every batch
# series must be told apart by `namespace` (the Pushgateway grouping key), on every
# panel and in every alert, or one environment hides or overwrites the other.
def _aggregations_without_namespace(expr: str) -> list[str]:
    """Aggregations in `expr` that drop the `namespace` label (no `by (... namespace ...)`)."""
    dropped: list[str] = []

    def pre(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            by = modifier is not None and modifier.type == promql_parser.AggModifierType.By
            if not by or "namespace" not in modifier.labels:
                dropped.append(str(node.op))

    promql_parser.walk(promql_parser.parse(expr), pre_visit=pre)
    return dropped


def test_environment_check_rejects_an_aggregation_that_drops_the_namespace() -> None:
    """Guard: the two checks below really fail on the old, environment-blind expressions."""
    assert _aggregations_without_namespace("time() - max(churn_scoring_last_success_timestamp_seconds) > 1")
    assert _aggregations_without_namespace("max by (shard) (churn_scoring_reject_share) > 0.05")
    assert not _aggregations_without_namespace("max by (namespace, shard) (churn_scoring_reject_share) > 0.05")


def test_every_batch_panel_filters_and_keeps_the_environment() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for title, expr in dashboard_exprs(dashboard):
        if "churn_scoring_" not in expr:
            continue
        selectors, _ = analyse(_substitute(expr))
        for name, labels in selectors:
            assert "namespace" in labels, f"panel {title!r}: {name} is not filtered by $namespace"
        if "_bucket" not in expr:  # a heatmap sums the selected environment's buckets by `le`
            assert not _aggregations_without_namespace(expr), f"panel {title!r} merges environments: {expr}"


def test_every_alert_keeps_the_environment() -> None:
    for rule in alert_rules():
        expr = rule["expr"]
        if rule["alert"] == "ChurnScoringNeverSucceeded":
            # absent() has no labels to keep; its per-environment branch is checked here.
            expr = re.split(r"\bor\b", expr, maxsplit=1)[1]
        dropped = _aggregations_without_namespace(expr)
        assert not dropped, f"{rule['alert']} aggregates away `namespace` ({dropped}): {rule['expr']}"
        assert "{{ $labels.namespace }}" in rule["annotations"]["summary"] or rule["alert"] in (
            "ChurnScoringNeverSucceeded",
            "ChurnServingDown",
        ), f"{rule['alert']}: the summary should say which environment"


# ------------------------------------------------------------------ dashboard
def test_dashboard_json_is_generated_and_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dashboard_has_the_required_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    exprs = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in panels}

    def panel_with(pattern: str, kind: str | None = None) -> str:
        hits = [
            t
            for t, e in exprs.items()
            if re.search(pattern, e) and (kind is None or next(p["type"] for p in panels if p["title"] == t) == kind)
        ]
        assert hits, f"no {kind or ''} panel queries /{pattern}/"
        return hits[0]

    # RPS
    panel_with(r"rate\(churn_http_requests_total\{[^}]*\}\[")
    latency = panel_with(r"histogram_quantile\(0\.99, .*churn_http_request_duration_seconds_bucket")
    assert "histogram_quantile(0.5," in exprs[latency]  # p50 next to p99
    # error rate
    panel_with(r'status=~"5\.\."')
    # confidence histogram
    panel_with(r"churn_prediction_probability_bucket", kind="heatmap")
    # predictions by label
    panel_with(r"sum by \(label\) \(rate\(churn_prediction_total")
    # since last success, per environment
    panel_with(r"time\(\) - max by \(namespace\) \(churn_scoring_last_success_timestamp_seconds\{", kind="stat")
    panel_with(r"churn_scoring_duration_seconds")
    rows = panel_with(r"churn_scoring_rows_scored")
    assert "churn_scoring_rows_rejected" in exprs[rows]
    panel_with(r"sum by \(namespace, band\) \(churn_scoring_risk_band_customers\{")
    panel_with(r"churn_scoring_score_psi")
    panel_with(r"by \(namespace, feature\) \(churn_scoring_feature_psi\{")
    panel_with(r"model_version.*churn_model_info", kind="table")
    panel_with(r"model_version.*churn_scoring_model_info", kind="table")
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_grafana_provisioning_loads_the_dashboard() -> None:
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "churn.yaml")
    assert provider["apiVersion"] == 1
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["options"]["path"].startswith("/")
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy" and ds["isDefault"] is True
    dashboard = json.loads(DASHBOARD.read_text())
    (var,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert var["query"] == ds["type"]


# ------------------------------------------------------------------ alert rules
def test_promtool_check_rules() -> None:
    proc = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = run([tool("promtool"), "test", "rules", ALERT_TESTS.name], cwd=PROM)
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_unit_tests_fail_when_a_rule_is_broken(tmp_path: Path) -> None:
    """Guard: the unit tests detect a changed threshold (26 h -> 30 h)."""
    (tmp_path / "alerts.yaml").write_text(ALERTS.read_text().replace("> 26 * 3600", "> 30 * 3600"))
    (tmp_path / "alerts_test.yaml").write_text(ALERT_TESTS.read_text())
    proc = run([tool("promtool"), "test", "rules", "alerts_test.yaml"], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "ChurnScoringNotSucceeded" in proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert REQUIRED_ALERTS <= names
    firing: set[str] = set()
    quiet: set[str] = set()
    tests = load_yaml(ALERT_TESTS)
    assert tests["rule_files"] == [ALERTS.name]
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert names - firing == set(), f"alerts never tested firing: {names - firing}"
    assert names - quiet == set(), f"alerts never tested quiet: {names - quiet}"


def test_alert_rules_say_what_the_brief_asks() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    squash = {name: re.sub(r"\s+", " ", r["expr"]).strip() for name, r in rules.items()}
    assert (
        squash["ChurnScoringNotSucceeded"]
        == "time() - max by (namespace) (churn_scoring_last_success_timestamp_seconds) > 26 * 3600"
    )
    assert squash["ChurnScoringNeverSucceeded"].startswith("absent(churn_scoring_last_success_timestamp_seconds) or")
    assert "churn_scoring_last_failure_timestamp_seconds" in squash["ChurnScoringRunFailed"]
    assert squash["ChurnScoringRejectShareHigh"].endswith("> 0.05")
    assert squash["ChurnFeatureDrift"].endswith("> 0.2") and "feature_psi" in squash["ChurnFeatureDrift"]
    assert squash["ChurnScoreDrift"].endswith("> 0.2") and "score_psi" in squash["ChurnScoreDrift"]
    assert 'status=~"5.."' in squash["ChurnServingErrorRateHigh"]
    assert squash["ChurnServingLatencyP99High"].startswith("histogram_quantile(0.99,")
    assert squash["ChurnServingDown"] == 'up{job="churn-serving"} == 0'


def test_runbook_links_point_at_existing_doc_sections() -> None:
    anchors = markdown_anchors(DOCS)
    for rule in alert_rules():
        runbook = rule["annotations"].get("runbook")
        if runbook:
            path, _, anchor = runbook.partition("#")
            assert path == "docs/deployment.md" and anchor in anchors, f"{rule['alert']}: {runbook}"


# ------------------------------------------------------------------ scrape configuration
def test_scrape_config_matches_the_rules_and_the_manifests(tmp_path: Path) -> None:
    config = load_yaml(SCRAPE)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert "churn-serving" in jobs, 'the alert ChurnServingDown selects up{job="churn-serving"}'
    serving = jobs["churn-serving"]
    keep = [r for r in serving["relabel_configs"] if r.get("action") == "keep"]
    assert any("prometheus_io_scrape" in " ".join(r["source_labels"]) for r in keep)
    targets = {r.get("target_label") for r in serving["relabel_configs"]}
    assert set(metrics_contract()["target_labels"]["serving"]) - {"job", "instance"} <= targets
    pushgateway = [j for j in jobs.values() if j.get("honor_labels")]
    assert pushgateway, "the Pushgateway must be scraped with honor_labels: true (keeps job and shard)"
    assert config["rule_files"] == [ALERTS.name]

    # Debian's promtool is built without the Kubernetes service discovery, so the
    # config is checked with that one block swapped for a static target; every
    # other field (relabelling, rule files) is validated as written.
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            assert job["kubernetes_sd_configs"][0]["role"] == "pod"
            del job["kubernetes_sd_configs"]
            job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    config["rule_files"] = [str(ALERTS)]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    proc = run([tool("promtool"), "check", "config", str(checked)])
    assert "SUCCESS" in proc.stdout
