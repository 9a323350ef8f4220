"""The Redis online store against real Redis and real features (two dbt partitions).

Sync round trip, atomic flips (a sync killed by an exception or by a dropped connection leaves
the previous snapshot serving), TTLs, the completeness guard, the snapshot-keyed cache, the
stale flag, bounded failures, and the Dagster sync assets with their automation condition.
"""

from __future__ import annotations

import time
from datetime import timedelta

import dagster as dg
import pytest
import redis
from online_support import (
    DAY_B,
    OnlineWarehouse,
    free_port,
)

from fs_platform.defs.resources import PostgresResource, RedisResource
from fs_platform.infra.runtime import pg_connect
from fs_platform.online.store import (
    KeyLayout,
    OnlineStore,
    OnlineStoreUnavailable,
    SnapshotMissing,
    canonical_id,
    connect,
)
from fs_platform.online.sync import SyncError, SyncProgress, sync_snapshot

FOREVER = timedelta(days=100_000)


@pytest.fixture()
def pg(warehouse: OnlineWarehouse):
    conn = pg_connect(warehouse.database_url)
    yield conn
    conn.close()


def _sync(warehouse, pg, prefix, kind="user_features", **kwargs):
    return sync_snapshot(kind, pg, warehouse.redis(), prefix=prefix, **kwargs)


def _store(warehouse, prefix, **kwargs) -> OnlineStore:
    kwargs.setdefault("max_age", FOREVER)
    return OnlineStore(connect(warehouse.redis_url, 0.5), prefix=prefix, **kwargs)


def _all_users(store: OnlineStore, ids: list[str]) -> dict:
    rows = {}
    for start in range(0, len(ids), 1000):
        rows.update(store.get_users(ids[start : start + 1000]).rows)
    return rows


def test_sync_round_trip_equals_the_feature_tables(warehouse, pg, prefix):
    users = _sync(warehouse, pg, prefix)
    listings = _sync(warehouse, pg, prefix, "listing_features")
    assert users.rows == len(warehouse.users) > 500
    assert users.as_of == warehouse.as_of
    assert listings.rows == len(warehouse.listings)
    assert users.bytes / users.rows < 300  # compact values
    store = _store(warehouse, prefix)
    assert _all_users(store, list(warehouse.users)) == warehouse.users  # exact, floats included
    info = store.snapshot("user_features")
    assert (info.snapshot_id, info.rows, info.as_of) == (users.snapshot_id, users.rows, warehouse.as_of)

    got = store.get_listings(list(warehouse.listings)).rows
    for listing_id, expected in warehouse.listings.items():
        assert got[listing_id] == expected

    one = store.get_user(next(iter(warehouse.users)).upper())  # any UUID spelling
    assert one.found and one.features == warehouse.users[one.entity_id]
    missing = store.get_user("00000000-0000-4000-8000-000000000000")
    assert not missing.found and missing.features is None
    assert set(store.get_user(one.entity_id, ["activity_score"]).features) == {"activity_score"}
    with pytest.raises(ValueError, match="not-a-uuid|badly formed"):
        store.get_user("not-a-uuid")
    with pytest.raises(ValueError, match="unknown feature"):
        store.get_user(one.entity_id, ["no_such_feature"])


