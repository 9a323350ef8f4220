"""Group ``online_store``: every online feature view published to Redis as an atomic snapshot."""

import dagster as dg

from fs_platform.defs.online_store.assets import online_view_assets
from fs_platform.defs.online_store.sensors import online_sync_sensor

defs = dg.Definitions(assets=online_view_assets, sensors=[online_sync_sensor])
