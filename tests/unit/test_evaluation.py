"""Test-split metrics and plots (churn.evaluation) on hand-made examples with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from churn.evaluation import metrics, write_plots

# Four customers: the classic ROC example (AUC 0.75).
Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8])


def test_metrics_at_threshold_half_on_a_tiny_known_example() -> None:
    result = metrics(Y, P, 0.5)
    # predicted [0, 0, 0, 1]: tp=1 fp=0 fn=1 tn=2
    assert result["confusion_matrix"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    assert result["precision"] == pytest.approx(1.0)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["roc_auc"] == pytest.approx(0.75)
    # Average precision: ranks 0.8(+), 0.4(-), 0.35(+), 0.1(-): 0.5*1 + 0.5*(2/3)
    assert result["pr_auc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert result["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    assert (result["threshold"], result["rows"], result["positive_rate"]) == (0.5, 4, 0.5)


def test_a_probability_equal_to_the_threshold_counts_as_churn() -> None:
    result = metrics(Y, P, 0.35)
    # predicted [0, 1, 1, 1]: tp=2 fp=1 fn=0 tn=1
    assert result["confusion_matrix"] == {"tn": 1, "fp": 1, "fn": 0, "tp": 2}
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(1.0)
    assert result["f1"] == pytest.approx(0.8)
    # Threshold-free metrics do not move with the threshold.
    assert result["roc_auc"] == metrics(Y, P, 0.5)["roc_auc"]


def test_larger_example_matches_counts_by_hand() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.7, 0.6, 0.2, 0.8, 0.3, 0.2, 0.1, 0.1, 0.05])
    result = metrics(y, p, 0.6)
    # predicted churn: 0.9, 0.7, 0.6 (all churners) and 0.8 (a stayer)
    assert result["confusion_matrix"] == {"tn": 5, "fp": 1, "fn": 1, "tp": 3}
    assert result["precision"] == pytest.approx(0.75)
    assert result["recall"] == pytest.approx(0.75)
    assert result["f1"] == pytest.approx(0.75)
    assert result["positive_rate"] == pytest.approx(0.4)
    assert sum(result["confusion_matrix"].values()) == result["rows"] == 10


def test_nobody_predicted_to_churn_gives_zero_not_an_error() -> None:
    result = metrics(Y, P, 0.99)
    assert result["confusion_matrix"] == {"tn": 2, "fp": 0, "fn": 2, "tp": 0}
    assert (result["precision"], result["recall"], result["f1"]) == (0.0, 0.0, 0.0)


def test_single_class_labels_give_nan_aucs_and_the_rest() -> None:
    result = metrics(np.zeros(3, dtype=int), np.array([0.1, 0.6, 0.2]), 0.5)
    assert math.isnan(result["roc_auc"]) and math.isnan(result["pr_auc"])
    assert result["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 0, "tp": 0}


def test_metrics_are_plain_json_types() -> None:
    result = metrics(Y, P, 0.5)
    assert json.loads(json.dumps(result)) == result
    assert all(type(v) in (float, int, dict) for v in result.values())


def test_write_plots_writes_the_five_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    out = tmp_path / "plots" / "nested"
    paths = write_plots(out, y, p, 0.5, {"tenure": 10.0, "contract": 30.0, "support_calls": 5.0}, uncalibrated=p**0.5)
    names = sorted(path.name for path in paths)
    assert names == sorted(["roc.png", "pr.png", "calibration.png", "confusion_matrix.png", "feature_importance.png"])
    assert sorted(path.name for path in out.iterdir()) == names
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000, path.name
        assert data[:8] == b"\x89PNG\r\n\x1a\n", path.name


def test_write_plots_without_uncalibrated_scores(tmp_path: Path) -> None:
    paths = write_plots(
        tmp_path, np.array([0, 1, 0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.9, 0.6, 0.1]), 0.5, {"a": 1.0}
    )
    assert len(paths) == 5 and all(path.stat().st_size > 0 for path in paths)
