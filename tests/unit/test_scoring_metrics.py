"""Batch metrics: exactly the names, types and labels promised in observability/metrics.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from churn.adapters.pushgateway import MetricsSink, RunMetrics

REPO = Path(__file__).resolve().parents[2]


def _run() -> RunMetrics:
    return RunMetrics(
        rows_read=10,
        rows_scored=9,
        rows_rejected=1,
        rows_written=9,
        duration_seconds=1.5,
        bands={"high": 2, "medium": 3, "low": 4},
        buckets=[(0.1, 4), (0.5, 3), (1.0, 2), (float("inf"), 0)],
        score_sum=3.2,
        feature_psi={"tenure": 0.01, "contract": 0.2},
        score_psi=0.05,
        model={"model_name": "churn", "model_version": "3", "run_id": "abc"},
        reject_share=0.1,
        unseen_share={"contract": 0.02, "internet_service": 0.0},
    )


def _families(path: Path) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def test_textfile_holds_exactly_the_batch_metrics_of_the_contract(tmp_path: Path) -> None:
    contract = yaml.safe_load((REPO / "observability" / "metrics.yaml").read_text())
    batch = {m["name"]: m for m in contract["metrics"] if m["source"] == "batch"}
    textfile = tmp_path / "churn_scoring.prom"

    assert MetricsSink(0, textfile=str(textfile)).success(_run())
    MetricsSink(0, textfile=str(textfile)).failure()
    families = {**_families(textfile), **_families(tmp_path / "churn_scoring_failure.prom")}

    assert set(families) == set(batch)
    for name, family in families.items():
        assert family.type == batch[name]["type"], name  # type: ignore[attr-defined]
        labels = {k for s in family.samples for k in s.labels if k != "le"}  # type: ignore[attr-defined]
        assert labels == set(batch[name]["labels"]), name


def test_histogram_buckets_are_cumulative_and_count_every_score(tmp_path: Path) -> None:
    textfile = tmp_path / "m.prom"
    MetricsSink(0, textfile=str(textfile)).success(_run())

    samples = {(s.name, s.labels.get("le")): s.value for s in _families(textfile)["churn_scoring_probability"].samples}  # type: ignore[attr-defined]

    assert samples[("churn_scoring_probability_bucket", "0.1")] == 4
    assert samples[("churn_scoring_probability_bucket", "1.0")] == 9
    assert samples[("churn_scoring_probability_count", None)] == 9


def test_failure_goes_to_its_own_file_so_the_last_success_stays(tmp_path: Path) -> None:
    textfile = tmp_path / "churn_scoring.prom"
    sink = MetricsSink(0, textfile=str(textfile))
    sink.success(_run())

    sink.failure()

    assert "churn_scoring_last_success_timestamp_seconds" in _families(textfile)
    assert set(_families(tmp_path / "churn_scoring_failure.prom")) == {"churn_scoring_last_failure_timestamp_seconds"}


def test_unseen_category_share_is_pushed_per_feature(tmp_path: Path) -> None:
    textfile = tmp_path / "m.prom"
    MetricsSink(0, textfile=str(textfile)).success(_run())

    family = _families(textfile)["churn_scoring_unseen_category_share"]
    assert {s.labels["feature"]: s.value for s in family.samples} == {"contract": 0.02, "internet_service": 0.0}  # type: ignore[attr-defined]
