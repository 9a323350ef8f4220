"""Feature pipeline speed at one scale, measured side by side in one run.

- reference: hand-written SQL over the window, straight from raw events (float8), timed whole:
  each event's listing as of its day end with its price percentile among the category's listings
  live then (one ranking per day end), then one grouped aggregation of the decayed category sums
  and the frozen-percentile sums of price_sensitivity. The aggregation alone is reported too;
- full recompute of a partition: every dbt model with ``--full-refresh`` (rollups from raw events,
  the listing versions, the snapshot; the category price lists keep their days, see
  int_category_price_ranks);
- next-day run: the following partition, exponential decay (only the users whose window changed
  are recomputed) and linear decay (the whole window from the rollups);
- backfill: every partition of the data (120 days at scale s) as a Dagster range run executes them:
  the first day alone (a full refresh), then the rest in one dbt invocation, from an empty feature
  schema (a new deployment's first backfill);
- naive pandas: what a ``daily_feature_update.py`` job would do (read the window, group by);
- the listing history: bytes per listing-day of the compact form (versions + one sorted price list
  per category and day) beside a plain daily copy of every listing row, and one as-of lookup of
  100k (listing, partition) pairs in each.
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
from bench.database import bench_database, event_time_span
from fs_platform.features.partition_run import partition_run
from fs_platform.infra.dbt import DBT_PROJECT_DIR, dbt_executable
from fs_platform.infra.runtime import pg_connect, pg_env

# The reference's first half, timed with it: each (listing, day) of the window's weighted events
# with the listing as of the day's end E and its price percentile among the category's priced
# listings live at E, as an analyst would write it (rank the live listings of every day end).
LISTING_DAY_SQL = """
drop table if exists bench_listing_day;
create table bench_listing_day as
with pairs as (
    select distinct listing_id, (occurred_at at time zone 'UTC')::date as event_day
    from raw.user_interactions
    where occurred_at >= %(cutoff)s::timestamptz - interval '90 days' and occurred_at < %(cutoff)s::timestamptz
      and event_type <> 'impression'
),
live as (
    select d.event_day, v.listing_id, v.category_id, v.city, v.price
    from (select distinct event_day from pairs) d
    join staging.stg_listing_versions v
      on v.valid_from < ((d.event_day + 1)::timestamp at time zone 'UTC')
     and (v.valid_to is null or v.valid_to >= ((d.event_day + 1)::timestamp at time zone 'UTC'))
     and v.live_from < ((d.event_day + 1)::timestamp at time zone 'UTC')
),
ranked as (
    select event_day, listing_id,
           percent_rank() over (partition by event_day, category_id order by price)::float8 as price_pct
    from live where price is not null
)
select p.listing_id, p.event_day, l.category_id, l.city, r.price_pct
from pairs p
join live l on l.listing_id = p.listing_id and l.event_day = p.event_day
left join ranked r on r.listing_id = p.listing_id and r.event_day = p.event_day;
create unique index on bench_listing_day (listing_id, event_day);
analyze bench_listing_day;
"""

REFERENCE_SQL = """
create temp table bench_reference as
with weighted as (
    select e.user_id, d.category_id, d.price_pct,
           (case e.event_type when 'listing_viewed' then 1.0 when 'listing_favorited' then 3.0
                 when 'listing_contact_clicked' then 5.0 else 0.0 end)::float8
           * power(0.5::float8, (extract(epoch from (%(cutoff)s::timestamptz - e.occurred_at))::float8 / 86400.0) / 14.0)
               as v
    from raw.user_interactions e
    join bench_listing_day d on d.listing_id = e.listing_id and d.event_day = (e.occurred_at at time zone 'UTC')::date
    where e.occurred_at >= %(cutoff)s::timestamptz - interval '90 days' and e.occurred_at < %(cutoff)s::timestamptz
      and e.event_type <> 'impression'
)
select user_id, category_id, sum(v) as decayed_weight, sum(v * price_pct) as price_weighted,
       sum(v) filter (where price_pct is not null) as priced_weight
