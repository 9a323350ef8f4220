"""Group ``model``: the point-in-time training set, the LightGBM model and its promotion."""

import dagster as dg

from fs_platform.defs.model.assets import ctr_model_asset, training_set_asset
from fs_platform.defs.model.checks import ctr_model_promotion
from fs_platform.defs.model.schedules import weekly_training_job, weekly_training_schedule

defs = dg.Definitions(
    assets=[training_set_asset, ctr_model_asset],
    asset_checks=[ctr_model_promotion],
    jobs=[weekly_training_job],
    schedules=[weekly_training_schedule],
)
