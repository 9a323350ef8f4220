"""The dbt feature pipeline as daily-partitioned Dagster assets."""

import json
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliInvocation, DbtCliResource, dbt_assets

from fs_platform.defs.features.partitions import cutoff_for_partition, daily_partitions
from fs_platform.defs.features.translator import FeatureDbtTranslator
from fs_platform.defs.resources import PostgresResource
from fs_platform.infra.dbt import dbt_project, ensure_manifest

_SUMMARY_SQL = """
select count(*) as users,
       avg(activity_score) as mean_activity_score,
       avg(price_sensitivity) as mean_price_sensitivity,
       avg((price_sensitivity is null)::int) as share_price_sensitivity_null,
       avg((select count(*) from jsonb_object_keys(category_affinity))) as mean_categories_per_user
from features.user_features_history where as_of = %s
"""


class FeatureRunConfig(dg.Config):
    """Per-run overrides of the dbt vars (DESIGN §4 knobs) and a full-refresh switch."""

    dbt_vars_json: str = "{}"  # e.g. '{"decay_kind": "linear"}'
    full_refresh: bool = False


def dbt_vars_for(partition_key: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"cutoff": cutoff_for_partition(partition_key).isoformat(), **(overrides or {})}


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=FeatureDbtTranslator(),
    partitions_def=daily_partitions,
    # a backfill of a range is one run that walks the days in order (each day one `dbt build`)
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def feature_dbt_assets(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    postgres: PostgresResource,
    config: FeatureRunConfig,
) -> Iterator[Any]:
    """`dbt build` for each partition D of the run, in date order, with cutoff T = D 00:00 UTC.

    Every day's models and data tests must pass before the next day starts; the events of the
    last day (materializations, asset-check results) are reported for the whole range.
    """
    postgres.export_dbt_env()
    overrides = json.loads(config.dbt_vars_json)
    days = sorted(context.partition_keys)
    for i, day in enumerate(days):
        invocation = _build_partition(
            context, dbt, day, overrides, full_refresh=config.full_refresh and i == 0
        )
        if i < len(days) - 1:
            invocation.wait()  # raises on a failed model or test
            context.log.info(f"partition {day}: dbt build succeeded")
            continue
        cutoff = dbt_vars_for(day, overrides)["cutoff"]
        for event in invocation.stream():
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                extra = _row_count(postgres, key.path[-1], cutoff)
                if key == dg.AssetKey("user_features_history"):
                    extra.update(_summary(postgres, cutoff))
                extra["partitions_in_run"] = dg.MetadataValue.int(len(days))
                event = event.with_metadata({**event.metadata, **extra})
            yield event


def _build_partition(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, day: str, overrides: dict, full_refresh: bool
) -> DbtCliInvocation:
    # T travels as an env var: a changed --vars value would invalidate dbt's partial parse (~8 s)
    os.environ["FS_FEATURE_CUTOFF"] = dbt_vars_for(day, overrides)["cutoff"]
    # dbt unit tests check the SQL logic, not the data: they run in the test suite, not every day
    args = ["build", "--exclude", "test_type:unit"]
    if overrides:
        args += ["--vars", json.dumps(overrides)]
    if full_refresh:
        args.append("--full-refresh")
    return dbt.cli(args, context=context)


# tables whose row count is worth a query; views (stg_*) would rescan raw events
_COUNTED = {
    "listing_features": "select count(*) from features.listing_features",
    "user_features": "select count(*) from features.user_features",
    "user_features_history": "select count(*) from features.user_features_history where as_of = %(cutoff)s",
    "int_user_listing_daily": "select count(*) from features.int_user_listing_daily",
}


def _row_count(postgres: PostgresResource, model: str, cutoff: str) -> dict[str, dg.MetadataValue]:
    """Row counts from our own connection (the manifest's database name may differ from the target's)."""
    if model not in _COUNTED:
        return {}
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(_COUNTED[model], {"cutoff": cutoff})
        return {"dagster/row_count": dg.MetadataValue.int(cur.fetchone()[0])}


def _summary(postgres: PostgresResource, cutoff: str) -> dict[str, dg.MetadataValue]:
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(_SUMMARY_SQL, (cutoff,))
        row = cur.fetchone()
        names = [d.name for d in cur.description]
    summary = {"as_of": dg.MetadataValue.text(cutoff)}
    for name, value in zip(names, row, strict=True):
        if value is not None:
            summary[name] = (
                dg.MetadataValue.float(float(value)) if name != "users" else dg.MetadataValue.int(value)
            )
    return summary
