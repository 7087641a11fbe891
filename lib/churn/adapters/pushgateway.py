"""The nightly job's metrics: pushed to a Prometheus Pushgateway, or written to a textfile.

Names are a contract with the dashboards and alerts (observability/metrics.yaml). One push
per run under job `churn_scoring` and grouping key `namespace` (the environment, when
set: staging and production share one Pushgateway and must not overwrite each other's
groups) and `shard`: on success every metric with
`last_success` (pushadd, so the previous `last_failure` stays); on failure only
`last_failure` (so the last good run's figures stay visible). A Pushgateway that cannot be
reached costs a warning, never the run. Without a Pushgateway the same text goes to a file
for node_exporter's textfile collector (failures to a sibling file, so neither hides the other).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CollectorRegistry, pushadd_to_gateway, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import basic_auth_handler, default_handler

log = logging.getLogger(__name__)
JOB = "churn_scoring"


@dataclass
class RunMetrics:
    """A snapshot of one shard's run, in the units the metrics use."""

    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    rows_written: int = 0
    duration_seconds: float = 0.0
    bands: dict[str, int] = field(default_factory=dict)
    high_band: str = "high"
    buckets: list[tuple[float, int]] = field(default_factory=list)  # (upper bound, count in bucket)
    score_sum: float = 0.0
    feature_psi: dict[str, float] = field(default_factory=dict)
    score_psi: float | None = None
    model: dict[str, str] = field(default_factory=dict)  # model_name, model_version, run_id
    reject_share: float = 0.0
    unseen_share: dict[str, float] = field(default_factory=dict)  # category feature -> share of rows read


