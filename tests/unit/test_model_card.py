"""Model cards (text and Markdown) and the rule for what counts as an evaluated version."""

from __future__ import annotations

import pytest

from churn.adapters.registry import VersionInfo
from churn.adapters.registry_actions import evaluation_gap
from churn.model_card import Metric, ModelCard, metrics_with_intervals


def test_interval_bounds_logged_beside_a_metric_are_shown_with_it_and_not_alone() -> None:
    found = metrics_with_intervals({"test.f1": 0.61, "test.f1.low": 0.55, "test.f1.high": 0.66,
                                    "test.brier": 0.14, "valid.f1": 0.6})
    assert found == [Metric("test.brier", 0.14), Metric("test.f1", 0.61, 0.55, 0.66)]
    assert found[1].shown() == "0.6100 [0.5500, 0.6600]"


def card(**changes: object) -> ModelCard:
    base: dict = dict(
        name="churn", version="7", aliases=("production",), run_id="abc", created="2024-01-31T10:00:00Z",
        verdict="promoted", verdict_reason="f1 0.61 beats 0.58", data_hash="d" * 64, data_source="data/c.parquet",
        sizes={"test rows": 4000}, threshold=0.31, calibration="sigmoid", params={"learning_rate": "0.05"},
        features=[{"name": "tenure", "type": "int", "min": 0.0, "max": 1200.0, "nullable": False},
                  {"name": "total_charges", "type": "float", "min": 0.0, "max": None, "nullable": True},
                  {"name": "contract", "type": "category", "values": ["Month-to-month", "One year"]}],
        metrics=[Metric("test.f1", 0.61, 0.55, 0.66), Metric("test.rows", 4000.0)],
        plots=["runs:/abc/plots/roc.png"], model_sha256="e" * 64, git_commit="f" * 40, trained_at="2024-01-31",
        moves={"promote.by": "alice", "promote.reason": "A/B | winner"},
    )
    return ModelCard(**{**base, **changes})


def test_the_text_card_has_every_fact_an_operator_asks_for() -> None:
    text = card().text()
    for expected in ("churn version 7", "production", "promoted (f1 0.61 beats 0.58)", "0.3100", "sigmoid",
                     "d" * 64, "test rows 4,000", "test.f1                  0.6100 [0.5500, 0.6600]",
                     "tenure (int): >= 0 and <= 1200", "total_charges (float): >= 0; may be missing",
                     "contract (category): one of Month-to-month, One year", "learning_rate = 0.05",
                     "runs:/abc/plots/roc.png", "e" * 64, "promote.by", "alice"):
        assert expected in text, expected


def test_the_markdown_card_is_tables_that_survive_pipes_in_values() -> None:
    markdown = card().markdown()
    assert markdown.startswith("# Model card: churn version 7\n")
    assert "| promote.reason | A/B \\| winner |" in markdown
    assert "| test.f1 | 0.6100 [0.5500, 0.6600] |" in markdown and "- runs:/abc/plots/roc.png" in markdown


def info(metrics: dict[str, float], tags: dict[str, str]) -> VersionInfo:
    return VersionInfo(version="3", run_id="r", aliases=(), metrics=metrics, tags=tags, created=0)


@pytest.mark.parametrize("metrics, tags, gap", [
    ({"test.f1": 0.6}, {"verdict": "promoted"}, None),
    ({}, {"verdict": "promoted"}, "its run has no test metrics"),
    ({"valid.f1": 0.6}, {"verdict": "promoted"}, "its run has no test metrics"),
    ({"test.f1": 0.6}, {}, "it has no promotion verdict"),
    ({"test.f1": 0.6}, {"verdict": "rejected"}, "its verdict was 'rejected'"),
])
def test_a_version_passed_evaluation_only_with_test_metrics_and_a_verdict_that_is_not_a_rejection(
    metrics: dict[str, float], tags: dict[str, str], gap: str | None
) -> None:
    assert evaluation_gap(info(metrics, tags)) == gap
