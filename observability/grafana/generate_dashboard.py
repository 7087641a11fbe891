#!/usr/bin/env python3
"""Generate the churn Grafana dashboard (observability/grafana/dashboards/churn.json).

Plain Python, no dependency: the dashboard is a list of panel descriptions
below, turned into the Grafana 11 dashboard JSON model (schemaVersion 39).
The JSON is checked in and loaded by the provisioning file
observability/grafana/provisioning/dashboards/churn.yaml.

    python observability/grafana/generate_dashboard.py          # rewrite the JSON
    python observability/grafana/generate_dashboard.py --check  # exit 1 if stale

tests/deploy/test_observability.py runs --check and verifies that every PromQL
expression parses and names only metrics listed in observability/metrics.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "churn.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
# Real traffic only: the probes (/ping answers 503 until the model is loaded, /live) and /metrics are left out.
API = 'route!~"/?(ping|live|metrics)"'
REQUESTS = f"churn_http_requests_total{{{NS}, {API}}}"
DURATION = f"churn_http_request_duration_seconds_bucket{{{NS}, {API}}}"


def batch(metric: str) -> str:
    """A nightly-job series of the selected environments (the Pushgateway group's `namespace`)."""
    return f"{metric}{{{NS}}}"


def rate(selector: str, fn: str = "rate") -> str:
    return f"{fn}({selector}[$__rate_interval])"


def quantile(q: float, bucket_selector: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({rate(bucket_selector)}))"


def status_share(status_regex: str) -> str:
    with_status = REQUESTS[:-1] + f', status=~"{status_regex}"}}'
    return f"sum({rate(with_status)}) / sum({rate(REQUESTS)})"


def _target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    target = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}
    target.update(extra)
    return target


def _targets(*pairs: tuple[str, str], **extra: Any) -> list[dict[str, Any]]:
    return [_target(expr, legend, chr(ord("A") + i), **extra) for i, (expr, legend) in enumerate(pairs)]


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    thresholds: dict[str, Any] | None = None,
    draw_style: str = "line",
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": draw_style,
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "auto",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    if thresholds:
        custom["thresholdsStyle"] = {"mode": "line"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": unit, "custom": custom, "thresholds": thresholds or _thresholds((None, "green"))},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    targets: list[dict[str, Any]],
    unit: str = "short",
    description: str = "",
    thresholds: dict[str, Any] | None = None,
    decimals: int | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": thresholds or _thresholds((None, "green")),
        "color": {"mode": "thresholds"},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def heatmap(title: str, targets: list[dict[str, Any]], description: str = "", y_unit: str = "short") -> dict[str, Any]:
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "custom": {
                    "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                    "scaleDistribution": {"type": "linear"},
                }
            },
            "overrides": [],
        },
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "steps": 64,
                "exponent": 0.5,
                "fill": "dark-orange",
                "reverse": False,
                "scale": "exponential",
            },
            "yAxis": {"axisPlacement": "left", "unit": y_unit, "reverse": False},
            "rowsFrame": {"layout": "auto"},
            "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "cellValues": {"unit": "short"},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-09},
        },
    }


def table(
    title: str, targets: list[dict[str, Any]], description: str = "", hide: tuple[str, ...] = ("Time", "Value")
) -> dict[str, Any]:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}},
        "transformations": [{"id": "organize", "options": {"excludeByName": {name: True for name in hide}}}],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


