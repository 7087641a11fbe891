"""Test-split metrics and plots: what a model is judged and promoted on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def metrics(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, Any]:
    """F1, precision, recall (at the threshold), ROC-AUC, PR-AUC, Brier and the confusion matrix."""
    predicted = (probability >= threshold).astype(np.int8)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    both_classes = len(np.unique(y_true)) == 2
    return {
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, probability)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y_true, probability)) if both_classes else float("nan"),
        "brier": float(brier_score_loss(y_true, probability)),
        "threshold": float(threshold),
        "rows": int(y_true.size),
        "positive_rate": float(np.mean(y_true)) if y_true.size else 0.0,
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def oracle(y_true: np.ndarray, true_probability: np.ndarray) -> dict[str, float]:
    """The best any model could do on these rows: scores of the generator's true probabilities."""
    return {
        "roc_auc": float(roc_auc_score(y_true, true_probability)),
        "pr_auc": float(average_precision_score(y_true, true_probability)),
        "brier": float(brier_score_loss(y_true, true_probability)),
    }


# Points kept per curve in the plot data files (enough for a smooth line, small in git).
CURVE_POINTS = 200


def _thin(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    if len(rows) <= CURVE_POINTS:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, CURVE_POINTS).round().astype(int))
    return [rows[i] for i in keep]


def curves(
    y_true: np.ndarray, probability: np.ndarray, threshold: float, uncalibrated: np.ndarray | None = None
) -> dict[str, list[dict[str, Any]]]:
    """ROC, precision-recall, calibration and per-row confusion data, as DVC plots read them."""
    fpr, tpr, cuts = roc_curve(y_true, probability)
    roc = [{"fpr": round(float(f), 6), "tpr": round(float(t), 6), "threshold": round(float(min(c, 1.0)), 6)}
           for f, t, c in zip(fpr, tpr, cuts)]
    precision, recall, _ = precision_recall_curve(y_true, probability)
    pr = [{"recall": round(float(r), 6), "precision": round(float(p), 6)}
          for r, p in zip(recall[::-1], precision[::-1])]
    calibration = []
    for label, values in (("calibrated", probability), ("uncalibrated", uncalibrated)):
        if values is None:
            continue
        observed, mean = calibration_curve(y_true, values, n_bins=10, strategy="quantile")
        calibration += [{"curve": label, "mean_predicted": round(float(m), 6), "observed": round(float(o), 6)}
                        for m, o in zip(mean, observed)]
    names = np.array(["stay", "churn"])
    predicted = (probability >= threshold).astype(int)
    confusion = [{"actual": str(a), "predicted": str(b)} for a, b in zip(names[y_true.astype(int)], names[predicted])]
    return {"roc": _thin(roc), "pr": _thin(pr), "calibration": calibration, "confusion": confusion}


def write_curves(
    out_dir: Path, y_true: np.ndarray, probability: np.ndarray, threshold: float,
    uncalibrated: np.ndarray | None = None,
) -> list[Path]:
    """plots/roc.json, pr.json, calibration.json and confusion.json: the curves as data for `dvc plots diff`."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in curves(y_true, probability, threshold, uncalibrated).items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(rows, separators=(",", ":")) + "\n")
        paths.append(path)
    return paths


def write_plots(
    out_dir: Path,
    y_true: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    importance: dict[str, float],
    uncalibrated: np.ndarray | None = None,
) -> list[Path]:
    """ROC, PR, calibration, confusion-matrix and feature-importance PNGs."""
    import matplotlib

    matplotlib.use("Agg")  # no display in jobs and containers
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)

    fpr, tpr, _ = roc_curve(y_true, probability)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y_true, probability):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC")
    ax.legend()
    save(fig, "roc.png")

    precision, recall, _ = precision_recall_curve(y_true, probability)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, label=f"AP {average_precision_score(y_true, probability):.3f}")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall")
    ax.legend()
    save(fig, "pr.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    for label, values in (("calibrated", probability), ("uncalibrated", uncalibrated)):
        if values is None:
            continue
        frac, mean = calibration_curve(y_true, values, n_bins=10, strategy="quantile")
        ax.plot(mean, frac, marker="o", label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed churn rate", title="Calibration")
    ax.legend()
    save(fig, "calibration.png")

    matrix = confusion_matrix(y_true, (probability >= threshold).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["stay", "churn"], yticklabels=["stay", "churn"],
           xlabel="Predicted", ylabel="Actual", title=f"Confusion @ {threshold:.2f}")
    save(fig, "confusion_matrix.png")

    names = sorted(importance, key=importance.__getitem__)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="Total gain", title="Feature importance")
    save(fig, "feature_importance.png")
    return paths
