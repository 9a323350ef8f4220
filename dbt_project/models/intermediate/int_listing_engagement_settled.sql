{#
  Per listing, at the partition cutoff T: the counts and decayed sums of the settled days of its
  window, [T - window_days, T - late_arrival_days). A settled day is one no later run rebuilds: the
  daily rollup only ever re-derives the late-arrival days after the newest day it holds (and days
  older than its oldest), so these sums can be carried from one partition to the next instead of
  re-adding ~window_days days of counts per listing (3.9M rows at scale s) every day.

  Carried (previous partition Tp <= T, same knobs, settled_engagement_carry_from): the previous sums,
  decayed by 0.5^((T - Tp)/h), minus the days that left the window, plus the days that settled since.
  Exponential decay makes this exact up to rounding (the same products in another order: matches
  the whole-window sums to ~1e-15, tested); a count back to zero gives exactly zero. Otherwise
  (first run, --full-refresh, a backfill behind the stored partition, a gap of most of the window,
  changed knobs) the settled window is summed from the daily counts.

  A table rebuilt whole on each run: the new rows are written beside the old ones and swapped in,
  so a failed run leaves the previous partition's sums. Unlogged: a crash empties it and the next
  run sums the whole window again. The knobs are stored on every row so a change is noticed.
#}
{{ config(materialized='table', unlogged=true) }}

{%- set window = window_days() | trim | int -%}
{%- set late = var('late_arrival_days') | int -%}
{%- set half_life = var('half_life_days') | float -%}
{%- set carry_from = settled_engagement_carry_from(window, late, half_life) -%}
{%- set counts = ['impressions', 'views', 'favourites', 'contacts'] %}

with partition_cutoff as (
    select {{ cutoff_ts() }} as as_of, {{ cutoff_day() }} as cutoff_day
),

{% if carry_from %}
previous as (
    select {{ carry_from }} as as_of, ({{ carry_from }} at time zone 'UTC')::date as cutoff_day
),

-- the days that left the settled window since Tp (-1) and the days that settled into it (+1);
-- disjoint, as Tp is fewer than window_days - late_arrival_days days back
moved_days as (
    select g.day::date as event_day, -1 as sign
    from previous as p
    cross join partition_cutoff as c
    cross join lateral generate_series(
        (p.cutoff_day - {{ window }})::timestamp, (c.cutoff_day - {{ window }} - 1)::timestamp, interval '1 day'
    ) as g(day)
    union all
    select g.day::date as event_day, 1 as sign
    from previous as p
    cross join partition_cutoff as c
    cross join lateral generate_series(
        (p.cutoff_day - {{ late }})::timestamp, (c.cutoff_day - {{ late }} - 1)::timestamp, interval '1 day'
    ) as g(day)
),

day_weights as materialized (
    select m.event_day, m.sign, m.sign * {{ day_end_decay('c.as_of', 'm.event_day') }} as decay
    from moved_days as m
    cross join partition_cutoff as c
),

changes as (
    {{ engagement_day_sums('day_weights', few_days=true, signed_counts=true) }}
),

carried as (
    select
        s.listing_id,
        {%- for name in counts %}
        s.{{ name }},
        s.decayed_{{ name }} * {{ decay_between('c.as_of', 'p.as_of') }} as decayed_{{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ this }} as s
    cross join partition_cutoff as c
    cross join previous as p
),

settled as (
    select
        listing_id,
        {%- for name in counts %}
        sum({{ name }})::bigint as {{ name }},
        sum(decayed_{{ name }}) as decayed_{{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from (
        select * from carried
        union all
        select * from changes
    ) as both_parts
    group by listing_id
),
{% else %}
settled_days as materialized (
    select g.day::date as event_day, 1 as sign, {{ day_end_decay('c.as_of', 'g.day::date') }} as decay
    from partition_cutoff as c
    cross join lateral generate_series(
        (c.cutoff_day - {{ window }})::timestamp, (c.cutoff_day - {{ late }} - 1)::timestamp, interval '1 day'
    ) as g(day)
),

settled as (
    {{ engagement_day_sums('settled_days', few_days=false, signed_counts=true) }}
),
{% endif %}

final as (
    select
        s.listing_id,
        c.as_of,
        {%- for name in counts %}
        s.{{ name }},
        case when s.{{ name }} = 0 then 0 else greatest(s.decayed_{{ name }}, 0) end::double precision
            as decayed_{{ name }},
        {%- endfor %}
        {{ window }} as window_days,
        {{ late }} as late_arrival_days,
        {{ half_life }}::double precision as half_life_days
    from settled as s
    cross join partition_cutoff as c
    where s.impressions + s.views + s.favourites + s.contacts > 0
)

select * from final
