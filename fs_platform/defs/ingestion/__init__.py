"""Group ``ingestion``: inbox files into the raw schema, validated, idempotent, quarantined."""

import dagster as dg

from fs_platform.defs.ingestion.assets import raw_listings, raw_user_interactions
from fs_platform.defs.ingestion.sensors import inbox_sensor

defs = dg.Definitions(assets=[raw_listings, raw_user_interactions], sensors=[inbox_sensor])
