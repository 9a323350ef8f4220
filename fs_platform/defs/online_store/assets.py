"""Redis sync assets: every online feature view published as an atomic snapshot (semantics §7)."""

from datetime import timedelta

import dagster as dg

from fs_platform.defs.resources import PostgresResource, RedisResource
from fs_platform.infra.config import get_settings
from fs_platform.online.store import connect
from fs_platform.online.sync import SyncResult, sync_snapshot
from fs_platform.online.views import OnlineView, online_views

#: "eager" minus two of its clauses that do not fit an unpartitioned asset fed by daily partitions:
#: ``~any_deps_missing`` (any never-run day since FS_FEATURES_START_DATE would block it forever) and
#: ``newly_missing`` (it would sync before the marts exist). Runs once after any partition of the
#: upstream mart materializes, not while one is still running.
ONLINE_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("sync_after_upstream_update")

#: the marts are due by 04:00 UTC; the online copy half an hour later
ONLINE_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="30 4 * * *", lower_bound_delta=timedelta(hours=4, minutes=30), timezone="UTC"
)


class OnlineSyncConfig(dg.Config):
    """Knobs of one sync run (defaults suit 100k-1M rows)."""

    batch_size: int = 2000
    allow_empty: bool = False


def _sync(
    kind: OnlineView,
    context: dg.AssetExecutionContext,
    config: OnlineSyncConfig,
    postgres: PostgresResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    settings = get_settings()
    client = connect(redis.url(), timeout_seconds=30)  # bulk writes: generous, unlike reads
    try:
        with postgres.connect() as conn:
            result = sync_snapshot(
                kind,
                conn,
                client,
                prefix=settings.redis_prefix,
                batch_size=config.batch_size,
                build_ttl=settings.online_build_ttl_seconds,
                grace_seconds=settings.online_grace_seconds,
                allow_empty=config.allow_empty,
            )
    finally:
        client.close()
    context.log.info(
        f"{kind.name}: {result.rows:,} rows, {result.bytes:,} bytes in {result.seconds:.2f}s "
        f"-> snapshot {result.snapshot_id} (replaced {result.replaced})"
    )
    return dg.MaterializeResult(metadata=_metadata(result, kind))


def _metadata(result: SyncResult, kind: OnlineView) -> dict[str, dg.MetadataValue]:
    return {
        "feature_view": dg.MetadataValue.text(kind.name),
        "dagster/row_count": dg.MetadataValue.int(result.rows),
        "bytes": dg.MetadataValue.int(result.bytes),
        "mean_value_bytes": dg.MetadataValue.float(result.bytes / result.rows if result.rows else 0.0),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(float(round(result.rows_per_second))),
        "snapshot_id": dg.MetadataValue.text(result.snapshot_id),
        "replaced_snapshot_id": dg.MetadataValue.text(result.replaced or ""),
        "as_of": dg.MetadataValue.timestamp(result.as_of),
    }


def _online_asset(view: OnlineView) -> dg.AssetsDefinition:
    """``online_<view>``: the view's online model published to Redis after it materializes."""

    @dg.asset(
        key=f"online_{view.name}",
        deps=[dg.AssetKey(view.source[1])],
        group_name="online_store",
        kinds={"redis"},
        automation_condition=ONLINE_AUTOMATION,
        freshness_policy=ONLINE_FRESHNESS,
        owners=["team:feature-platform"],
        description=f"{view.source_name} (feature view {view.name}, entity {view.entity}) published to "
        "Redis as one atomic snapshot: readers see the previous snapshot or this one, never a mix.",
        metadata={"feature_view": view.name, "features": ", ".join(view.features)},
    )
    def online_view_asset(
        context: dg.AssetExecutionContext,
        config: OnlineSyncConfig,
        postgres: PostgresResource,
        redis: RedisResource,
    ) -> dg.MaterializeResult:
        return _sync(view, context, config, postgres, redis)

    return online_view_asset


#: one sync asset per online feature view of the registry
online_view_assets = [_online_asset(view) for view in online_views().values()]
