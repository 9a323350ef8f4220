{#
  Per (listing, UTC day): how many impressions, views, favourites and contacts the listing got that
  day. The building block of the listing_engagement view: a partition T sums the days of its window
  [T - window_days, T), so a daily run reads one day of raw events (same rebuild rule as
  int_user_listing_daily: macros/rollup_days.sql, late-arriving days rebuilt).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_day',
        on_schema_change='fail',
        unlogged=true,
        indexes=[{'columns': ['event_day']}],
    )
}}

{% set ranges = rollup_rebuild_ranges() %}

with events as (
    select
        listing_id,
        event_type,
        (occurred_at at time zone 'UTC')::date as event_day
    from {{ ref('stg_user_interactions') }}
    where {{ in_rebuild_ranges('occurred_at', ranges) }}
),

daily as (
    select
        listing_id,
        event_day,
        count(*) filter (where event_type = 'impression')::integer as impressions,
        count(*) filter (where event_type = 'listing_viewed')::integer as views,
        count(*) filter (where event_type = 'listing_favorited')::integer as favourites,
        count(*) filter (where event_type = 'listing_contact_clicked')::integer as contacts
    from events
    group by listing_id, event_day
)

select * from daily
