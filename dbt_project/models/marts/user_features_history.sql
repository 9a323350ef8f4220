{#
  One snapshot of every user's features per daily partition (as_of = cutoff T), built from the
  daily rollups of the window [T - window_days, T). Re-running a partition replaces its snapshot.
  `full_refresh=false`: a --full-refresh rebuilds the rollups from raw events but never wipes the
  other snapshots (drop the table by hand for a schema change).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of',
        on_schema_change='fail',
        full_refresh=false,
        indexes=[{'columns': ['as_of']}],
        post_hook="delete from {{ this }} where as_of < {{ cutoff_ts() }} - interval '{{ var('history_retention_days') | int }} days'",
    )
}}

with rollups as (
    select
        r.user_id,
        r.listing_id,
        r.exp_weight_at_day_end,
        r.weight_sum,
        r.weight_age_sum,
        {{ days_between(cutoff_ts(), "((r.event_day + 1)::timestamp at time zone 'UTC')") }} as days_to_cutoff
    from {{ ref('int_user_listing_daily') }} as r
    where r.event_day >= {{ cutoff_day() }} - {{ window_days() }}
      and r.event_day < {{ cutoff_day() }}
),

decayed as (
    select
        r.user_id,
        l.category_id,
        l.city,
        l.price_pct,
        {{ decayed_rollup_value('r.days_to_cutoff', 'r.exp_weight_at_day_end', 'r.weight_sum', 'r.weight_age_sum') }}
            as decayed_weight
    from rollups as r
    inner join {{ ref('listing_features') }} as l on l.listing_id = r.listing_id
),

-- one pass computes the per-category, per-city and per-user sums
sums as (
    select
        user_id,
        case
            when grouping(category_id) = 0 then 'category'
            when grouping(city) = 0 then 'city'
            else 'total'
        end as kind,
        coalesce(category_id, city) as affinity_key,
        sum(decayed_weight) as decayed_weight,
        sum(decayed_weight * price_pct) as price_pct_weighted,
        sum(decayed_weight) filter (where price_pct is not null) as priced_weight
    from decayed
    group by grouping sets ((user_id, category_id), (user_id, city), (user_id))
),

shares as (
    select
        user_id,
        kind,
        affinity_key,
        decayed_weight,
        price_pct_weighted,
        priced_weight,
        decayed_weight / nullif(max(decayed_weight) filter (where kind = 'total') over (partition by user_id), 0)
            as share
    from sums
),

per_user as (
    select
        user_id,
        coalesce(max(decayed_weight) filter (where kind = 'total'), 0) as total_weight,
        max(price_pct_weighted) filter (where kind = 'total') as price_pct_weighted,
        max(priced_weight) filter (where kind = 'total') as priced_weight,
        jsonb_object_agg(affinity_key, share) filter (where kind = 'category') as category_affinity,
        jsonb_object_agg(affinity_key, share) filter (where kind = 'city') as city_affinity
    from shares
    group by user_id
),

final as (
    select
        user_id::uuid as user_id,
        case when total_weight > 0 then category_affinity else '{}'::jsonb end as category_affinity,
        case when total_weight > 0 then city_affinity else '{}'::jsonb end as city_affinity,
        (price_pct_weighted / nullif(priced_weight, 0))::double precision as price_sensitivity,
        -- 1 - exp(-S/scale) rounds to 1.0 for S > ~37 * scale; clamp to the largest double below 1
        -- so the documented range [0, 1) holds (a change of at most 1.1e-16)
        least(1 - exp(-total_weight / {{ var('activity_scale') | float }}), 1 - 1.1102230246251565e-16)::double precision
            as activity_score,
        {{ cutoff_ts() }} as as_of,
        now() as last_updated_at
    from per_user
)

select * from final