from weighted
group by user_id, category_id
"""


def _reference_seconds(database_url: str, cutoff: datetime) -> tuple[float, float]:
    """(percentiles at the day ends + aggregation, aggregation alone) of the hand-written reference."""
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(LISTING_DAY_SQL, {"cutoff": cutoff})
        conn.commit()
        prepared = time.perf_counter()
        cur.execute(REFERENCE_SQL, {"cutoff": cutoff})
        finished = time.perf_counter()
        cur.execute("drop table bench_reference")
    conn.rollback()
    conn.close()
    return finished - started, finished - prepared


def _dbt_run(
    database_url: str,
    cutoff: datetime,
    full_refresh: bool,
    overrides: dict | None = None,
    range_start: datetime | None = None,
) -> tuple[float, float, dict]:
    run = partition_run(
        cutoff.date(),
        command="run",
        overrides=overrides,
        full_refresh=full_refresh,
        extra_args=["--profiles-dir", ".", "--target-path", "target/bench", "--quiet"],
        range_start=range_start.date() if range_start else None,
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


#: the feature view added after the reference was written: its models run in the same
#: daily dbt invocation, so the figures are reported with it and without it
LATER_VIEW = "listing_engagement"


def models_only_for(view: str, manifest_path: Path) -> set[str]:
    """Names of the models that only ``view`` (and its history) needs: in their lineage and in no
    other model's, from dbt's manifest."""
    manifest = json.loads(manifest_path.read_text())
    parents = manifest["parent_map"]
    models = {k for k in manifest["nodes"] if k.startswith("model.")}

    def lineage(node: str) -> set[str]:
        seen, stack = set(), [node]
        while stack:
            for parent in parents.get(stack.pop(), []):
                if parent in models and parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    roots = {m for m in models if m.split(".")[-1] in (view, f"{view}_history")}
    theirs = set(roots).union(*(lineage(r) for r in roots))
    others = set().union(*(lineage(m) | {m} for m in models - theirs))
    return {m.split(".")[-1] for m in theirs - others}


def without_models(per_model: dict[str, float], names: set[str]) -> float:
    """Sum of the models' SQL times, leaving out ``names`` (and dbt's run clock)."""
    return sum(v for k, v in per_model.items() if k != "run_elapsed" and k not in names)


def _pandas_seconds(database_url: str, cutoff: datetime) -> float:
    """A straightforward pandas job: load the window, weight, decay, group, normalise."""
    started = time.perf_counter()
    conn = pg_connect(database_url)
    events = pd.read_sql(
        "select user_id::text, listing_id::text, event_type, occurred_at, "
        "(occurred_at at time zone 'UTC')::date as event_day from raw.user_interactions "
        "where occurred_at >= %(c)s::timestamptz - interval '90 days' and occurred_at < %(c)s::timestamptz",
        conn,
        params={"c": cutoff},
    )
    listing_days = pd.read_sql(
        "select listing_id::text, event_day, category_id, city, price_pct from bench_listing_day", conn
    )
    conn.close()
    weights = {
        "impression": 0.0,
        "listing_viewed": 1.0,
        "listing_favorited": 3.0,
        "listing_contact_clicked": 5.0,
    }
    df = events.merge(listing_days, on=["listing_id", "event_day"])
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


# The plain daily copy: every listing live at every partition with its item features, built by one
# ranking per partition (reading listing_features_history row by row would unpack a category's price
# list for each of the ~10M rows: tens of minutes).
DAILY_COPY_SQL = """
create table bench_listing_daily_copy as
with live as (
    select p.as_of, v.listing_id, v.category_id, v.category_key, v.city, v.price, v.is_premium,
           v.image_count, v.live_from
    from (select distinct as_of from features.int_category_price_ranks) p
    join staging.stg_listing_versions v
      on v.valid_from < p.as_of and (v.valid_to is null or v.valid_to >= p.as_of) and v.live_from < p.as_of
)
select listing_id, as_of, category_id, city, price::float8 as price,
       case when price is not null then
           percent_rank() over (partition by as_of, category_key, price is null order by price::float8)
       end as price_pct,
       is_premium, image_count, live_from as created_at
