"""The daily partitioning of the feature pipeline: partition D <-> cutoff T = D 00:00 UTC.

The partitions start where the data starts: ``FS_FEATURES_START_DATE`` when set, else the day after
the first ingested event (the first cutoff with anything before it), else today. Definitions are
built once per code-location load, so the range follows new data on the next reload.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from fs_platform.infra.config import Settings, get_settings
from fs_platform.ingestion.data_span import first_event_day


def partitions_start(settings: Settings) -> tuple[date, str]:
    """The first partition and where it comes from (shown in the UI)."""
    if settings.features_start_date is not None:
        return settings.features_start_date, "FS_FEATURES_START_DATE"
    first = first_event_day(settings.home)
    if first is not None:
        return first + timedelta(days=1), f"the day after the first ingested event ({first.isoformat()})"
    return datetime.now(UTC).date(), "today: no events ingested yet"


PARTITIONS_START, PARTITIONS_START_SOURCE = partitions_start(get_settings())

# end_offset=1: partition D can run on day D itself (its cutoff, D 00:00, has passed)
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=PARTITIONS_START.isoformat(), timezone="UTC", end_offset=1
)
