"""How dbt nodes appear in Dagster: keys, groups, owners, freshness, descriptions, and each feature
view's registry entry (entity, TTL, features with their rules) on its model's asset."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from fs_platform.features.registry import FeatureView, load_registry

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
        spec = spec.replace_attributes(
            key=dg.AssetKey(name),  # model names are unique; the schema prefix adds nothing
            group_name=f"dbt_{layer}",
            freshness_policy=FEATURES_FRESHNESS if name in FEATURE_MODELS else None,
            owners=[owner] if owner else None,
            tags={**spec.tags, "layer": layer},
        )
        view = _feature_views().get(name)
        if view is None:
            return spec
        return spec.merge_attributes(
            metadata={
                "feature_view": dg.MetadataValue.md(_view_markdown(view)),
                "feature_view/entity": dg.MetadataValue.text(f"{view.entity.name} ({view.entity.join_key})"),
            },
            tags={"feature_view": view.name},
        )


@functools.cache
def _feature_views() -> dict[str, FeatureView]:
    """Feature views by model (the registry checks every declaration: a bad one fails the load)."""
    return {view.model: view for view in load_registry().views.values()}


def _view_markdown(view: FeatureView) -> str:
    """The registry entry of a view as the asset page shows it."""
    lines = [
        f"**Feature view `{view.name}`**: entity `{view.entity.name}` (`{view.entity.join_key}`), "
        f"timestamp `{view.timestamp}`, TTL {view.ttl.days} d, {'online' if view.online else 'offline only'}.",
        "",
        "| feature | type | rule | description |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{f.name}` | {f.type} | {f.rule} | {f.description} |" for f in view.features]
    return "\n".join(lines)
