{#
  Per (user, listing, UTC day) rollup of weighted events (w > 0), decayed to the day's end E, with
  the listing's category, city and price percentile frozen at E. Features for any cutoff T are exact
  functions of these rows (semantics §4), so a daily run reads one day of raw events instead of the
  whole window, and no listing table.

  Incremental: rebuilds the days in the window that are not yet rolled up (first run, days after
  the newest rolled-up day, a backfill further back than the oldest) plus the last
  `late_arrival_days` days before T. Changing `half_life_days` or `event_weights` requires
  `--full-refresh` (the sums embed them).

  Unlogged: the rollups are a cache derivable from raw events. Skipping the WAL halves the cost of
  reading a freshly rebuilt table (with data checksums, the first read's hint bits would otherwise
  be WAL-logged as full pages). A crash empties an unlogged table; the next run then finds no
  rolled-up day and rebuilds its whole window, so nothing is lost (tested).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_day',
        on_schema_change='fail',
        unlogged=true,
        indexes=[{'columns': ['event_day']}],
        pre_hook="set local enable_mergejoin = off",
    )
}}

{#- enable_mergejoin off (this model's transaction only): the window over the listings live at the day
    ends comes out sorted by day end, and with few rollup rows estimated (a daily run) PostgreSQL
    merge-joins on the day end alone and checks listing_id as a filter: every rollup row of a day
    against every listing of that day (minutes at scale s instead of a second). A hash join on
    (listing_id, day end) is the right plan at every size. -#}

{% set weighted_types = [] %}
{% for event_type, weight in var('event_weights').items() if weight | float > 0 %}
    {% do weighted_types.append(event_type) %}
{% endfor %}

{#- Which days to (re)build: macros/rollup_days.sql (one day of raw events on a daily run). -#}
{% set ranges = rollup_rebuild_ranges() %}

with events as (
    select
        user_id,
        listing_id,
        event_type,
        occurred_at,
        (occurred_at at time zone 'UTC')::date as event_day
    from {{ ref('stg_user_interactions') }}
    -- impressions weigh 0: drop them before any arithmetic
    where event_type in ({% for t in weighted_types %}'{{ t }}'{{ "," if not loop.last }}{% endfor %}{% if not weighted_types %}null{% endif %})
      and {{ in_rebuild_ranges('occurred_at', ranges) }}
),

weighted as (
    select
        user_id,
        listing_id,
        event_day,
        {{ event_weight('event_type') }} as weight,
        {{ days_between("((event_day + 1)::timestamp at time zone 'UTC')", 'occurred_at') }} as age_at_day_end
    from events
),

rolled_up as (
    select
        user_id,
        listing_id,
        event_day,
        sum(weight * power(0.5::double precision, age_at_day_end / {{ var('half_life_days') | float }}))
            as exp_weight_at_day_end,
        sum(weight) as weight_sum,
        sum(weight * age_at_day_end) as weight_age_sum,
        count(*)::integer as event_count
    from weighted
    where weight > 0
    group by user_id, listing_id, event_day
),

{#- The listing as the user saw it that day: its attributes and price percentile at the day's end E,
    frozen here for good (later listings and price changes never move them). The percentile is one
    window over the listings live at E (one sort per day end rolled up), not a lookup in the sorted
    price arrays: reading a large array once per row costs far more than sorting the day's listings.
    Unpriced listings form their own window partition (price_pct null), so the priced ones rank
    among themselves in the same pass; prices sort as float8 (two decimals: same order, faster).
    Events on a listing with no version in force at E (not yet live) carry no features and are dropped. #}
day_ends as (
    select distinct ((event_day + 1)::timestamp at time zone 'UTC') as day_end from rolled_up
),

listing_at_day_end as (
    select
        d.day_end,
        v.listing_id,
        v.category_id,
        v.city,
        case when v.price is not null then
            percent_rank() over (
                partition by d.day_end, v.category_key, v.price is null order by v.price::double precision
            )::double precision
        end as price_pct
    from day_ends as d
    inner join {{ ref('stg_listing_versions') }} as v on {{ version_in_force('v', 'd.day_end') }}
),

frozen_at_day_end as (
    select
        r.user_id,
        r.listing_id,
        r.event_day,
        r.exp_weight_at_day_end,
        r.weight_sum,
        r.weight_age_sum,
        r.event_count,
        l.category_id,
        l.city,
        l.price_pct
    from rolled_up as r
    inner join listing_at_day_end as l
        on l.listing_id = r.listing_id and l.day_end = ((r.event_day + 1)::timestamp at time zone 'UTC')
)

select * from frozen_at_day_end
