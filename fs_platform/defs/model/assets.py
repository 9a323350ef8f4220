"""Dagster assets of the model side: ``training_set`` -> ``ctr_model`` (promotion in checks.py).

Both assets hand data over through files (the training set's Parquet folder, the model registry),
not through an IO manager: the serving API and notebooks read the same files, and the model can
be retrained from a given training set without re-running the join.
"""

from datetime import date
from pathlib import Path

import dagster as dg

from fs_platform.defs.resources import PostgresResource
from fs_platform.model import workflow
from fs_platform.model.training import MAX_ROUNDS
from fs_platform.retrieval import training_set

TRAINING_SET = dg.AssetKey("training_set")
CTR_MODEL = dg.AssetKey("ctr_model")


class TrainingSetRunConfig(dg.Config):
    """Example days and PIT knobs. Empty dates: the ``days`` days ending yesterday (UTC).

    Defaults are ``training_set.DEFAULT_*``, the same as ``fs-platform training-set``'s.
    """

    start_date: str = ""
    end_date: str = ""
    days: int = training_set.DEFAULT_DAYS
    validation_days: int = training_set.DEFAULT_VALIDATION_DAYS
    test_days: int = training_set.DEFAULT_TEST_DAYS
    max_staleness_hours: float = training_set.DEFAULT_MAX_STALENESS_HOURS
    availability_lag_hours: float = 0.0

    def to_config(self, today: date | None = None) -> training_set.TrainingSetConfig:
        return training_set.window_config(
            start=date.fromisoformat(self.start_date) if self.start_date else None,
            end=date.fromisoformat(self.end_date) if self.end_date else None,
            days=self.days,
            validation_days=self.validation_days,
            test_days=self.test_days,
            max_staleness_hours=self.max_staleness_hours,
            availability_lag_hours=self.availability_lag_hours,
            today=today,
        )


def _failure(exc: training_set.TrainingSetWindowError) -> dg.Failure:
    """The one-line reason as the run's failure (the CLI prints the same text)."""
    return dg.Failure(description=str(exc), allow_retries=False)


@dg.asset(
    key=TRAINING_SET,
    deps=[dg.AssetKey("user_features_history"), dg.AssetKey("listing_features_history")],
    group_name="model",
    description="Point-in-time correct examples as Parquet partitioned by date, split by date.",
    kinds={"postgres", "parquet"},
)
def training_set_asset(
    context: dg.AssetExecutionContext, config: TrainingSetRunConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    try:
        ts_config = config.to_config()
        with postgres.connect() as conn:
            built = training_set.build(conn, ts_config, progress=context.log.info)
    except training_set.TrainingSetWindowError as exc:
        raise _failure(exc) from exc
    meta = built.metadata
    context.log.info(f"training set {built.fingerprint}: {meta['rows']:,} examples at {built.path}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(meta["rows"]),
            "path": dg.MetadataValue.path(str(built.path)),
            "fingerprint": dg.MetadataValue.text(built.fingerprint),
            "date_range": dg.MetadataValue.text(f"{meta['start']} .. {meta['end']}"),
            "positive_rate": dg.MetadataValue.float(meta["positive_rate"] or 0.0),
            "share_without_user_features": dg.MetadataValue.float(meta["share_without_user_features"] or 0.0),
            "splits": dg.MetadataValue.json(meta["splits"]),
            "features": dg.MetadataValue.json(meta["features"]),
            "config": dg.MetadataValue.json(meta["config"]),
        }
    )


class ModelRunConfig(dg.Config):
    """Training overrides. Empty ``training_set_path``: the latest built training set."""

    training_set_path: str = ""
    features: list[str] = []
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    max_rounds: int = MAX_ROUNDS


def _training_set_path(config: ModelRunConfig) -> Path:
    return Path(config.training_set_path) if config.training_set_path else training_set.latest_path()


@dg.asset(
    key=CTR_MODEL,
    deps=[TRAINING_SET],
    group_name="model",
    description="LightGBM P(contact or favourite) with test metrics beside the baselines, in the model registry.",
    kinds={"lightgbm"},
)
def ctr_model_asset(context: dg.AssetExecutionContext, config: ModelRunConfig) -> dg.MaterializeResult:
    try:
        run = workflow.train_and_register(
            _training_set_path(config),
            features=config.features or None,
            params={
                "learning_rate": config.learning_rate,
                "num_leaves": config.num_leaves,
                "min_data_in_leaf": config.min_data_in_leaf,
            },
            max_rounds=config.max_rounds,
            progress=context.log.info,
        )
    except training_set.TrainingSetWindowError as exc:
        raise _failure(exc) from exc
    trained, version = run.trained, run.version
    m, glob, aff = (trained.metrics[k] for k in ("model", "baseline_global_rate", "baseline_affinity_only"))
    context.log.info(workflow.summary(version, trained.metrics))
    return dg.MaterializeResult(
        metadata={
            "version": dg.MetadataValue.text(version),
            "path": dg.MetadataValue.path(str(run.folder)),
            "data_fingerprint": dg.MetadataValue.text(run.training_set_metadata["fingerprint"]),
            "best_iteration": dg.MetadataValue.int(trained.best_iteration),
            "test_roc_auc": dg.MetadataValue.float(m["roc_auc"]),
            "test_pr_auc": dg.MetadataValue.float(m["pr_auc"]),
            "test_log_loss": dg.MetadataValue.float(m["log_loss"]),
            "test_ece": dg.MetadataValue.float(m["ece"]),
            "baseline_global_rate_log_loss": dg.MetadataValue.float(glob["log_loss"]),
            "baseline_affinity_only_roc_auc": dg.MetadataValue.float(aff["roc_auc"]),
            "metrics": dg.MetadataValue.json(trained.metrics),
            "report": dg.MetadataValue.md(run.report_markdown),
        }
    )
