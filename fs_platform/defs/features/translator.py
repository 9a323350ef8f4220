"""How dbt nodes appear in Dagster: keys, groups, owners, freshness, descriptions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

#: "features for D exist by 04:00 UTC": a materialization after 00:00 (D's cutoff) and before the
#: 04:00 deadline counts; the daily schedule starts the run at 03:00.
FEATURES_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 4 * * *", lower_bound_delta=timedelta(hours=4), timezone="UTC"
)
FEATURE_MODELS = {"user_features", "user_features_history", "listing_features"}


class FeatureDbtTranslator(DagsterDbtTranslator):
    """Groups by dbt layer, attaches the freshness policy and owners to the feature marts."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest.get("nodes", {}).get(unique_id)
        if node is None or node.get("resource_type") != "model":
            return spec
        name = node["name"]
        layer = (
            "staging"
            if name.startswith("stg_")
            else "intermediate"
            if name.startswith("int_")
            else "features"
        )
        meta = node.get("config", {}).get("meta", {}) or node.get("meta", {})
        owner = meta.get("owner")
        return spec.replace_attributes(
            key=dg.AssetKey(name),  # model names are unique; the schema prefix adds nothing
            group_name=f"dbt_{layer}",
            freshness_policy=FEATURES_FRESHNESS if name in FEATURE_MODELS else None,
            owners=[owner] if owner else None,
            tags={**spec.tags, "layer": layer},
        )
