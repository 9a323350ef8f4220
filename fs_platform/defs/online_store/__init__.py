"""Group ``online_store``: the feature marts published to Redis as atomic snapshots."""

import dagster as dg

from fs_platform.defs.online_store.assets import online_listing_features, online_user_features
from fs_platform.defs.online_store.sensors import online_sync_sensor

defs = dg.Definitions(assets=[online_user_features, online_listing_features], sensors=[online_sync_sensor])
