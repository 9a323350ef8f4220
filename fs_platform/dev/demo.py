"""`make demo`: the whole platform on scale-xs synthetic data, on the shared Dagster instance."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from fs_platform.infra.config import get_settings
from fs_platform.infra.instance import prepare_environment
from fs_platform.infra.runtime import pg_connect, redact

#: keep the console readable: the full event log is in the Dagster UI
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_DAYS = 14
#: the demo's stages, printed as "[n/N] ..." with their time, so a first run never looks stuck
STAGES = (
    "services (embedded PostgreSQL + Redis on first use)",
    "synthetic data",
    "ingestion",
    "feature partitions (dbt)",
    "online store (Redis)",
    "training set + model",
    "monitoring checks",
)


@contextlib.contextmanager
def _stage(name: str) -> Iterator[None]:
    number = STAGES.index(name) + 1
    print(f"\n[{number}/{len(STAGES)}] {name} ...", flush=True)
    started = time.perf_counter()
    yield
    print(f"[{number}/{len(STAGES)}] {name}: done in {time.perf_counter() - started:.0f}s", flush=True)


def _resources() -> dict:
    """The code location's resources, without loading the asset groups: the feature partitions
    start at the first ingested event, so the graph is loaded only after ingestion recorded it."""
    from fs_platform.defs.resources import defs

    return dict(defs.resources)


def backfill_features(
    start: date, end: date, *, full_refresh: bool = False, instance: dg.DagsterInstance | None = None
) -> list[dg.ExecuteInJobResult]:
    """Materialize partitions start..end (inclusive) in one run, walking the days in order."""
    from fs_platform.defs.features.assets import feature_dbt_assets

    prepare_environment()
    instance = instance or dg.DagsterInstance.get()
    days = (end - start).days + 1
    log_path = get_settings().home / "logs" / "backfill-dbt.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"backfilling {days} partitions {start}..{end} (dbt output: {log_path})")
    with log_path.open("a") as log, contextlib.redirect_stdout(log):
        # one run over the range, as a Dagster backfill with the single-run policy executes it
        result = dg.materialize(
            [feature_dbt_assets],
            instance=instance,
            resources=_resources(),
            tags={
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            },
            run_config={"ops": {"feature_dbt_assets": {"config": {"full_refresh": full_refresh}}}, **QUIET},
            raise_on_error=True,
        )
    print(f"backfill run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    return [result]


def run_demo(days: int | None = None, seed: int = 42) -> int:
    from fs_platform.defs.ingestion.assets import raw_listings, raw_user_interactions
    from fs_platform.dev.synthetic import generate, write_parquet

    started = time.perf_counter()
    settings = get_settings()
    with _stage(STAGES[0]):
        urls = prepare_environment(settings)
        instance = dg.DagsterInstance.get()
        print(f"services: postgres {redact(urls.database_url)}, redis {redact(urls.redis_url)}")

    end = datetime.now(UTC).date()
    # a 20-point device-mix shift on the last day: the input-drift check at the end shows it
    drift_from = end - timedelta(days=1)
    with _stage(STAGES[1]):
        data = generate(
            "xs",
            days=days or DEMO_DAYS,
            seed=seed,
            end=end,
            drift="device_shift",
            drift_from=drift_from,
            progress=True,
        )
        written = write_parquet(data, settings.inbox_dir)
        truth_dir = settings.home / "ground_truth"
        truth_dir.mkdir(parents=True, exist_ok=True)
        for path in written.get("ground_truth", []):
            shutil.move(str(path), truth_dir / path.name)
        print(
            f"generated {len(data.events):,} events, {len(data.listings):,} listings into {settings.inbox_dir}"
        )
        _write_messy_delivery(settings.inbox_dir / "interactions" / "zz_partner_feed.csv", data.events)

    with _stage(STAGES[2]):
        result = dg.materialize(
            [raw_listings, raw_user_interactions],
            instance=instance,
            resources=_resources(),
            run_config=QUIET,
        )
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            print(
                f"{event.asset_key.to_user_string():24} read {meta['rows_read'].value:>9,}  accepted "
                f"{meta['rows_accepted'].value:>9,}  rejected {meta['rows_rejected'].value:>5,}  duplicate "
                f"{meta['rows_duplicate'].value:>5,}"
            )

    with _stage(STAGES[3]):
        first_day = data.events["occurred_at"].min().date() + timedelta(days=1)
        backfill_features(first_day, end, full_refresh=True, instance=instance)
        _print_features(urls.database_url)
    with _stage(STAGES[4]):
        sync_online_store(instance, urls.database_url)
    from fs_platform.dev.training_demo import demo_window, train_demo_model

    with _stage(STAGES[5]):
        train_demo_model(instance, _resources(), *demo_window(end, days or DEMO_DAYS), truth_dir)
    from fs_platform.dev.demo_checks import run_demo_checks

    with _stage(STAGES[6]):
        print(f"injected drift: device_shift (20 points android -> ios) from {drift_from}")
        run_demo_checks(instance, _resources(), end, urls.database_url)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f}s.")
    print("Open the Dagster UI on the same instance and data:  make ui   (then http://127.0.0.1:3000)")
    print('Explore with dbt/psql:  eval "$(.venv/bin/fs-platform services env)"; psql "$FS_DATABASE_URL"')
    return 0


def _write_messy_delivery(path: Path, events: pd.DataFrame) -> None:
    """A small partner CSV with typical defects, to show quarantine in the demo's output."""
    sample = events.head(6).copy()
    sample["event_id"] = [str(uuid.UUID(int=uuid.UUID(e).int ^ 1)) for e in sample["event_id"]]
    sample["occurred_at"] = sample["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    sample.iloc[1, sample.columns.get_loc("event_type")] = "listing_shared"  # unknown type
    sample.iloc[2, sample.columns.get_loc("occurred_at")] = "2099-01-01T00:00:00Z"  # future
    sample.iloc[3, sample.columns.get_loc("user_id")] = "not-a-uuid"
    sample = pd.concat([sample, sample.iloc[[0]]])  # duplicate delivery of one event
    sample.to_csv(path, index=False)


def _print_features(database_url: str) -> None:
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute(
            "select count(*), min(as_of), max(as_of), count(distinct as_of) from features.user_features_history"
        )
        rows, first, last, snapshots = cur.fetchone()
        print(
            f"\nuser_features_history: {rows:,} rows in {snapshots} daily snapshots ({first:%Y-%m-%d} .. {last:%Y-%m-%d})"
        )
        cur.execute(
            "select user_id, category_affinity, city_affinity, round(price_sensitivity::numeric, 3), "
            "round(activity_score::numeric, 3), as_of from features.user_features order by activity_score desc limit 3"
        )
        print("user_features (top 3 by activity_score):")
        for user_id, cats, cities, price, activity, as_of in cur.fetchall():
            top_cats = dict(sorted(cats.items(), key=lambda kv: -kv[1])[:3])
            top_cities = dict(sorted(cities.items(), key=lambda kv: -kv[1])[:2])
            print(f"  {user_id}  activity={activity} price_sensitivity={price} as_of={as_of:%Y-%m-%d}")
            print(f"    categories { ({k: round(v, 3) for k, v in top_cats.items()}) }")
            print(f"    cities     { ({k: round(v, 3) for k, v in top_cities.items()}) }")
    conn.close()


def sync_online_store(instance: dg.DagsterInstance, database_url: str) -> None:
    """Publish the features to Redis (the two sync assets) and show how to query them over HTTP."""
    from fs_platform.defs.online_store.assets import online_view_assets

    result = dg.materialize(
        online_view_assets,
        instance=instance,
        resources=_resources(),
        run_config=QUIET,
    )
    events = result.get_asset_materialization_events()
    meta = {e.asset_key.path[-1]: e.materialization.metadata for e in events}
    users, listings = meta["online_user_features"], meta["online_listing_features"]
    print(
        f"\nonline store (Redis): {users['dagster/row_count'].value:,} users in snapshot "
        f"{users['snapshot_id'].value}, {listings['dagster/row_count'].value:,} listings"
    )
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("select user_id from features.user_features order by activity_score desc limit 2")
        first, second = (str(row[0]) for row in cur.fetchall())
        cur.execute("select listing_id from features.listing_features order by listing_id limit 1")
        listing = str(cur.fetchone()[0])
    conn.close()
    api = "http://127.0.0.1:8000"
    print("Serve them (another terminal):  make serve   (OpenAPI docs: http://127.0.0.1:8000/docs)")
    print(f"  curl -s {api}/v1/users/{first}/features")
    print(f"  curl -s '{api}/v1/users/{first}/features?names=activity_score,price_sensitivity'")
    body = json.dumps({"user_ids": [first, second]})
    print(f"  curl -s -X POST {api}/v1/features/batch -H 'Content-Type: application/json' -d '{body}'")
    print(f"  curl -s {api}/v1/listings/{listing}/features")
    body = json.dumps({"user_id": first, "listing_ids": [listing], "context": {"device_type": "ios"}})
    print(f"  curl -s -X POST {api}/v1/score -H 'Content-Type: application/json' -d '{body}'")
