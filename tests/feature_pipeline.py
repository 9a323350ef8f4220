"""Test helpers: load data through the real ingestion and run real partitions of the dbt assets."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2.extensions

from fs_platform.definitions import defs
from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.ingestion.load import ingest_interactions_file, ingest_listings_file


def load_frames(
    conn: psycopg2.extensions.connection, listings: pd.DataFrame, events: pd.DataFrame, folder: Path
) -> None:
    """Write the frames as Parquet and ingest them (listings first)."""
    folder.mkdir(parents=True, exist_ok=True)
    listings.to_parquet(folder / "listings.parquet")
    report = ingest_listings_file(conn, folder / "listings.parquet")
    assert report.rejected == 0, report.reject_reasons
    if len(events):
        events.to_parquet(folder / "events.parquet")
        report = ingest_interactions_file(conn, folder / "events.parquet")
        assert report.rejected == 0, report.reject_reasons


def run_partition(
    day: date | str,
    *,
    dbt_vars: dict | None = None,
    full_refresh: bool = False,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInJobResult:
    config = {"dbt_vars_json": json.dumps(dbt_vars or {}), "full_refresh": full_refresh}
    return dg.materialize(
        [feature_dbt_assets],
        partition_key=str(day),
        resources=defs.resources,
        instance=instance,
        run_config={"ops": {"feature_dbt_assets": {"config": config}}},
    )


def run_range(
    first: date | str,
    last: date | str,
    *,
    full_refresh: bool = False,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInJobResult:
    """A backfill of first..last (inclusive) as Dagster runs it: one run over the partition range."""
    config = {"dbt_vars_json": "{}", "full_refresh": full_refresh}
    return dg.materialize(
        [feature_dbt_assets],
        resources=defs.resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
        run_config={"ops": {"feature_dbt_assets": {"config": config}}},
    )


def snapshot(
    conn: psycopg2.extensions.connection, as_of: date | str, table: str = "features.user_features_history"
) -> dict:
    """{user_id: features} of one snapshot, as plain Python values."""
    cutoff = datetime.fromisoformat(str(as_of)).replace(tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute(
            f"select user_id::text, category_affinity, city_affinity, price_sensitivity, activity_score "
            f"from {table} where as_of = %s",
            (cutoff,),
        )
        rows = cur.fetchall()
    conn.commit()
    return {
        u: {"category_affinity": c, "city_affinity": ci, "price_sensitivity": p, "activity_score": a}
        for u, c, ci, p, a in rows
    }


def _close(a: float | None, b: float | None, rel: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def assert_features_equal(actual: dict, expected: dict, rel: float = 1e-9) -> None:
    """Same users, same keys, every value within ``rel`` (relative)."""
    assert set(actual) == set(expected), (
        f"users only in actual: {sorted(set(actual) - set(expected))[:5]}, "
        f"only in expected: {sorted(set(expected) - set(actual))[:5]}"
    )
    for user, exp in expected.items():
        act = actual[user]
        for name in ("category_affinity", "city_affinity"):
            assert set(act[name]) == set(exp[name]), (user, name, act[name], exp[name])
            for key, share in exp[name].items():
                assert _close(act[name][key], share, rel), (user, name, key, act[name][key], share)
        for name in ("price_sensitivity", "activity_score"):
            assert _close(act[name], exp[name], rel), (user, name, act[name], exp[name])


def fresh_features(
    database_url: str, listings: pd.DataFrame, events: pd.DataFrame, folder: Path, first: date, last: date
) -> psycopg2.extensions.connection:
    """A database holding only these frames and the feature partitions first..last (one Dagster
    backfill run); returns an open connection to it."""
    from fs_platform.infra.runtime import pg_connect

    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("drop schema if exists raw, staging, features cascade")
    conn.commit()
    load_frames(conn, listings, events, folder)
    assert run_range(first, last).success
    return conn
