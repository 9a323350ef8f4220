"""The model part of ``make demo``: build the training set, train, promote, print the metrics
next to the AUC of the generator's true probabilities (the best any model could reach)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from fs_platform.model import registry as model_registry
from fs_platform.model.training import roc_auc
from fs_platform.retrieval import training_set

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def train_demo_model(
    instance: dg.DagsterInstance, resources: dict, first_day: date, last_day: date, truth_dir: Path
) -> None:
    """Materialize training_set -> ctr_model (+ the promotion check) over first_day..last_day."""
    from fs_platform.defs.model.assets import ctr_model_asset, training_set_asset
    from fs_platform.defs.model.checks import ctr_model_promotion

    ts_config = {
        "start_date": first_day.isoformat(),
        "end_date": last_day.isoformat(),
        "validation_days": 3,
        "test_days": 3,
    }
    result = dg.materialize(
        [training_set_asset, ctr_model_asset, ctr_model_promotion],
        instance=instance,
        resources=resources,
        run_config={"ops": {"training_set": {"config": ts_config}}, **QUIET},
        raise_on_error=False,
    )
    events = {
        e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    if "ctr_model" not in events:
        print(f"\nmodel training failed (run {result.run_id}): see the Dagster UI")
        return
    ts, model = events["training_set"], events["ctr_model"]
    splits = ts["splits"].value
    print(
        f"\ntraining set {ts['fingerprint'].value}: {ts['dagster/row_count'].value:,} examples "
        f"{ts['date_range'].value}, positive rate {ts['positive_rate'].value:.3f} "
        f"(train {splits['train']['rows']:,} / validation {splits['validation']['rows']:,} / "
        f"test {splits['test']['rows']:,})"
    )
    version = model["version"].value
    metrics = model["metrics"].value
    print(f"ctr_model {version} (registry {model['path'].value}):")
    print(f"  {'on the test days':24} {'ROC AUC':>8} {'PR AUC':>8} {'log loss':>9} {'ECE':>7}")
    for name in ("model", "baseline_affinity_only", "baseline_global_rate"):
        m = metrics[name]
        print(f"  {name:24} {m['roc_auc']:8.4f} {m['pr_auc']:8.4f} {m['log_loss']:9.4f} {m['ece']:7.4f}")
    truth = _true_p_auc(version, truth_dir)
    if truth is not None:
        model_auc, true_auc, rows = truth
        print(
            f"  achievable (true p)      {true_auc:8.4f}   -> model reaches {model_auc / true_auc:.1%} of it "
            f"on the {rows:,} test examples with ground truth"
        )
    (check,) = result.get_asset_check_evaluations()
    print(
        f"  promotion check: {check.metadata['reason'].value}; current = {model_registry.current_version()}"
    )


def _true_p_auc(version: str, truth_dir: Path) -> tuple[float, float, int] | None:
    files = sorted(truth_dir.glob("*.parquet"))
    if not files:
        return None
    registered = model_registry.load(version)
    frame = training_set.load(Path(registered.metadata["training_set_path"]))
    test = frame[frame["split"] == "test"]
    test = test.assign(p=registered.predict(test))
    truth = pd.concat([pd.read_parquet(f) for f in files])
    truth = truth.assign(example_date=truth["day"].dt.strftime("%Y-%m-%d"))
    joined = test.merge(truth[["user_id", "listing_id", "example_date", "true_p"]], how="inner")
    if joined.empty:
        return None
    y = joined["label"].to_numpy()
    return roc_auc(y, joined["p"].to_numpy()), roc_auc(y, joined["true_p"].to_numpy()), len(joined)


def demo_window(end: date, days: int) -> tuple[date, date]:
    """Example days of the demo: every generated day but the first (no snapshot before it)."""
    return end - timedelta(days=days - 1), end - timedelta(days=1)
