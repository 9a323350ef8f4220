"""The daily prediction-drift job: the model's scores on the latest day against its test days."""

import dagster as dg

from fs_platform.defs.monitoring.checks import prediction_drift_check

prediction_drift_job = dg.define_asset_job(
    "prediction_drift_job",
    selection=dg.AssetSelection.checks(prediction_drift_check),
    description="Score the latest day's examples with the promoted model and compare with its test days.",
)

# 04:30 UTC: after the 03:00 feature run and its 04:00 deadline (the examples need partition D - 1)
prediction_drift_schedule = dg.ScheduleDefinition(
    job=prediction_drift_job,
    cron_schedule="30 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
