{#
  listing_engagement of every listing live at the latest partition T: what the online store serves.
  The settled days of the window come summed from int_listing_engagement_settled (carried from the
  previous partition); only the last late_arrival_days days, which this run's rollup rebuilt, are
  added here. listing_engagement_history answers T from the whole window: the same sums, added in
  another order (equal to ~1e-15, tested).
#}
{%- set late = var('late_arrival_days') | int %}

with partition_cutoff as (
    select {{ cutoff_ts() }} as as_of, {{ cutoff_day() }} as cutoff_day
),

recent_days as materialized (
    select g.day::date as event_day, {{ day_end_decay('c.as_of', 'g.day::date') }} as decay
    from partition_cutoff as c
    cross join lateral generate_series(
        greatest(c.cutoff_day - {{ late }}, c.cutoff_day - {{ window_days() }})::timestamp,
        (c.cutoff_day - 1)::timestamp,
        interval '1 day'
    ) as g(day)
),

recent as (
    {{ engagement_day_sums('recent_days', few_days=true) }}
),

decayed as (
    select
        coalesce(s.listing_id, r.listing_id) as listing_id,
        coalesce(s.decayed_impressions, 0) + coalesce(r.decayed_impressions, 0) as impressions,
        coalesce(s.decayed_views, 0) + coalesce(r.decayed_views, 0) as views,
        coalesce(s.decayed_favourites, 0) + coalesce(r.decayed_favourites, 0) as favourites,
        coalesce(s.decayed_contacts, 0) + coalesce(r.decayed_contacts, 0) as contacts
    from {{ ref('int_listing_engagement_settled') }} as s
    full outer join recent as r on r.listing_id = s.listing_id
),

live as (
    select c.as_of, v.listing_id
    from partition_cutoff as c
    inner join {{ ref('stg_listing_versions') }} as v on {{ version_in_force('v', 'c.as_of') }}
),

final as (
    select
        l.listing_id,
        l.as_of,
        {{ engagement_features('e.impressions', 'e.views', 'e.favourites', 'e.contacts') }}
    from live as l
    left join decayed as e on e.listing_id = l.listing_id
)

select * from final
