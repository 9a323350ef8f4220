{#
  The listing_engagement features of the listings live at `at` (a column or literal), from the daily
  counts of int_listing_engagement_daily in the window [at - window_days, at): each day's counts
  decayed from its day end E by 0.5^((at - E)/half_life_days), and the rates smoothed towards a prior
  (var engagement_prior: rate, strength in pseudo-events) so a listing with few views is not ranked
  by noise. `partitions` is a relation with one `as_of` per row.
#}
{% macro listing_engagement_at(partitions) -%}
    {%- set prior = var('engagement_prior') -%}
    {%- set half_life = var('half_life_days') | float -%}
    {%- set strength = prior['strength'] | float -%}
    with partitions as (
        select distinct as_of from {{ partitions }}
    ),

    -- the decay of each day of each partition's window, computed once per (partition, day) rather
    -- than once per daily row (the epoch arithmetic and power() per row were most of the run)
    day_decay as materialized (
        select
            p.as_of,
            g.day::date as event_day,
            power(
                0.5::double precision,
                {{ days_between('p.as_of', "((g.day::date + 1)::timestamp at time zone 'UTC')") }} / {{ half_life }}
            ) as decay
        from partitions as p
        cross join lateral generate_series(
            ((p.as_of at time zone 'UTC')::date - {{ window_days() }})::timestamp,
            ((p.as_of at time zone 'UTC')::date - 1)::timestamp,
            interval '1 day'
        ) as g(day)
    ),

    decayed as (
        select
            f.as_of,
            d.listing_id,
            sum(d.impressions * f.decay) as impressions,
            sum(d.views * f.decay) as views,
            sum(d.favourites * f.decay) as favourites,
            sum(d.contacts * f.decay) as contacts
        from day_decay as f
        inner join {{ ref('int_listing_engagement_daily') }} as d on d.event_day = f.event_day
        group by f.as_of, d.listing_id
    ),

    live as (
        select p.as_of, v.listing_id
        from partitions as p
        inner join {{ ref('stg_listing_versions') }} as v on {{ version_in_force('v', 'p.as_of') }}
    )

    select
        l.listing_id,
        l.as_of,
        coalesce(e.impressions, 0)::double precision as decayed_impressions,
        coalesce(e.views, 0)::double precision as decayed_views,
        coalesce(e.favourites, 0)::double precision as decayed_favourites,
        coalesce(e.contacts, 0)::double precision as decayed_contacts,
        ((coalesce(e.views, 0) + {{ strength }} * {{ prior['view_rate'] | float }})
            / (coalesce(e.impressions, 0) + {{ strength }}))::double precision as view_rate,
        ((coalesce(e.contacts, 0) + coalesce(e.favourites, 0) + {{ strength }} * {{ prior['engagement_rate'] | float }})
            / (coalesce(e.views, 0) + {{ strength }}))::double precision as engagement_rate
    from live as l
    left join decayed as e on e.listing_id = l.listing_id and e.as_of = l.as_of
{%- endmacro %}
