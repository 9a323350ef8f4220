"""Train -> register -> report -> promote: the steps of the ``ctr_model`` asset and its promotion
check, and of ``fs-platform train``.

Why one module: the Dagster asset and the CLI must turn a training set into the same registry
entry and the same promotion decision; both call these functions and add only their own output
(asset metadata, terminal lines).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fs_platform.model import registry as model_registry
from fs_platform.model import report as model_report
from fs_platform.model.promotion import PromotionDecision, decide_and_promote
from fs_platform.model.training import MAX_ROUNDS, TrainedModel, train
from fs_platform.retrieval import training_set

#: the stages ``train_and_register`` reports to its ``progress`` callback, in order
TRAIN_STAGES: tuple[str, ...] = ("load training set", "train LightGBM and baselines", "register and report")
#: the rows of the metrics table, model first
METRIC_ROWS: tuple[str, ...] = ("model", "baseline_affinity_only", "baseline_global_rate")


@dataclass
class TrainingRun:
    """A trained and registered model with where it came from."""

    version: str
    folder: Path
    trained: TrainedModel
    training_set_path: Path
    training_set_metadata: dict
    report_markdown: str


def train_and_register(
    path: Path,
    *,
    features: list[str] | None = None,
    params: dict | None = None,
    max_rounds: int = MAX_ROUNDS,
    root: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainingRun:
    """Train on the training set at ``path``, save the version with its metadata and report (PNGs
    and markdown) in the registry. ``progress`` gets each of ``TRAIN_STAGES`` as it starts."""
    stage = progress or (lambda _name: None)
    stage(TRAIN_STAGES[0])
    frame = training_set.load(path)
    ts_meta = json.loads((path / "_metadata.json").read_text())
    # a set written before the class check (or copied in by hand) fails here with the same message
    training_set.check_splits(frame)
    stage(TRAIN_STAGES[1])
    trained = train(frame, features=features, params=params, max_rounds=max_rounds)
    stage(TRAIN_STAGES[2])
    folder = model_registry.save(
        trained,
        {
            "data_fingerprint": ts_meta["fingerprint"],
            "training_set_path": str(path),
            "training_window": ts_meta["splits"],
            "training_set_config": ts_meta["config"],
            "feature_service": ts_meta.get("feature_service", training_set.FEATURE_SERVICE),
        },
        root,
    )
    test = frame[frame["split"] == "test"]
    images = model_report.write_report(
        folder / "report",
        test["label"].to_numpy(),
        {"model": trained.predict(test)},
        trained.metrics,
        trained.feature_importance,
    )
    report_md = model_report.markdown(f"ctr_model {folder.name}", trained.metrics, images)
    (folder / "report" / "report.md").write_text(report_md)
    return TrainingRun(folder.name, folder, trained, path, ts_meta, report_md)


def promote_if_better(version: str, root: Path | None = None) -> PromotionDecision:
    """The promotion decision for a registered version, on its own training set's test split."""
    candidate = model_registry.load(version, root)
    frame = training_set.load(Path(candidate.metadata["training_set_path"]))
    return decide_and_promote(version, frame[frame["split"] == "test"], root)


def summary(version: str, metrics: dict[str, dict[str, float]]) -> str:
    """One line: the model's test AUC and log loss beside the baseline each is judged against."""
    m, aff, glob = (metrics[k] for k in METRIC_ROWS)
    return (
        f"model {version}: test AUC {m['roc_auc']:.4f} (affinity-only {aff['roc_auc']:.4f}), "
        f"log loss {m['log_loss']:.4f} (global rate {glob['log_loss']:.4f})"
    )


def metrics_lines(metrics: dict[str, dict[str, float]]) -> list[str]:
    """The test metrics of the model and both baselines as an aligned text table."""
    lines = [
        f"{'on the test days':24} {'ROC AUC':>8} {'PR AUC':>8} {'log loss':>9} {'ECE':>7} {'NDCG@10':>8}"
    ]
    for name in (*METRIC_ROWS, "ranker"):
        m = metrics.get(name)
        if m is None:
            continue
        cells = [
            f"{m[k]:{w}.4f}" if k in m else f"{'-':>{w}}"
            for k, w in (("roc_auc", 8), ("pr_auc", 8), ("log_loss", 9), ("ece", 7), ("ndcg_at_10", 8))
        ]
        lines.append(f"{name:24} " + " ".join(cells))
    return lines
