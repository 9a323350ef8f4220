{#
  Per (user, listing, UTC day) rollup of weighted events (w > 0), decayed to the day's end E.
  Features for any cutoff T are exact functions of these sums (DESIGN §4), so a daily run reads
  one day of raw events instead of the whole window.

  Incremental: rebuilds the days in the window that are not yet rolled up (first run, a gap,
  a backfill further back) plus the last `late_arrival_days` days before T. Changing
  `half_life_days` or `event_weights` requires `--full-refresh` (the sums embed them).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_day',
        on_schema_change='fail',
        indexes=[{'columns': ['event_day']}],
    )
}}

{% set window_start %}({{ cutoff_ts() }} - interval '{{ window_days() }} days'){% endset %}

with bounds as (
    {% if is_incremental() %}
    select
        min(event_day) as first_day,
        max(event_day) as last_day
    from {{ this }}
    {% else %}
    select null::date as first_day, null::date as last_day
    {% endif %}
),

events as (
    select
        e.user_id,
        e.listing_id,
        e.event_type,
        e.occurred_at,
        (e.occurred_at at time zone 'UTC')::date as event_day
    from {{ ref('stg_user_interactions') }} as e
    cross join bounds as b
    where e.occurred_at >= {{ window_start }}
      and e.occurred_at < {{ cutoff_ts() }}
      and (
          b.last_day is null
          or e.occurred_at >= ((b.last_day + 1 - {{ var('late_arrival_days') | int }})::timestamp at time zone 'UTC')
          or e.occurred_at < (b.first_day::timestamp at time zone 'UTC')
      )
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
)

select * from rolled_up
