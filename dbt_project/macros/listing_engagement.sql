{#
  The listing_engagement features of the listings live at `at` (a column or literal), from the daily
  counts of int_listing_engagement_daily in the window [at - window_days, at): each day's counts
  decayed from its day end E by 0.5^((at - E)/half_life_days), and the rates smoothed towards a prior
  (var engagement_prior: rate, strength in pseudo-events) so a listing with few views is not ranked
  by noise. `partitions` is a relation with one `as_of` per row. This is the whole-window form that
  listing_engagement_history answers with; the latest partition (listing_engagement) adds the last
  late-arrival days to the settled sums of int_listing_engagement_settled instead.
#}
{% macro listing_engagement_at(partitions) -%}
    with partitions as (
        select distinct as_of from {{ partitions }}
    ),

    -- the decay of each day of each partition's window, computed once per (partition, day) rather
    -- than once per daily row (the epoch arithmetic and power() per row were most of the run)
    day_decay as materialized (
        select
            p.as_of,
            g.day::date as event_day,
            {{ day_end_decay('p.as_of', 'g.day::date') }} as decay
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
        {{ engagement_features('e.impressions', 'e.views', 'e.favourites', 'e.contacts') }}
    from live as l
    left join decayed as e on e.listing_id = l.listing_id and e.as_of = l.as_of
{%- endmacro %}

{# 0.5^((later - earlier)/half_life_days): how much a count at `earlier` weighs at `later`. #}
{% macro decay_between(later, earlier) -%}
    power(0.5::double precision, {{ days_between(later, earlier) }} / {{ var('half_life_days') | float }})
{%- endmacro %}

{# The weight at `at` of one day's counts: decayed from the day's end (UTC). #}
{% macro day_end_decay(at, day) -%}
    {{ decay_between(at, "((" ~ day ~ " + 1)::timestamp at time zone 'UTC')") }}
{%- endmacro %}

{# Per listing, the decayed sums (decayed_impressions, ...) of the daily counts of the days in
   `days` (a relation of distinct event_day, decay and, with signed_counts, sign: the plain counts
   times sign are summed too). Each day's weight is looked up by position in one array over the
   days' span instead of joined: the planner, not knowing how few days generate_series gives,
   hashed the whole rollup or merge-joined it through its index (8.0 s -> 4.5 s for a scale-s
   window). few_days: read only those days through the rollup's event_day index (the span of a
   carried partition covers the window, its days are two or three). #}
{% macro engagement_day_sums(days, few_days, signed_counts=false) -%}
    {%- set counts = ['impressions', 'views', 'favourites', 'contacts'] -%}
    select
        r.listing_id,
        {%- for name in counts %}
        {%- if signed_counts %}
        sum(r.sign * r.{{ name }})::bigint as {{ name }},
        {%- endif %}
        sum(r.decay * r.{{ name }}) as decayed_{{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from (
        select
            d.listing_id,
            {%- for name in counts %}
            d.{{ name }},
            {%- endfor %}
            {%- if signed_counts %}
            w.signs[d.event_day - w.first_day + 1] as sign,
            {%- endif %}
            w.decays[d.event_day - w.first_day + 1] as decay
        from (
            select
                min(s.day)::date as first_day,
                max(s.day)::date as last_day,
                array_agg(coalesce(x.decay, 0) order by s.day) as decays
                {%- if signed_counts %},
                array_agg(coalesce(x.sign, 0) order by s.day) as signs
                {%- endif %}
            from (select min(event_day) as low, max(event_day) as high from {{ days }}) as span
            cross join lateral generate_series(span.low::timestamp, span.high::timestamp, interval '1 day') as s(day)
            left join {{ days }} as x on x.event_day = s.day::date
        ) as w
        inner join {{ ref('int_listing_engagement_daily') }} as d
            on d.event_day >= w.first_day and d.event_day <= w.last_day
        {%- if few_days %}
        where d.event_day = any (array(select event_day from {{ days }}))
        {%- endif %}
    ) as r
    group by r.listing_id
{%- endmacro %}

{# The view's six feature columns from the four decayed sums (null = no event in the window). #}
{% macro engagement_features(impressions, views, favourites, contacts) -%}
    {%- set prior = var('engagement_prior') -%}
    {%- set strength = prior['strength'] | float -%}
    coalesce({{ impressions }}, 0)::double precision as decayed_impressions,
        coalesce({{ views }}, 0)::double precision as decayed_views,
        coalesce({{ favourites }}, 0)::double precision as decayed_favourites,
        coalesce({{ contacts }}, 0)::double precision as decayed_contacts,
        ((coalesce({{ views }}, 0) + {{ strength }} * {{ prior['view_rate'] | float }})
            / (coalesce({{ impressions }}, 0) + {{ strength }}))::double precision as view_rate,
        ((coalesce({{ contacts }}, 0) + coalesce({{ favourites }}, 0) + {{ strength }} * {{ prior['engagement_rate'] | float }})
            / (coalesce({{ views }}, 0) + {{ strength }}))::double precision as engagement_rate
{%- endmacro %}

{# The `as_of` of int_listing_engagement_settled's rows when the run for cutoff T can carry them
   forward, else none (the model then sums its whole settled window): the table holds one partition
   Tp <= T, built with today's knobs, fewer than window_days - late_arrival_days days back (further
   back every settled day has left the window), and this is not a --full-refresh. #}
{% macro settled_engagement_carry_from(window, late, half_life) -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set existing = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- if existing is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set rows = run_query(
        "select distinct as_of::text, window_days = " ~ window ~ " and late_arrival_days = " ~ late
        ~ " and half_life_days = " ~ half_life ~ " as same_knobs, "
        ~ cutoff_day() ~ " - (as_of at time zone 'UTC')::date as gap_days, as_of <= " ~ cutoff_ts() ~ " as not_later"
        ~ " from " ~ this
    ).rows -%}
    {%- if rows | length == 1 and rows[0][1] and rows[0][3] and rows[0][2] < window - late -%}
        {{ return("('" ~ rows[0][0] ~ "'::timestamptz)") }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}