from live
"""


def _listing_history_sizes(database_url: str) -> dict[str, float]:
    """The compact listing history beside a plain daily copy: bytes per listing-day, and one as-of
    lookup of 100k (listing, partition) pairs in each."""
    conn = pg_connect(database_url)
    conn.autocommit = True
    out: dict[str, float] = {}
    with conn.cursor() as cur:
        cur.execute(
            "select pg_total_relation_size('staging.stg_listing_versions') "
            "+ pg_total_relation_size('features.int_category_price_ranks'), "
            "(select count(distinct as_of) from features.int_category_price_ranks)"
        )
        compact_bytes, partitions = cur.fetchone()
        started = time.perf_counter()
        cur.execute(
            "drop table if exists bench_listing_daily_copy; " + DAILY_COPY_SQL + "; "
            "alter table bench_listing_daily_copy add primary key (listing_id, as_of); "
            "analyze bench_listing_daily_copy"
        )
        out["daily_copy_build_seconds"] = time.perf_counter() - started
        cur.execute(
            "select count(*), pg_total_relation_size('bench_listing_daily_copy') from bench_listing_daily_copy"
        )
        listing_days, copy_bytes = cur.fetchone()
        cur.execute(
            "drop table if exists bench_lookup; create table bench_lookup as "
            "select listing_id, as_of from bench_listing_daily_copy order by random() limit 100000; analyze bench_lookup"
        )
        lookups = {
            # the compact form as listing_features_history states it (one binary search per row)
            "compact": """
                select count(*), sum(case when v.price is null or k.priced_listings = 0 then null
                     when k.priced_listings = 1 then 0::float8
                     else width_bucket(v.price::float8 - 0.005, k.prices)::float8 / (k.priced_listings - 1) end)
                from bench_lookup q
                join staging.stg_listing_versions v on v.listing_id = q.listing_id
                 and v.valid_from < q.as_of and (v.valid_to is null or v.valid_to >= q.as_of) and v.live_from < q.as_of
                left join features.int_category_price_ranks k on k.as_of = q.as_of and k.category_id = v.category_id""",
            "daily_copy": """
                select count(*), sum(c.price_pct) from bench_lookup q
                join bench_listing_daily_copy c on c.listing_id = q.listing_id and c.as_of = q.as_of""",
        }
        answers = {}
        for name, sql in lookups.items():
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                cur.execute(sql)
                answers[name] = cur.fetchone()
                best = min(best, time.perf_counter() - started)
            out[f"asof_lookup_100k_{name}_seconds"] = best
        assert answers["compact"][0] == answers["daily_copy"][0] == 100_000, answers
        assert abs((answers["compact"][1] or 0) - (answers["daily_copy"][1] or 0)) < 1e-6 * 100_000, answers
        cur.execute("drop table bench_lookup; drop table bench_listing_daily_copy")
    conn.close()
    out.update(
        {
            "listing_partitions": partitions,
            "listing_days": listing_days,
            "listing_history_compact_bytes": compact_bytes,
            "listing_history_daily_copy_bytes": copy_bytes,
            "listing_history_compact_bytes_per_listing_day": compact_bytes / listing_days,
            "listing_history_daily_copy_bytes_per_listing_day": copy_bytes / listing_days,
        }
    )
    return out


def _drop_dbt_schemas(database_url: str) -> None:
    """Start from what a new deployment has: raw data and no dbt-built relation. Tables that survive
    --full-refresh (the snapshot history, the price lists) would otherwise carry the previous
    benchmark's rows and dead tuples into the backfill being timed."""
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("drop schema if exists staging cascade; drop schema if exists features cascade")
    conn.commit()
    conn.close()