def test_a_sync_killed_midway_leaves_the_previous_snapshot_serving(warehouse, pg, prefix):
    client = warehouse.redis()
    layout = KeyLayout(prefix)
    first = _sync(warehouse, pg, prefix, source=warehouse.views[min(warehouse.views)])
    store = _store(warehouse, prefix)
    ids = list(warehouse.users)[:300]
    before = store.get_users(ids)

    def written(progress: SyncProgress) -> None:
        """Wait until Redis has applied the pipelined batches sent so far: a client that closes
        with replies unread resets the connection, and Redis may drop what it had not read yet."""
        key = layout.snapshot("user_features", progress.snapshot_id)
        deadline = time.monotonic() + 10
        while client.hlen(key) < progress.rows_sent and time.monotonic() < deadline:
            time.sleep(0.01)

    def crash(progress: SyncProgress) -> None:
        if progress.rows_sent >= 400:
            written(progress)
            raise RuntimeError("worker killed")

    def drop_connection(progress: SyncProgress) -> None:
        if progress.rows_sent >= 400:
            written(progress)
            client.client_kill_filter(_id=progress.client_id)

    for kill, error in ((crash, RuntimeError), (drop_connection, redis.ConnectionError)):
        with pytest.raises(error):
            _sync(warehouse, pg, prefix, batch_size=100, build_ttl=600, on_batch=kill)
        assert client.hget(layout.pointer("user_features"), "id").decode() == first.snapshot_id
        again = store.get_users(ids)
        assert again.snapshot == before.snapshot and again.rows == before.rows
        partial = [k for k in client.scan_iter(match=f"{layout.snapshot_prefix('user_features')}*") if
                   k.decode() != layout.snapshot("user_features", first.snapshot_id)]  # fmt: skip
        assert partial and all(0 < client.ttl(k) <= 600 for k in partial)  # abandoned: expires
        assert client.ttl(layout.snapshot("user_features", first.snapshot_id)) == -1  # served: no TTL
        for key in partial:
            client.unlink(key)

    second = _sync(warehouse, pg, prefix, grace_seconds=30)  # the next sync succeeds
    assert second.replaced == first.snapshot_id
    assert store.get_users(ids).snapshot.snapshot_id == second.snapshot_id
    assert 0 < client.ttl(layout.snapshot("user_features", first.snapshot_id)) <= 30  # grace, then gone
    assert client.ttl(layout.snapshot("user_features", second.snapshot_id)) == -1


def test_flip_refuses_an_incomplete_snapshot(warehouse, pg, prefix):
    """A snapshot hash that expired while being written is never published."""
    first = _sync(warehouse, pg, prefix)

    def stall(progress: SyncProgress) -> None:
        if progress.rows_sent == 500:
            time.sleep(1.3)  # the build TTL (1 s) runs out: the first 500 rows vanish

    with pytest.raises(SyncError, match="INCOMPLETE"):
        _sync(warehouse, pg, prefix, batch_size=500, build_ttl=1, on_batch=stall)
    with pytest.raises(SyncError, match="empty"):
        _sync(warehouse, pg, prefix, source="online_test.empty")
    assert _store(warehouse, prefix).snapshot("user_features").snapshot_id == first.snapshot_id


def test_cache_is_keyed_by_snapshot_and_flips_within_its_ttl(warehouse, pg, prefix):
    (as_of_a, view_a), (as_of_b, view_b) = sorted(warehouse.views.items())
    _sync(warehouse, pg, prefix, source=view_a)
    store = _store(warehouse, prefix, cache_size=500, cache_ttl=0.3)
    ids = sorted(set(warehouse.history[as_of_a]) & set(warehouse.history[as_of_b]))[:50]
    first = store.get_users(ids)
    assert not first.from_cache and first.snapshot.as_of == as_of_a
    cached = store.get_users(ids[:10])
    assert cached.from_cache and cached.rows == {i: first.rows[i] for i in ids[:10]}
    assert store.cache_hits == 1 and store.cache_misses == 1

    _sync(warehouse, pg, prefix, source=view_b)
    time.sleep(0.35)  # past the cache TTL: the next read asks Redis and sees the new snapshot
    after = store.get_users(ids[:10])
    assert not after.from_cache and after.snapshot.as_of == as_of_b
    assert after.rows == {i: warehouse.history[as_of_b][i] for i in ids[:10]}
    assert set(store._caches["user_features"].values) == set(ids[:10])  # the old snapshot's rows are gone
    assert store.get_users(ids[:10]).from_cache


def test_bounded_cache_and_stale_flag(warehouse, pg, prefix):
    _sync(warehouse, pg, prefix)
    ids = list(warehouse.users)[:100]
    store = _store(warehouse, prefix, cache_size=20, cache_ttl=60)
    for start in range(0, 100, 10):
        store.get_users(ids[start : start + 10])
    assert list(store._caches["user_features"].values) == ids[80:]  # first in, first out
    assert store.get_users(ids[90:]).from_cache and not store.get_users(ids[70:80]).from_cache
    assert not store.get_user(ids[0]).stale
    strict = _store(warehouse, prefix, max_age=timedelta(hours=1))  # features from DAY_B 00:00
    vector = strict.get_user(ids[0])
    assert vector.stale and vector.found  # served, but flagged
    assert vector.snapshot.age_seconds() > 3600


