"""The evaluation report of a trained model: ROC, calibration and feature-importance plots.

Why PNG plus markdown: the PNGs stay in the model's registry folder (the record), and the same
images, base64-embedded in markdown, show up on the asset's page in the Dagster UI without a
file server.
"""

from __future__ import annotations

import base64
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in tests

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fs_platform.model.training import calibration_bins  # noqa: E402


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False/true positive rates at every distinct threshold (ties grouped)."""
    y = np.asarray(y, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    s, y = np.asarray(score, dtype=float)[order], y[order]
    last_of_group = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_group]
    fp = (last_of_group + 1) - tp
    return np.r_[0, fp / max(fp[-1], 1)], np.r_[0, tp / max(tp[-1], 1)]


def _roc_plot(path: Path, y: np.ndarray, curves: dict[str, np.ndarray], aucs: dict[str, float]) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=90)
    for name, score in curves.items():
        fpr, tpr = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[name]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="global rate (AUC 0.5)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the test days")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _calibration_plot(path: Path, y: np.ndarray, p: np.ndarray, ece: float) -> None:
    table = calibration_bins(y, p, bins=10)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=90)
    top = max(float(table["mean_p"].max()), float(table["rate"].max()), 1e-3) * 1.05
    ax.plot([0, top], [0, top], color="grey", linestyle=":")
    ax.plot(table["mean_p"], table["rate"], marker="o", label=f"model (ECE {ece:.4f})")
    ax.set(
        xlabel="mean predicted probability (equal-mass bins)",
        ylabel="observed positive rate",
        title="Calibration on the test days",
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _importance_plot(path: Path, importance: dict[str, float]) -> None:
    items = sorted(importance.items(), key=lambda kv: kv[1])
    total = sum(v for _, v in items) or 1.0
    fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(items) + 1.2), dpi=90)
    ax.barh([k for k, _ in items], [v / total for _, v in items])
    ax.set(xlabel="share of total gain", title="Feature importance (gain)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(
    folder: Path,
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
    metrics: dict[str, dict[str, float]],
    importance: dict[str, float],
) -> dict[str, Path]:
    """The three PNGs in ``folder``; ``predictions`` must contain "model" (others are overlaid)."""
    folder.mkdir(parents=True, exist_ok=True)
    aucs = {name: metrics.get(name, {}).get("roc_auc", float("nan")) for name in predictions}
    paths = {
        "roc": folder / "roc.png",
        "calibration": folder / "calibration.png",
        "feature_importance": folder / "feature_importance.png",
    }
    _roc_plot(paths["roc"], y, predictions, aucs)
    _calibration_plot(paths["calibration"], y, predictions["model"], metrics["model"]["ece"])
    _importance_plot(paths["feature_importance"], importance)
    return paths


def _cell(m: dict[str, float], key: str) -> str:
    """A metric to 4 decimals, or '-' where it does not apply (a ranker has no log loss)."""
    return f"{m[key]:.4f}" if key in m else "-"


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    columns = ("roc_auc", "pr_auc", "log_loss", "ece", "ndcg_at_10")
    rows = [
        "| on the test days | ROC AUC | PR AUC | log loss | ECE | NDCG@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in metrics.items():
        if name == "validation":
            continue
        rows.append(f"| {name} | " + " | ".join(_cell(m, c) for c in columns) + " |")
    return "\n".join(rows)


def markdown(title: str, metrics: dict[str, dict[str, float]], images: dict[str, Path]) -> str:
    """Metrics table and the images inlined as data URIs (the Dagster UI renders them)."""
    parts = [f"### {title}", "", metrics_table(metrics), ""]
    for name, path in images.items():
        encoded = base64.b64encode(path.read_bytes()).decode()
        parts += [f"**{name.replace('_', ' ')}**", "", f"![{name}](data:image/png;base64,{encoded})", ""]
    return "\n".join(parts)