class _Snapshot:
    """A collector that yields fixed families (the run is over when they are pushed)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _per_feature(name: str, documentation: str, values: dict[str, float]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["feature"])
    for feature, value in values.items():
        gauge.add_metric([feature], value)
    return gauge


def success_families(run: RunMetrics, now: float) -> list[Metric]:
    """Every metric of a successful run, as Prometheus metric families."""
    families: list[Metric] = [
        _gauge(
            "churn_scoring_rows_read", "Customers read from the source in the last run of this shard.", run.rows_read
        ),
        _gauge("churn_scoring_rows_scored", "Customers scored in the last run of this shard.", run.rows_scored),
        _gauge(
            "churn_scoring_rows_rejected",
            "Customers rejected by schema validation (quarantined) in the last run.",
            run.rows_rejected,
        ),
        _gauge(
            "churn_scoring_rows_written", "Risk-table rows written in the last run of this shard.", run.rows_written
        ),
        _gauge(
            "churn_scoring_duration_seconds",
            "Wall-clock duration of the last run of this shard in seconds.",
            run.duration_seconds,
        ),
        _gauge(
            "churn_scoring_high_risk_customers",
            "Customers in the high risk band in the last run.",
            run.bands.get(run.high_band, 0),
        ),
        _gauge(
            "churn_scoring_reject_share",
            "Share of rejected rows in the last run (rows_rejected / rows_read).",
            run.reject_share,
        ),
        _gauge("churn_scoring_last_success_timestamp_seconds", "Unix time of the last successful run.", now),
    ]
    bands = GaugeMetricFamily(
        "churn_scoring_risk_band_customers", "Customers per risk band in the last run.", labels=["band"]
    )
    for band, count in run.bands.items():
        bands.add_metric([band], count)
    families.append(bands)
    cumulative, buckets = 0, []
    for bound, count in run.buckets:
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    if not buckets or buckets[-1][0] != "+Inf":
        buckets.append(("+Inf", cumulative))
    families.append(
        HistogramMetricFamily(
            "churn_scoring_probability",
            "Distribution of the churn probabilities of the last run.",
            buckets=buckets,
            sum_value=run.score_sum,
        )
    )
    families.append(_per_feature("churn_scoring_feature_psi",
                                 "Population stability index of each feature against the training reference.",
                                 run.feature_psi))
    families.append(_per_feature("churn_scoring_unseen_category_share",
                                 "Share of the rows read whose value of a category feature the model never learned "
                                 "(last run).", run.unseen_share))
    if run.score_psi is not None:
        families.append(
            _gauge(
                "churn_scoring_score_psi",
                "Population stability index of the score against the training reference.",
                run.score_psi,
            )
        )
    info = GaugeMetricFamily(
        "churn_scoring_model_info",
        "The model used by the last run; value 1.",
        labels=["model_name", "model_version", "run_id"],
    )
    info.add_metric(
        [run.model.get("model_name", ""), run.model.get("model_version", ""), run.model.get("run_id", "")], 1
    )
    families.append(info)
    return families


def failure_families(now: float) -> list[Metric]:
    return [_gauge("churn_scoring_last_failure_timestamp_seconds", "Unix time of the last failed run.", now)]


class MetricsSink:
    """Where one shard's metrics go: a Pushgateway (`gateway` URL) or a textfile.

    `environment` (CHURN_ENVIRONMENT, the Kubernetes namespace) joins the grouping key as
    label `namespace`, the label the serving metrics carry from their scrape.
    """

    def __init__(
        self,
        shard: int,
        gateway: str | None = None,
        textfile: str | None = None,
        timeout: float = 5.0,
        environment: str | None = None,
    ) -> None:
        if not gateway and not textfile:
            raise ValueError("MetricsSink needs a Pushgateway URL or a textfile path")
        self.shard = shard
        self.environment = environment
        self.gateway: str | None = None
        self._handler: Any = default_handler
        if gateway:
            self.gateway, self._handler = _split_credentials(gateway)
        self.textfile = Path(textfile) if textfile else None
        self.timeout = timeout

    @property
    def grouping_key(self) -> dict[str, str]:
        """This run's group on the Pushgateway (besides `job`): one per environment and shard."""
        key = {"namespace": self.environment} if self.environment else {}
        return {**key, "shard": str(self.shard)}

    def success(self, run: RunMetrics, registry: CollectorRegistry | None = None) -> bool:
        return self._send(success_families(run, time.time()), registry, "success")

    def failure(self, registry: CollectorRegistry | None = None) -> bool:
        return self._send(failure_families(time.time()), registry, "failure")

    def _send(self, families: list[Metric], registry: CollectorRegistry | None, kind: str) -> bool:
        """Push or write; a Pushgateway or disk problem is logged, never raised (the run is done)."""
        registry = registry or CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(families))
        try:
            if self.gateway:
                pushadd_to_gateway(
                    self.gateway,
                    job=JOB,
                    registry=registry,
                    grouping_key=self.grouping_key,
                    timeout=self.timeout,
                    handler=self._handler,
                )
            else:
                assert self.textfile is not None
                path = (
                    self.textfile
                    if kind == "success"
                    else self.textfile.with_name(self.textfile.stem + "_failure" + self.textfile.suffix)
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                write_to_textfile(str(path), registry)
            return True
        except Exception as err:  # noqa: BLE001 - metrics must never fail the job
            log.warning(
                "could not send job metrics",
                extra={
                    "target": self.gateway or str(self.textfile),
                    "kind": kind,
                    "error": str(err).splitlines()[0] if str(err) else type(err).__name__,
                },
            )
            return False


def _split_credentials(url: str) -> tuple[str, Any]:
    """The URL without user:password, and the push handler that sends them as HTTP basic auth.

    urllib cannot open a URL with credentials in it (it reads them as part of the host), so a
    protected Pushgateway given as http://user:password@host must get them as a header.
    """
    parts = urlsplit(url)
    if parts.username is None:
        return url, default_handler
    user, password = unquote(parts.username), unquote(parts.password or "")
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    return bare, handler


def describe(run: RunMetrics) -> dict[str, Any]:
    """The headline figures for the final log line."""
    return {
        "rows_read": run.rows_read,
        "rows_scored": run.rows_scored,
        "rows_rejected": run.rows_rejected,
        "rows_written": run.rows_written,
        "duration_s": round(run.duration_seconds, 2),
        "bands": run.bands,
    }

