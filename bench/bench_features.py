"""Feature pipeline speed at one scale, measured side by side in one run.

- reference: one hand-written grouped aggregation of the decayed category affinity over the
  window (float8), straight from raw events — the speed limit a full recompute is held to;
- full recompute of a partition: every dbt model with ``--full-refresh`` (rollups from raw);
- daily incremental: the next day's partition after that (one day of raw events + rollups);
- naive pandas: what a ``daily_feature_update.py`` job would do (read the window, group by);
- the floor of any exact daily run (``_exact_daily_floor``): how many listings' price percentiles
  move from one day to the next, and the time of the three steps no exact incremental design can
  skip (recomputing the percentiles, re-weighting every window pair by today's percentile,
  writing one snapshot).
Times of dbt runs are the sums of the models' times from run_results.json, as the targets use them;
``run_elapsed`` is dbt's clock for the same run, where models overlap on two threads, and dbt's
~3 s process start-up is reported separately as wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import target, write_result
from bench.database import bench_database, last_event_time
from fs_platform.features.partition_run import partition_run
from fs_platform.infra.dbt import DBT_PROJECT_DIR, dbt_executable
from fs_platform.infra.runtime import pg_connect, pg_env

REFERENCE_SQL = """
create temp table bench_reference as
select e.user_id, l.category_id,
       sum((case e.event_type when 'listing_viewed' then 1.0 when 'listing_favorited' then 3.0
                 when 'listing_contact_clicked' then 5.0 else 0.0 end)::float8
           * power(0.5::float8, (extract(epoch from (%(cutoff)s::timestamptz - e.occurred_at))::float8 / 86400.0) / 14.0))
           as decayed_weight
from raw.user_interactions e
join raw.listings l on l.listing_id = e.listing_id
where e.occurred_at >= %(cutoff)s::timestamptz - interval '90 days' and e.occurred_at < %(cutoff)s::timestamptz
  and e.event_type <> 'impression'
group by e.user_id, l.category_id
"""


def _reference_seconds(database_url: str, cutoff: datetime) -> float:
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(REFERENCE_SQL, {"cutoff": cutoff})
        seconds = time.perf_counter() - started
        cur.execute("drop table bench_reference")
    conn.rollback()
    conn.close()
    return seconds


def _dbt_run(database_url: str, cutoff: datetime, full_refresh: bool) -> tuple[float, float, dict]:
    run = partition_run(
        cutoff.date(),
        command="run",
        full_refresh=full_refresh,
        extra_args=["--profiles-dir", ".", "--target-path", "target/bench", "--quiet"],
    )
    started = time.perf_counter()
    subprocess.run(
        [dbt_executable(), *run.args],
        cwd=DBT_PROJECT_DIR,
        env=run.subprocess_env({**os.environ, **pg_env(database_url)}),
        check=True,
    )
    wall = time.perf_counter() - started
    results = json.loads((DBT_PROJECT_DIR / "target/bench/run_results.json").read_text())
    per_model = {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results["results"]}
    models_total = sum(per_model.values())
    # dbt's own clock for the run after start-up and parsing (models overlap on the profile's threads)
    per_model["run_elapsed"] = results["elapsed_time"]
    return models_total, wall, per_model


def _pandas_seconds(database_url: str, cutoff: datetime) -> float:
    """A straightforward pandas job: load the window, weight, decay, group, normalise."""
    started = time.perf_counter()
    conn = pg_connect(database_url)
    events = pd.read_sql(
        "select user_id::text, listing_id::text, event_type, occurred_at from raw.user_interactions "
        "where occurred_at >= %(c)s::timestamptz - interval '90 days' and occurred_at < %(c)s::timestamptz",
        conn,
        params={"c": cutoff},
    )
    listings = pd.read_sql(
        "select listing_id::text, category_id, city, price::float8 as price from raw.listings", conn
    )
    conn.close()
    weights = {
        "impression": 0.0,
        "listing_viewed": 1.0,
        "listing_favorited": 3.0,
        "listing_contact_clicked": 5.0,
    }
    listings["price_pct"] = listings.groupby("category_id")["price"].rank(method="min", pct=False)
    counts = listings.groupby("category_id")["price"].transform("count")
    listings["price_pct"] = (listings["price_pct"] - 1) / (counts - 1).where(counts > 1, np.nan)
    listings.loc[counts == 1, "price_pct"] = 0.0
    df = events.merge(listings, on="listing_id")
    df["w"] = df["event_type"].map(weights)
    df = df[df["w"] > 0]
    age = (pd.Timestamp(cutoff) - df["occurred_at"]).dt.total_seconds() / 86400
    df["v"] = df["w"] * 0.5 ** (age / 14)
    total = df.groupby("user_id")["v"].sum()
    cat = df.groupby(["user_id", "category_id"])["v"].sum() / total
    city = df.groupby(["user_id", "city"])["v"].sum() / total
    priced = df[df["price_pct"].notna()]
    price = (priced["v"] * priced["price_pct"]).groupby(priced["user_id"]).sum() / priced.groupby("user_id")[
        "v"
    ].sum()
    features = pd.DataFrame({"activity_score": 1 - np.exp(-total / 10), "price_sensitivity": price})
    features["category_affinity"] = cat.groupby(level=0).apply(lambda s: s.droplevel(0).to_dict())
    features["city_affinity"] = city.groupby(level=0).apply(lambda s: s.droplevel(0).to_dict())
    assert len(features) > 0
    return time.perf_counter() - started


PERCENTILE_CHURN_SQL = """
with before as (
    select listing_id, percent_rank() over (partition by category_id order by price) as pct
    from raw.listings where price is not null and created_at < %(previous)s::timestamptz
),
after as (
    select listing_id, percent_rank() over (partition by category_id order by price) as pct
    from raw.listings where price is not null and created_at < %(cutoff)s::timestamptz
),
moved as (
    select a.listing_id from after a join before b using (listing_id) where a.pct <> b.pct
),
window_pairs as (
    select distinct user_id, listing_id from features.int_user_listing_daily
    where event_day >= %(cutoff)s::date - 90 and event_day < %(cutoff)s::date
)
select
    (select count(*) from moved)::float8 / (select count(*) from before),
    (select count(*) from window_pairs where listing_id in (select listing_id from moved))::float8
        / (select count(*) from window_pairs),
    (select count(*) from after) - (select count(*) from before)