def run(scale: str, runs: int, workdir: Path) -> Path:
    database_url = bench_database(scale)
    first_event, last = event_time_span(database_url)
    _drop_dbt_schemas(database_url)
    next_day = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    cutoff = next_day - timedelta(days=1)  # the partition before the last, so "the next day" exists

    # backfill: every partition of the data, as the Dagster range run does it (the first day alone,
    # then the rest in one dbt invocation)
    # the first partition with any event in its window: the day after the first event's day
    first = datetime(first_event.year, first_event.month, first_event.day, tzinfo=UTC) + timedelta(days=1)
    backfill_days = (cutoff - first).days + 1
    backfill_first = _dbt_run(database_url, first, full_refresh=True)
    backfill_rest = _dbt_run(database_url, cutoff, full_refresh=False, range_start=first + timedelta(days=1))
    full_runs = [_dbt_run(database_url, cutoff, full_refresh=True) for _ in range(max(1, runs))]
    full_sql, full_wall, full_models = min(full_runs, key=lambda r: r[0])
    references = [_reference_seconds(database_url, cutoff) for _ in range(max(2, runs))]
    next_sql, next_wall, next_models = _dbt_run(database_url, next_day, full_refresh=False)
    references.append(_reference_seconds(database_url, cutoff))  # cache-fair: same moment
    reference = min(r[0] for r in references)
    aggregation_only = min(r[1] for r in references)
    linear = {"decay_kind": "linear"}
    linear_full_sql, _, _ = _dbt_run(database_url, cutoff, full_refresh=True, overrides=linear)
    linear_next_sql, linear_next_wall, _ = _dbt_run(
        database_url, next_day, full_refresh=False, overrides=linear
    )
    _dbt_run(database_url, next_day, full_refresh=False)  # leave the exponential snapshot behind
    pandas_seconds = _pandas_seconds(database_url, cutoff)
    listing_history = _listing_history_sizes(database_url)

    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("select count(*) from raw.user_interactions")
        events = cur.fetchone()[0]
        cur.execute("select count(*) from features.user_features")
        users = cur.fetchone()[0]
        cur.execute("select count(*) from features.int_user_listing_daily")
        rollup_rows = cur.fetchone()[0]
        cur.execute("drop table if exists bench_listing_day")
    conn.commit()
    conn.close()

    later_view_models = models_only_for(LATER_VIEW, DBT_PROJECT_DIR / "target/bench/manifest.json")
    full_without = without_models(full_models, later_view_models)
    next_without = without_models(next_models, later_view_models)

    backfill_wall = backfill_first[1] + backfill_rest[1]
    backfill_sql = backfill_first[0] + backfill_rest[0]
    ratios = {
        "full_recompute_vs_reference_query": full_sql / reference,
        "full_recompute_vs_reference_aggregation_only": full_sql / aggregation_only,
        "next_day_vs_reference_query": next_sql / reference,
        "next_day_linear_vs_reference_query": linear_next_sql / reference,
        "next_day_vs_full_recompute": next_sql / full_sql,
        f"full_recompute_without_{LATER_VIEW}_vs_reference_query": full_without / reference,
        f"next_day_without_{LATER_VIEW}_vs_reference_query": next_without / reference,
        "backfill_wall_vs_full_recompute_wall": backfill_wall / full_wall,
        "backfill_model_time_vs_full_recompute": backfill_sql / full_sql,
        "naive_pandas_vs_full_recompute": pandas_seconds / full_sql,
        "listing_history_daily_copy_vs_compact_bytes": listing_history["listing_history_daily_copy_bytes"]
        / listing_history["listing_history_compact_bytes"],
    }
    metrics = {
        "raw_events": events,
        "users_with_features": users,
        "rollup_rows": rollup_rows,
        "reference_query_seconds": reference,
        "reference_aggregation_only_seconds": aggregation_only,
        "full_recompute_seconds": full_sql,
        "full_recompute_wall_seconds_with_dbt_startup": full_wall,
        "next_day_seconds": next_sql,
        "next_day_wall_seconds_with_dbt_startup": next_wall,
        f"full_recompute_without_{LATER_VIEW}_seconds": full_without,
        f"next_day_without_{LATER_VIEW}_seconds": next_without,
        "linear_full_recompute_seconds": linear_full_sql,
        "linear_next_day_seconds": linear_next_sql,
        "linear_next_day_wall_seconds_with_dbt_startup": linear_next_wall,
        "backfill_partitions": backfill_days,
        "backfill_seconds": backfill_sql,
        "backfill_wall_seconds_with_dbt_startup": backfill_wall,
        "backfill_first_day_wall_seconds": backfill_first[1],
        "naive_pandas_seconds": pandas_seconds,
        **listing_history,
        **{f"full_model_seconds.{k}": v for k, v in full_models.items()},
        **{f"next_day_model_seconds.{k}": v for k, v in next_models.items()},
        **{f"backfill_range_model_seconds.{k}": v for k, v in backfill_rest[2].items()},
    }
    targets = [
        target("full recompute / reference query", ratios["full_recompute_vs_reference_query"], "<= 1.5"),
        target(
            "next-day run (exponential) / reference query", ratios["next_day_vs_reference_query"], "<= 0.2"
        ),
        target(
            f"backfill of all {backfill_days} partitions / one full recompute (wall)",
            ratios["backfill_wall_vs_full_recompute_wall"],
            "<= 5",
        ),
    ]
    return write_result(
        "features",
        scale,
        metrics,
        ratios,
        targets,
        notes=f"Partition cutoff {cutoff:%Y-%m-%d}, next day {next_day:%Y-%m-%d}; dbt model SQL times from "
        f"run_results.json. Backfill: partitions {first:%Y-%m-%d}..{cutoff:%Y-%m-%d} measured whole (the first "
        "day alone with --full-refresh, the rest in one dbt invocation), wall times with dbt's start-up. "
        "Listing history: the compact form "
        "(versions + sorted price lists) against a plain daily copy of listing_features_history.",
    )
