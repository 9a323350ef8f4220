"""The Dagster code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.defs.features.schedules import daily_features_job, daily_features_schedule
from fs_platform.defs.ingestion.assets import raw_listings, raw_user_interactions
from fs_platform.defs.ingestion.sensors import inbox_sensor
from fs_platform.defs.model.assets import (
    ctr_model_asset,
    ctr_model_promotion,
    training_set_asset,
    weekly_training_job,
    weekly_training_schedule,
)
from fs_platform.defs.monitoring.checks import (
    monitoring_checks,
    prediction_drift_job,
    prediction_drift_schedule,
)
from fs_platform.defs.monitoring.sensors import monitoring_alert_sensor, run_failure_alert_sensor
from fs_platform.defs.online_store.assets import (
    online_listing_features,
    online_sync_sensor,
    online_user_features,
)
from fs_platform.defs.resources import PostgresResource, RedisResource
from fs_platform.infra.dbt import dbt_executable, dbt_project

defs = dg.Definitions(
    assets=[
        raw_listings,
        raw_user_interactions,
        feature_dbt_assets,
        online_user_features,
        online_listing_features,
        training_set_asset,
        ctr_model_asset,
    ],
    asset_checks=[ctr_model_promotion, *monitoring_checks],
    jobs=[daily_features_job, weekly_training_job, prediction_drift_job],
    schedules=[daily_features_schedule, weekly_training_schedule, prediction_drift_schedule],
    sensors=[inbox_sensor, online_sync_sensor, monitoring_alert_sensor, run_failure_alert_sensor],
    resources={
        "postgres": PostgresResource(),
        "redis": RedisResource(),
        "dbt": DbtCliResource(
            project_dir=dbt_project,
            profiles_dir=str(dbt_project.profiles_dir),
            dbt_executable=dbt_executable(),
        ),
    },
)
