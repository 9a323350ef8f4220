"""The Dagster code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from fs_platform.assets.features import feature_dbt_assets
from fs_platform.assets.ingestion import raw_listings, raw_user_interactions
from fs_platform.dbt_project import dbt_executable, dbt_project
from fs_platform.resources import PostgresResource, RedisResource
from fs_platform.schedules import daily_features_job, daily_features_schedule
from fs_platform.sensors import inbox_sensor

defs = dg.Definitions(
    assets=[raw_listings, raw_user_interactions, feature_dbt_assets],
    jobs=[daily_features_job],
    schedules=[daily_features_schedule],
    sensors=[inbox_sensor],
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