"""

# Every exact daily run recomputes the percentiles (a new listing moves those of its category).
PERCENTILE_RECOMPUTE_SQL = """
create temp table bench_price_pct as
select listing_id, percent_rank() over (partition by category_id order by price)::float8 as price_pct
from raw.listings where price is not null
"""

# What every exact daily run must redo: each window (user, listing) rollup weighted by today's
# percentile of its listing, summed per user (the price_sensitivity numerator and denominator).
EXACT_PRICE_PASS_SQL = """
create temp table bench_price_pass as
select r.user_id,
       sum(power(0.5::float8, (%(cutoff)s::date - r.event_day - 1) / 14.0) * r.exp_weight_at_day_end * l.price_pct)
           as price_pct_weighted,
       sum(power(0.5::float8, (%(cutoff)s::date - r.event_day - 1) / 14.0) * r.exp_weight_at_day_end)
           filter (where l.price_pct is not null) as priced_weight
from features.int_user_listing_daily r
join features.listing_features l on l.listing_id = r.listing_id
where r.event_day >= %(cutoff)s::date - 90 and r.event_day < %(cutoff)s::date
group by r.user_id
"""

# Writing one more snapshot of every user into the history (rolled back afterwards).
SNAPSHOT_WRITE_SQL = """
insert into features.user_features_history
select user_id, category_affinity, city_affinity, price_sensitivity, activity_score,
       as_of + interval '1 day', now()
