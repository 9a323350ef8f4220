"""The automation sensor that runs the Redis sync after the feature marts change."""

import dagster as dg

from fs_platform.defs.online_store.assets import online_view_assets

#: evaluates ONLINE_AUTOMATION; on by default (Dagster's implicit default sensor starts switched off)
online_sync_sensor = dg.AutomationConditionSensorDefinition(
    "online_store_sync_sensor",
    target=dg.AssetSelection.assets(*online_view_assets),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Runs the Redis sync assets after the feature marts materialize.",
)
