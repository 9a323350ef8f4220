"""Group ``retrieval``: historical features for any entity frame, launched with a run config."""

import dagster as dg

from fs_platform.defs.retrieval.assets import historical_features_asset

defs = dg.Definitions(assets=[historical_features_asset])
