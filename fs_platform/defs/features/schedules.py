"""Jobs and schedules: the daily feature run at 03:00 UTC."""

from __future__ import annotations

import dagster as dg

from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.defs.features.partitions import PARTITIONS_START, PARTITIONS_START_SOURCE, daily_partitions

daily_features_job = dg.define_asset_job(
    "daily_features_job",
    selection=dg.AssetSelection.assets(feature_dbt_assets),
    partitions_def=daily_partitions,
    description=f"Partition D of the dbt feature pipeline (cutoff D 00:00 UTC). Partitions start on "
    f"{PARTITIONS_START.isoformat()}: {PARTITIONS_START_SOURCE}.",
)

# 03:00 UTC on day D materializes partition D (end_offset=1 makes D the latest partition)
daily_features_schedule = dg.build_schedule_from_partitioned_job(
    daily_features_job, hour_of_day=3, minute_of_hour=0, default_status=dg.DefaultScheduleStatus.RUNNING
)
