"""Groups ``dbt_staging``, ``dbt_intermediate`` and ``features``: the dbt project as daily partitions."""

import dagster as dg

from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.defs.features.schedules import daily_features_job, daily_features_schedule

defs = dg.Definitions(
    assets=[feature_dbt_assets], jobs=[daily_features_job], schedules=[daily_features_schedule]
)