# (panel, width, height); rows take the full width. Laid out left to right.
LAYOUT: list[tuple[dict[str, Any], int, int]] = [
    (row("Serving (real time)"), 24, 1),
    (
        timeseries(
            "Requests per second",
            _targets(
                (f"sum by (route, status) ({rate(f'churn_http_requests_total{{{NS}}}')})", "{{route}} {{status}}"),
            ),
            unit="reqps",
            description="All HTTP requests answered by the serving pods, by route and status.",
        ),
        8,
        8,
    ),
    (
        timeseries(
            "Request latency p50 / p99",
            _targets(
                (quantile(0.5, DURATION), "p50 request"),
                (quantile(0.99, DURATION), "p99 request"),
                (quantile(0.99, f"prediction_latency_seconds_bucket{{{NS}}}"), "p99 model scoring"),
            ),
            unit="s",
            thresholds=_thresholds((None, "green"), (0.5, "red")),
            description="Whole request (without /ping and /metrics) and model scoring alone. "
            "Alert: p99 > 500 ms for 10 min.",
        ),
        8,
        8,
    ),
    (
        timeseries(
            "Error rate (5xx share)",
            _targets((status_share("5.."), "5xx share"), (status_share("4.."), "4xx share")),
            unit="percentunit",
            thresholds=_thresholds((None, "green"), (0.05, "red")),
            description="Share of requests answered with a server error (alert above 5%) and with a client error.",
        ),
        8,
        8,
    ),
    (
        heatmap(
            "Confidence histogram over time (predicted churn probability)",
            [
                _target(
                    f"sum by (le) ({rate(f'churn_prediction_probability_bucket{{{NS}}}', 'increase')})",
                    "{{le}}",
                    format="heatmap",
                )
            ],
            description="How many predictions fell in each probability bucket (0.1 .. 1.0) per interval.",
        ),
        12,
        8,
    ),
    (
        timeseries(
            "Predictions by label",
            _targets(
                (f"sum by (label) ({rate(f'churn_prediction_total{{{NS}}}')})", "{{label}}"),
            ),
            unit="ops",
            stack=True,
            description="Predictions per second, Churn vs No Churn.",
        ),
        12,
        8,
    ),
    (
        stat(
            "Serving pods up",
            _targets(
                (f'sum(up{{job="churn-serving", {NS}}})', "up"),
            ),
            thresholds=_thresholds((None, "red"), (2, "green")),
            description="Pods whose :8080 answers the scrape (the same port as /ping). Alert: a pod down for 2 min.",
        ),
        6,
        6,
    ),
    (
        table(
            "Model served",
            [
                _target(
                    f"count by (model_name, model_version, run_id) (churn_model_info{{{NS}}} == 1)",
                    "",
                    format="table",
                    instant=True,
                )
            ],
            description="Model versions being served and how many worker processes serve each "
            "(hot reload follows the production alias; versions served before are exported as 0).",
        ),
        18,
        6,
    ),
    (row("Nightly batch scoring"), 24, 1),
    (
        stat(
            "Time since last successful run",
            _targets(
                (
                    f"time() - max by (namespace) ({batch('churn_scoring_last_success_timestamp_seconds')})",
                    "{{namespace}}",
                ),
            ),
            unit="s",
            thresholds=_thresholds((None, "green"), (26 * 3600, "red")),
            description="Alert above 26 h (and when no success was ever pushed).",
        ),
        6,
        6,
    ),
    (
        stat(
            "Last run failed?",
            _targets(
                (
                    f"max by (namespace) ({batch('churn_scoring_last_failure_timestamp_seconds')})"
                    " > bool on (namespace) "
                    f"max by (namespace) ({batch('churn_scoring_last_success_timestamp_seconds')})",
                    "{{namespace}}",
                ),
            ),
            thresholds=_thresholds((None, "green"), (1, "red")),
            description="1 when a failure was pushed after the last success.",
        ),
        6,
        6,
    ),
    (
        stat(
            "High-risk customers (last run)",
            _targets(
                (f"sum by (namespace) ({batch('churn_scoring_high_risk_customers')})", "{{namespace}}"),
            ),
            description="Customers in the high risk band, all shards.",
        ),
        6,
        6,
    ),
    (
        stat(
            "Reject share (last run)",
            _targets(
                (
                    f"sum by (namespace) ({batch('churn_scoring_rows_rejected')})"
                    f" / sum by (namespace) ({batch('churn_scoring_rows_read')})",
                    "{{namespace}}",
                ),
            ),
            unit="percentunit",
            decimals=2,
            thresholds=_thresholds((None, "green"), (0.05, "red")),
            description="Rows rejected by schema validation over rows read. Alert above 5% in any shard.",
        ),
        6,
        6,
    ),
    (
        timeseries(
            "Run duration by shard",
            _targets(
                (
                    f"max by (namespace, shard) ({batch('churn_scoring_duration_seconds')})",
                    "{{namespace}} shard {{shard}}",
                ),
            ),
            unit="s",
            description="Wall-clock time of each shard's last run.",
        ),
        8,
        8,
    ),
    (
        timeseries(
            "Rows per run",
            _targets(
                (f"sum by (namespace) ({batch('churn_scoring_rows_read')})", "{{namespace}} read"),
                (f"sum by (namespace) ({batch('churn_scoring_rows_scored')})", "{{namespace}} scored"),
                (f"sum by (namespace) ({batch('churn_scoring_rows_rejected')})", "{{namespace}} rejected"),
                (f"sum by (namespace) ({batch('churn_scoring_rows_written')})", "{{namespace}} written"),
            ),
            description="Summed over shards; each value holds until the next night's run.",
        ),
        8,
        8,
    ),
    (
        timeseries(
            "Customers per risk band",
            _targets(
                (f"sum by (namespace, band) ({batch('churn_scoring_risk_band_customers')})", "{{namespace}} {{band}}"),
            ),
            stack=True,
            description="High / medium / low risk customers in the last run, all shards.",
        ),
        8,
        8,
    ),
    (
        timeseries(
            "Score drift (PSI)",
            _targets(
                (f"max by (namespace) ({batch('churn_scoring_score_psi')})", "{{namespace}} score PSI"),
            ),
            thresholds=_thresholds((None, "green"), (0.1, "yellow"), (0.2, "red")),
            description="Population stability index of the predicted probability against the training "
            "reference. Alert above 0.2.",
        ),
        8,
        8,
    ),
    (
        timeseries(
            "Feature drift (PSI)",
            _targets(
                (f"max by (namespace, feature) ({batch('churn_scoring_feature_psi')})", "{{namespace}} {{feature}}"),
            ),
            thresholds=_thresholds((None, "green"), (0.1, "yellow"), (0.2, "red")),
            description="PSI of each feature against the training reference (max over shards). Alert above 0.2.",
        ),
        8,
        8,
    ),
    (
        timeseries(
            "Unseen category values (share of customers)",
            _targets(
                (f"max by (namespace, feature) ({batch('churn_scoring_unseen_category_share')})",
                 "{{namespace}} {{feature}}"),
            ),
            unit="percentunit",
            thresholds=_thresholds((None, "green"), (0.05, "red")),
            description="Share of the customers read whose value of a category feature the model never learned "
            "(scored as missing, or rejected under unknown: reject; max over shards). Alert above 5%.",
        ),
        8,
        8,
    ),
    (
        heatmap(
            "Batch score distribution per run",
            [_target(f"sum by (le) ({batch('churn_scoring_probability_bucket')})", "{{le}}", format="heatmap")],
            description="Histogram of the churn probabilities of each nightly run.",
        ),
        8,
        8,
    ),
    (
        table(
            "Model used by the last run",
            [
                _target(
                    f"count by (namespace, model_name, model_version, run_id) ({batch('churn_scoring_model_info')})",
                    "",
                    format="table",
                    instant=True,
                )
            ],
            description="Registered model version that scored the last run (should match the served one).",
        ),
        24,
        5,
    ),
]


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, (panel, width, height) in enumerate(LAYOUT, start=1):
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        panel = dict(panel, id=panel_id, gridPos={"h": height, "w": width, "x": x, "y": y})
        panels.append(panel)
        x += width
        row_height = max(row_height, height)
    return {
        "uid": "churn-overview",
        "title": "Churn: serving and nightly scoring",
        "description": "Real-time churn scoring API and the nightly batch scoring job. "
        "Generated by observability/grafana/generate_dashboard.py; do not edit by hand.",
        "tags": ["churn", "ml", "generated"],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "timezone": "browser",
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                    "includeAll": False,
                    "multi": False,
                    "skipUrlSync": False,
                },
                {
                    "name": "namespace",
                    "label": "Namespace (environment)",
                    "type": "query",
                    "datasource": DS,
                    "definition": 'label_values(up{job="churn-serving"}, namespace)',
                    "query": {
                        "qryType": 1,
                        "query": 'label_values(up{job="churn-serving"}, namespace)',
                        "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    },
                    "current": {},
                    "hide": 0,
                    "refresh": 2,
                    "regex": "",
                    "sort": 1,
                    "options": [],
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "skipUrlSync": False,
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the checked-in JSON is not up to date")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
