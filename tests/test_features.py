"""The dbt feature pipeline against the independent reference (tests/reference), through Dagster."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
from feature_pipeline import assert_features_equal, load_frames, run_partition, run_range, snapshot
from reference.features import reference_price_pct, reference_user_features

from fs_platform.dev.synthetic import generate

END = date(2026, 3, 1)  # exclusive end of the generated events
DAYS = 21


@pytest.fixture(scope="module")
def xs_data():
    return generate("xs", days=DAYS, seed=7, end=END)


@pytest.fixture()
def loaded(clean_db, tmp_path, xs_data):
    load_frames(clean_db, xs_data.listings, xs_data.events, tmp_path / "data")
    return clean_db


def _reference(data, day: date, **kwargs) -> dict:
    cutoff = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return reference_user_features(data.events, data.listings, cutoff, **kwargs)


def test_incremental_partitions_match_reference_and_full_refresh(loaded, xs_data):
    """Three partitions run in order (the later ones incrementally) equal the reference to 1e-9;
    a full refresh of the last one gives the same rows."""
    days = [END - timedelta(days=10), END - timedelta(days=9), END + timedelta(days=2)]
    for day in days:
        result = run_partition(day)
        assert result.success
        assert_features_equal(snapshot(loaded, day), _reference(xs_data, day))
    incremental = snapshot(loaded, days[-1])
    assert run_partition(days[-1], full_refresh=True).success
    assert_features_equal(snapshot(loaded, days[-1]), incremental, rel=1e-12)
    # user_features is the latest partition
    assert_features_equal(snapshot(loaded, days[-1], "features.user_features"), incremental, rel=0)


def test_linear_decay_and_other_knobs_match_reference(loaded, xs_data):
    day = END - timedelta(days=3)
    knobs = {"decay_kind": "linear", "window_days": 10, "activity_scale": 4}
    assert run_partition(day, dbt_vars=knobs, full_refresh=True).success
    expected = _reference(xs_data, day, decay="linear", window_days=10, activity_scale=4)
    assert_features_equal(snapshot(loaded, day), expected)
    knobs = {"half_life_days": 3}
    assert run_partition(day, dbt_vars=knobs, full_refresh=True).success
    assert_features_equal(snapshot(loaded, day), _reference(xs_data, day, half_life_days=3))


def test_backfill_of_a_range_equals_days_one_by_one(loaded, xs_data):
    """Cold run of D3; a range backfill D0..D3 (one run: D0 alone, then D1..D3 in one dbt
    invocation whose pre-hook chains D1 -> D2); the days one by one again (idempotent re-runs,
    going back in time first): every snapshot is the same, and D0..D2 match the reference."""
    days = [END - timedelta(days=k) for k in (7, 6, 5, 4)]
    assert run_partition(days[-1]).success  # cold: builds every rollup of the window
    cold = snapshot(loaded, days[-1])
    result = run_range(days[0], days[-1])
    assert result.success
    materialized = {
        e.partition
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "user_features"
    }
    assert materialized == {day.isoformat() for day in days}
    by_range = {day: snapshot(loaded, day) for day in days}
    assert_features_equal(by_range[days[-1]], cold, rel=1e-12)
    with loaded.cursor() as cur:
        cur.execute("select count(*) from features.user_features_history")
        rows_before = cur.fetchone()[0]
    for day in days:
        assert run_partition(day).success
        assert_features_equal(snapshot(loaded, day), by_range[day], rel=1e-12)
    with loaded.cursor() as cur:
        cur.execute("select count(*) from features.user_features_history")
        assert cur.fetchone()[0] == rows_before
    loaded.commit()
    for day in days[:-1]:
        assert_features_equal(by_range[day], _reference(xs_data, day))


def test_rollups_emptied_by_a_crash_are_rebuilt_by_the_next_run(loaded, xs_data):
    """The rollup table is unlogged, so crash recovery truncates it. The next partition then
    rebuilds its whole window from raw events and still matches the reference."""
    day = END - timedelta(days=2)
    assert run_partition(day - timedelta(days=1)).success
    with loaded.cursor() as cur:
        cur.execute(
            "select c.relpersistence from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'features' and c.relname = 'int_user_listing_daily'"
        )
        assert cur.fetchone()[0] == "u"
        cur.execute("truncate features.int_user_listing_daily")  # what recovery does after a crash
    loaded.commit()
    assert run_partition(day).success
    assert_features_equal(snapshot(loaded, day), _reference(xs_data, day))
    with loaded.cursor() as cur:
        cur.execute("select min(event_day), max(event_day) from features.int_user_listing_daily")
        first, last = cur.fetchone()
    loaded.commit()
    assert (first, last) == (xs_data.events["occurred_at"].min().date(), day - timedelta(days=1))


# ------------------------------------------------------------------ hand-made edge cases

T = date(2026, 2, 1)
T_TS = datetime(2026, 2, 1, tzinfo=UTC)
CAT_LISTINGS = {
    "10000000-0000-4000-8000-000000000001": ("cars", "oslo", 100.0),
    "10000000-0000-4000-8000-000000000002": ("cars", "oslo", 300.0),
    "10000000-0000-4000-8000-000000000003": ("boats", "bergen", 5000.0),  # alone in its category
    "10000000-0000-4000-8000-000000000004": ("cars", "bergen", None),  # price on request
}
U_EDGE, U_IMPRESSIONS, U_LEAVER, U_AT_T = (f"20000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))


def _edge_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    listings = pd.DataFrame(
        [
            {
                "listing_id": lid,
                "category_id": c,
                "city": city,
                "price": p,
                "is_premium": False,
                "image_count": 1,
                "created_at": pd.Timestamp("2025-01-01", tz="UTC"),
            }
            for lid, (c, city, p) in CAT_LISTINGS.items()
        ]
    )
    ids = list(CAT_LISTINGS)
    rows = [
        (U_EDGE, ids[0], "listing_viewed", T_TS - timedelta(days=90)),  # exactly at T - window: included
        (U_EDGE, ids[2], "listing_favorited", T_TS - timedelta(days=1)),
        (U_EDGE, ids[3], "listing_contact_clicked", T_TS - timedelta(hours=5)),
        (U_IMPRESSIONS, ids[0], "impression", T_TS - timedelta(days=2)),  # w = 0 only: no row
        (
            U_LEAVER,
            ids[1],
            "listing_viewed",
            T_TS - timedelta(days=89, hours=12),
        ),  # leaves the window next day
        (U_AT_T, ids[1], "listing_viewed", T_TS),  # exactly at T: excluded
        (U_AT_T, ids[1], "listing_viewed", T_TS - timedelta(days=90, microseconds=1)),  # just before window
    ]
    events = pd.DataFrame(
        [
            {
                "event_id": f"30000000-0000-4000-8000-{i:012d}",
                "user_id": u,
                "listing_id": lid,
                "event_type": et,
                "occurred_at": ts,
                "device_type": "web",
            }
            for i, (u, lid, et, ts) in enumerate(rows)
        ]
    )
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True)
    return listings, events


def test_edge_cases(clean_db, tmp_path):
    listings, events = _edge_frames()
    load_frames(clean_db, listings, events, tmp_path / "edge")
    assert run_partition(T).success
    features = snapshot(clean_db, T)
    assert set(features) == {U_EDGE, U_LEAVER}  # impressions-only and out-of-window users have no row
    assert_features_equal(features, reference_user_features(events, listings, T_TS))
    with clean_db.cursor() as cur:
        cur.execute("select listing_id::text, price_pct from features.listing_features")
        pct = dict(cur.fetchall())
    clean_db.commit()
    assert pct[list(CAT_LISTINGS)[2]] == 0.0  # single priced listing in its category
    assert pct[list(CAT_LISTINGS)[3]] is None  # price on request
    assert (pct[list(CAT_LISTINGS)[0]], pct[list(CAT_LISTINGS)[1]]) == (0.0, 1.0)

    next_day = T + timedelta(days=1)
    assert run_partition(next_day).success
    assert U_LEAVER not in snapshot(clean_db, next_day, "features.user_features")  # left the window
    assert U_LEAVER in snapshot(clean_db, T)  # ...but kept in history

    empty_day = T + timedelta(days=200)  # no events in its window
    result = run_partition(empty_day)
    assert result.success
    assert snapshot(clean_db, empty_day) == {}
    assert snapshot(clean_db, empty_day, "features.user_features") == {}


def test_materialization_metadata_and_checks(loaded):
    day = END - timedelta(days=1)
    result = run_partition(day)
    assert result.success
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    history = metadata["user_features_history"]
    assert history["dagster/row_count"].value == history["users"].value > 0
    assert 0 < history["mean_activity_score"].value < 1
    assert metadata["user_features"]["dagster/row_count"].value == history["users"].value
    checks = result.get_asset_check_evaluations()
    checked_assets = {c.asset_key.to_user_string() for c in checks}
    assert {"user_features", "user_features_history", "listing_features"} <= checked_assets
    assert checks and all(c.passed for c in checks)
    assert any("json_shares_sum_to_one" in c.check_name for c in checks)


def test_partition_run_is_recorded_on_a_postgres_backed_instance(loaded, database_url, tmp_path):
    """dagster.yaml's Postgres storage (dagster-postgres, postgresql+psycopg2) holds the run."""
    import os

    from fs_platform.infra.instance import prepare_environment

    os.environ["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    prepare_environment()
    instance = dg.DagsterInstance.get()
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        day = END - timedelta(days=2)
        result = run_partition(day, instance=instance)
        assert result.success
        record = instance.get_latest_materialization_event(dg.AssetKey("user_features"))
        assert record is not None and record.dagster_event.partition == day.isoformat()
    finally:
        instance.dispose()
        os.environ.pop("DAGSTER_HOME", None)


def test_dbt_unit_tests_pass(loaded, database_url):
    """The `unit_tests:` in the yml (decay math, share normalisation, rollups) run with real dbt."""
    import os
    import subprocess

    from fs_platform.infra.dbt import DBT_PROJECT_DIR, dbt_executable
    from fs_platform.infra.runtime import pg_env

    assert run_partition(END).success  # the models the unit tests mock must exist
    env = {**os.environ, **pg_env(database_url)}
    result = subprocess.run(
        [
            dbt_executable(),
            "test",
            "--select",
            "test_type:unit",
            "--profiles-dir",
            ".",
            "--target-path",
            "target/pytest_unit",
        ],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "PASS=3" in result.stdout


# ------------------------------------------------------------------ listings as of their own time

L_CHEAP, L_DEAR, L_BOAT, L_ON_REQUEST = list(CAT_LISTINGS)
U_REPRICE = "20000000-0000-4000-8000-000000000009"


def _versions(conn) -> pd.DataFrame:
    """raw.listing_versions as the reference reads it (every version of every listing)."""
    with conn.cursor() as cur:
        cur.execute(
            "select listing_id::text, valid_from, category_id, city, price::float8, created_at "
            "from raw.listing_versions"
        )
        rows = cur.fetchall()
    conn.commit()
    return pd.DataFrame(
        rows, columns=["listing_id", "valid_from", "category_id", "city", "price", "created_at"]
    )


def _listing_history(conn, day: date) -> dict:
    with conn.cursor() as cur:
        cur.execute(
            "select listing_id::text, category_id, city, price, price_pct, is_premium, image_count "
            "from features.listing_features_history where as_of = %s order by 1",
            (datetime.combine(day, datetime.min.time(), tzinfo=UTC),),
        )
        rows = {r[0]: r[1:] for r in cur.fetchall()}
    conn.commit()
    return rows


def _redeliver(conn, folder, name: str, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame.to_parquet(folder / name)
    from fs_platform.ingestion.load import ingest_listings_file

    report = ingest_listings_file(conn, folder / name)
    assert report.rejected == 0, report.reject_reasons


def test_partitions_are_reproducible_when_listings_change_later(clean_db, tmp_path):
    """A partition computed today equals the same partition recomputed after new listings and
    attribute changes (repriced, category changed, price turned to null, a new cheaper listing), and
    every partition matches the reference that reads the listing versions; the events' percentiles
    are frozen at their day ends, so a repricing mid-window splits a user's events."""
    listings, events = _edge_frames()
    extra = pd.DataFrame(
        [
            {
                "event_id": f"31000000-0000-4000-8000-{i:012d}",
                "user_id": U_REPRICE,
                "listing_id": L_CHEAP,
                "event_type": "listing_favorited",
                "occurred_at": ts,
                "device_type": "ios",
            }
            for i, ts in enumerate([T_TS - timedelta(days=3), T_TS + timedelta(days=6)])
        ]
    )
    extra["occurred_at"] = pd.to_datetime(extra["occurred_at"], utc=True)
    events = pd.concat([events, extra], ignore_index=True)
    folder = tmp_path / "versions"
    load_frames(clean_db, listings, events, folder)
    assert run_partition(T).success
    users_at_t, listings_at_t = snapshot(clean_db, T), _listing_history(clean_db, T)
    assert listings_at_t[L_CHEAP][3] == 0.0 and listings_at_t[L_DEAR][3] == 1.0

    base = listings.set_index("listing_id")

    def changed(listing_id: str, **attrs) -> dict:
        return {"listing_id": listing_id, **base.loc[listing_id].to_dict(), **attrs}

    _redeliver(
        clean_db,
        folder,
        "changes.parquet",
        [
            changed(L_CHEAP, price=500.0, updated_at=T_TS + timedelta(days=2)),  # repriced after T
            changed(L_BOAT, price=None, updated_at=T_TS + timedelta(days=1)),  # price turned to null
            changed(L_DEAR, category_id="vans"),  # category changed today (no updated_at)
            {  # a new, cheaper car created after T
                "listing_id": "10000000-0000-4000-8000-000000000005",
                "category_id": "cars",
                "city": "oslo",
                "price": 50.0,
                "is_premium": True,
                "image_count": 3,
                "created_at": T_TS + timedelta(days=4),
            },
        ],
    )
    assert run_partition(T).success  # the same partition, recomputed after the changes
    assert snapshot(clean_db, T) == users_at_t
    assert _listing_history(clean_db, T) == listings_at_t
    versions = _versions(clean_db)
    assert_features_equal(users_at_t, reference_user_features(events, versions, T_TS))
    for day in (T, T + timedelta(days=10)):
        if day != T:
            assert run_partition(day).success
        at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        expected_pct = reference_price_pct(versions, at)
        history = _listing_history(clean_db, day)
        assert set(history) == set(expected_pct)  # exactly the listings live at the partition
        for listing_id, row in history.items():
            expected = expected_pct[listing_id]
            if expected is None:
                assert row[3] is None, listing_id
            else:
                assert row[3] == pytest.approx(expected, rel=1e-12), listing_id

    later = T + timedelta(days=10)
    history = _listing_history(clean_db, later)
    assert history[L_CHEAP][2] == 500.0 and history[L_BOAT][3] is None
    assert history["10000000-0000-4000-8000-000000000005"][3] == 0.0  # the cheapest car now
    assert L_DEAR in history  # still a car at T + 10: its category changed only today
    expected = reference_user_features(
        events, versions, datetime.combine(later, datetime.min.time(), tzinfo=UTC)
    )
    assert_features_equal(snapshot(clean_db, later), expected)
    # the repricing split U_REPRICE's events: the one before it saw the cheapest car (0.0), the one
    # after it the dearest (1.0), each frozen at its own day end
    assert 0.0 < snapshot(clean_db, later)[U_REPRICE]["price_sensitivity"] < 1.0
    assert snapshot(clean_db, T)[U_REPRICE]["price_sensitivity"] == 0.0