def test_missing_snapshot_and_unreachable_redis_fail_fast(warehouse, prefix):
    with pytest.raises(SnapshotMissing):
        _store(warehouse, prefix).get_user(next(iter(warehouse.users)))
    assert _store(warehouse, prefix).snapshot("user_features") is None
    dead = OnlineStore(connect(f"redis://127.0.0.1:{free_port()}/0", 0.3), prefix=prefix)
    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable):
        dead.get_users(list(warehouse.users)[:5])
    assert time.monotonic() - started < 2
    assert not dead.ping()


def test_canonical_ids():
    upper = "6F1C2B1E-3C3A-4D7E-9A55-0B8F7D1F2A10"
    assert canonical_id(upper) == upper.lower()
    assert canonical_id("6f1c2b1e3c3a4d7e9a550b8f7d1f2a10") == upper.lower()
    with pytest.raises(ValueError):
        canonical_id("6f1c2b1e-3c3a-4d7e-9a55")


def test_sync_assets_materialize_with_metadata_and_run_after_the_marts(warehouse, prefix, monkeypatch):
    from fs_platform.definitions import defs
    from fs_platform.defs.online_store.assets import online_view_assets

    monkeypatch.setenv("FS_REDIS_PREFIX", prefix)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            online_view_assets,
            instance=instance,
            resources={
                "postgres": PostgresResource(database_url=warehouse.database_url),
                "redis": RedisResource(redis_url=warehouse.redis_url),
            },
        )
        assert result.success
        meta = {
            e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        users = meta["online_user_features"]
        assert users["dagster/row_count"].value == len(warehouse.users)
        assert users["feature_view"].value == "user_features"
        assert users["bytes"].value > 0 and users["seconds"].value > 0
        assert users["as_of"].value == warehouse.as_of.timestamp()
        store = _store(warehouse, prefix)
        assert users["snapshot_id"].value == store.snapshot("user_features").snapshot_id
        assert meta["online_listing_features"]["dagster/row_count"].value == len(warehouse.listings)

        # automation: nothing before the marts exist; a sync once a mart partition materializes
        selection = dg.AssetSelection.assets(*online_view_assets)
        with dg.instance_for_test() as fresh:
            first = dg.evaluate_automation_conditions(defs=defs, instance=fresh, asset_selection=selection)
            assert first.total_requested == 0
            fresh.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="user_features", partition=DAY_B.isoformat())
            )
            second = dg.evaluate_automation_conditions(
                defs=defs, instance=fresh, asset_selection=selection, cursor=first.cursor
            )
            assert second.get_requested_partitions(dg.AssetKey("online_user_features")) == {None}
            assert second.get_num_requested(dg.AssetKey("online_listing_features")) == 0
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    policy = specs["online_user_features"].freshness_policy
    assert policy is not None and policy.deadline_cron == "30 4 * * *"


def test_redis_replies_are_parsed_by_hiredis(warehouse, prefix):
    """redis-py picks its C parser when hiredis is importable (a dependency: redis[hiredis])."""
    from redis._parsers.hiredis import _HiredisParser

    client = _store(warehouse, prefix).client
    connection = client.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, _HiredisParser)
    finally:
        client.connection_pool.release(connection)


def test_cold_traffic_stops_filling_the_cache_and_hits_restart_it(warehouse, pg, prefix):
    """Below 15 % hits over a window of 256 requests, only one miss in 16 is cached (caching misses
    nobody asks for again costs more than it saves); once hits return, every miss is cached again."""
    _sync(warehouse, pg, prefix)
    ids = list(warehouse.users)
    store = _store(warehouse, prefix, cache_size=10_000, cache_ttl=60)
    cache = store._caches["user_features"]
    for user in ids[:256]:  # one window of misses: the 256th closes it before being cached
        store.get_user(user)
    assert not cache.admitting and len(cache.values) == 255
    for user in ids[256:352]:  # 96 more misses: one in 16 is cached
        store.get_user(user)
    assert len(cache.values) == 255 + 6
    for _ in range(256):  # a window of hits
        assert store.get_users([ids[0]]).from_cache
    assert cache.admitting
    assert not store.get_users([ids[400]]).from_cache and store.get_users([ids[400]]).from_cache
