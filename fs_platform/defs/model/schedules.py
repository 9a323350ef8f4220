"""The weekly retraining job and its schedule."""

import dagster as dg

from fs_platform.defs.model.assets import CTR_MODEL, TRAINING_SET
from fs_platform.retrieval import training_set

weekly_training_job = dg.define_asset_job(
    "weekly_training_job",
    selection=dg.AssetSelection.assets(TRAINING_SET, CTR_MODEL),
    description=f"Rebuild the training set of the last {training_set.DEFAULT_DAYS} days and retrain "
    "(promotion by the check).",
)

# Monday 05:00 UTC: after the 03:00 daily features and their 04:00 freshness deadline
weekly_training_schedule = dg.ScheduleDefinition(
    job=weekly_training_job,
    cron_schedule="0 5 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
