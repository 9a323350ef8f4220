"""The dbt feature pipeline as daily-partitioned Dagster assets."""

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets
from psycopg2 import sql

from fs_platform.defs.features.partitions import daily_partitions
from fs_platform.defs.features.translator import FeatureDbtTranslator
from fs_platform.defs.resources import PostgresResource
from fs_platform.features.partition_run import partition_environment, partition_run
from fs_platform.features.registry import FeatureView, load_registry
from fs_platform.infra.dbt import dbt_project, ensure_manifest


def _summary_sql(view: FeatureView) -> sql.Composed:
    """Summary statistics of one partition of a view, from its declarations: the entity count, the
    mean of every numeric feature, the share of nulls where nulls are allowed, and the mean number
    of keys of every map."""
    parts = [sql.SQL("count(*) as {}").format(sql.Identifier(f"{view.entity.name}s"))]
    for feature in view.features:
        column = sql.Identifier(feature.name)
        if feature.type == "numeric":
            parts.append(sql.SQL("avg({}) as {}").format(column, sql.Identifier(f"mean_{feature.name}")))
        if feature.type == "map":
            parts.append(
                sql.SQL("avg((select count(*) from jsonb_object_keys({}))) as {}").format(
                    column, sql.Identifier(f"mean_{feature.name}_keys")
                )
            )
        if feature.null_policy != "reject":
            parts.append(
                sql.SQL("avg(({} is null)::int) as {}").format(
                    column, sql.Identifier(f"share_{feature.name}_null")
                )
            )
    return sql.SQL("select {} from {} where {} = %s").format(
        sql.SQL(", ").join(parts), sql.Identifier(*view.relation), sql.Identifier(view.timestamp)
    )


#: the feature views whose partitions get summary metadata: those stored as tables (a view would be
#: computed in full for the summary)
_SUMMARISED = {v.model: v for v in load_registry().views.values() if v.materialized != "view"}


class FeatureRunConfig(dg.Config):
    """Per-run overrides of the dbt vars (semantics §4 knobs) and a full-refresh switch."""

    dbt_vars_json: str = "{}"  # e.g. '{"decay_kind": "linear"}'
    full_refresh: bool = False


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=FeatureDbtTranslator(),
    partitions_def=daily_partitions,
    # a backfill of a range is one run (two dbt invocations, see below)
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def feature_dbt_assets(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    postgres: PostgresResource,
    config: FeatureRunConfig,
) -> Iterator[Any]:
    """`dbt build` of partition D with cutoff T = D 00:00 UTC; a range D1..Dn (a backfill) in two
    invocations: D1 alone (it creates the tables on a first run and takes the full refresh), then
    D2..Dn in one (one dbt start-up and one pass of the data tests for the whole range; the
    snapshots are built oldest first, each carried from the day before, as the days one by one).

    The materializations and asset-check results of the last invocation are reported for the range.
    """
    postgres.export_dbt_env()
    overrides = json.loads(config.dbt_vars_json)
    days = sorted(context.partition_keys)
    runs = [partition_run(days[0], overrides=overrides, full_refresh=config.full_refresh)]
    if len(days) > 1:
        runs.append(partition_run(days[-1], overrides=overrides, range_start=days[1]))
    for i, run in enumerate(runs):
        with partition_environment(run):  # dagster-dbt hands os.environ to the dbt process it starts
            invocation = dbt.cli(run.args, context=context)
        if i < len(runs) - 1:
            invocation.wait()  # raises on a failed model or test
            context.log.info(f"partition {run.partition}: dbt build succeeded")
            continue
        cutoff = run.cutoff.isoformat()
        for event in invocation.stream():
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                extra = _row_count(postgres, key.path[-1], cutoff)
                if key.path[-1] in _SUMMARISED:
                    extra.update(_summary(postgres, _SUMMARISED[key.path[-1]], cutoff))
                extra["partitions_in_run"] = dg.MetadataValue.int(len(days))
                event = event.with_metadata({**event.metadata, **extra})
            yield event


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


def _summary(postgres: PostgresResource, view: FeatureView, cutoff: str) -> dict[str, dg.MetadataValue]:
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(_summary_sql(view), (cutoff,))
        row = cur.fetchone()
        names = [d.name for d in cur.description]
    summary = {"as_of": dg.MetadataValue.text(cutoff)}
    count, *stats = zip(names, row, strict=True)
    summary[count[0]] = dg.MetadataValue.int(count[1])
    for name, value in stats:
        if value is not None:
            summary[name] = dg.MetadataValue.float(float(value))
    return summary