from features.user_features
"""


FLOOR_STEPS = {
    "percentile_recompute_seconds": PERCENTILE_RECOMPUTE_SQL,
    "exact_price_pass_seconds": EXACT_PRICE_PASS_SQL,
    "snapshot_write_seconds": SNAPSHOT_WRITE_SQL,
}


def _timed_and_rolled_back(database_url: str, sql: str, params: dict) -> float:
    conn = pg_connect(database_url)
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            cur.execute(sql, params)
            return time.perf_counter() - started
    finally:
        conn.rollback()
        conn.close()


def _exact_daily_floor(database_url: str, cutoff: datetime, runs: int) -> dict[str, float]:
    """Why an exact next-day run cannot drop below a fixed share of the full recompute.

    semantics §4 ranks a listing's price among the priced listings of its category, so each new
    listing moves the percentile of every dearer listing in its category. Measured on the data:
    the share of listings whose percentile changes from T-1 to T, the share of the window's
    (user, listing) pairs on such a listing, and the best time of each of the three steps an exact
    daily run must execute whatever its design (``FLOOR_STEPS``).
    """
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute(PERCENTILE_CHURN_SQL, {"cutoff": cutoff, "previous": cutoff - timedelta(days=1)})
        moved_share, pairs_share, new_listings = cur.fetchone()
    conn.close()
    steps = {
        name: min(_timed_and_rolled_back(database_url, sql, {"cutoff": cutoff}) for _ in range(max(2, runs)))
        for name, sql in FLOOR_STEPS.items()
    }
    return {
        "new_priced_listings_per_day": int(new_listings),
        "listings_with_moved_price_pct_share": moved_share,
        "window_pairs_on_moved_listings_share": pairs_share,
        **steps,
        "exact_daily_floor_seconds": sum(steps.values()),
    }


def run(scale: str, runs: int, workdir: Path) -> Path:
    database_url = bench_database(scale)
    last = last_event_time(database_url)
    next_day = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    cutoff = next_day - timedelta(days=1)  # the partition before the last, so "the next day" exists

    reference = min(_reference_seconds(database_url, cutoff) for _ in range(max(1, runs)))
    full_runs = [_dbt_run(database_url, cutoff, full_refresh=True) for _ in range(max(1, runs))]
    full_sql, full_wall, full_models = min(full_runs, key=lambda r: r[0])
    incremental_sql, incremental_wall, incremental_models = _dbt_run(
        database_url, next_day, full_refresh=False
    )
    reference_after = _reference_seconds(database_url, cutoff)  # same moment as the dbt runs: cache-fair
    reference = min(reference, reference_after)
    pandas_seconds = _pandas_seconds(database_url, cutoff)
    floor = _exact_daily_floor(database_url, next_day, runs)
    floor_seconds = floor["exact_daily_floor_seconds"]

    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("select count(*) from raw.user_interactions")
        events = cur.fetchone()[0]
        cur.execute("select count(*) from features.user_features")
        users = cur.fetchone()[0]
        cur.execute("select count(*) from features.int_user_listing_daily")
        rollup_rows = cur.fetchone()[0]
    conn.close()

    ratios = {
        "full_recompute_vs_reference_query": full_sql / reference,
        "incremental_vs_full_recompute": incremental_sql / full_sql,
        "naive_pandas_vs_full_recompute": pandas_seconds / full_sql,
        "exact_daily_floor_vs_full_recompute": floor_seconds / full_sql,
        # the fastest full recompute the first target allows is 1.5x the reference: when the floor
        # exceeds 0.15 of that, no exact design can meet both targets on this data
        "exact_daily_floor_vs_fastest_allowed_full_recompute": floor_seconds / (1.5 * reference),
    }
    metrics = {
        "raw_events": events,
        "users_with_features": users,
        "rollup_rows": rollup_rows,
        "reference_query_seconds": reference,
        "full_recompute_seconds": full_sql,
        "full_recompute_wall_seconds_with_dbt_startup": full_wall,
        "incremental_seconds": incremental_sql,
        "incremental_wall_seconds_with_dbt_startup": incremental_wall,
        "naive_pandas_seconds": pandas_seconds,
        **floor,
        **{f"full_model_seconds.{k}": v for k, v in full_models.items()},
        **{f"incremental_model_seconds.{k}": v for k, v in incremental_models.items()},
    }
    targets = [
        target("full recompute / reference query", ratios["full_recompute_vs_reference_query"], "<= 1.5"),
        target("daily incremental / full recompute", ratios["incremental_vs_full_recompute"], "<= 0.15"),
    ]
    return write_result(
        "features",
        scale,
        metrics,
        ratios,
        targets,
        notes=f"Partition cutoff {cutoff:%Y-%m-%d}, incremental {next_day:%Y-%m-%d}; "
        "dbt model SQL times from run_results.json. exact_daily_floor: the percentile recompute, the "
        "percentile-weighted pass over the window's pairs and one snapshot write, which any exact "
        "next-day run executes (see docs/feature_pipeline.md).",
    )
