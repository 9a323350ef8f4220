"""The daily partitioning of the feature pipeline: partition D <-> cutoff T = D 00:00 UTC."""

from __future__ import annotations

import dagster as dg

from fs_platform.infra.config import get_settings

# end_offset=1: partition D can run on day D itself (its cutoff, D 00:00, has passed)
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().features_start_date.isoformat(), timezone="UTC", end_offset=1
)
