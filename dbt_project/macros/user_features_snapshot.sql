{#
  The select of one user_features_history snapshot with cutoff `cutoff` (a timestamptz SQL
  expression). `carry`: recompute only the users whose window changed since the snapshot of
  cutoff - 1 day (read from the model's own table) and carry everyone else (exponential decay only;
  semantics §4). The model selects the snapshot of T with it; its pre-hook inserts those of the
  earlier cutoffs of a range run, oldest first, so each one carries from the one before.
  `late_days`: the days before cutoff - 1 day whose rollups may have changed since the previous
  snapshot was written (the rollups' late-arrival rebuild). A range run's snapshots after its first
  carry from a snapshot written in the same run from the same rollups, so only the day entering and
  the day leaving the window touch anyone there (late_days = 0).
#}
{% macro user_features_snapshot(cutoff, carry, late_days=none) -%}
{%- set late_days = var('late_arrival_days') | int if late_days is none else late_days -%}
{%- set day %}(({{ cutoff }} at time zone 'UTC')::date){% endset -%}
{%- set previous_as_of %}({{ cutoff }} - interval '1 day'){% endset -%}

with
{%- if carry %}
previous as (
    select * from {{ this }} where as_of = {{ previous_as_of }}
),

-- no snapshot of the day before: nothing to carry, recompute everyone
has_previous as (
    select exists (select 1 from previous) as yes
),

-- users whose window differs from the previous day's: a rollup day entered (or was rebuilt by the
-- rollups' late-arrival rule since the previous snapshot) or the day leaving the window
touched as (
    select distinct user_id
    from {{ ref('int_user_listing_daily') }}
    where (event_day >= {{ day }} - 1 - {{ late_days }} and event_day < {{ day }})
       or event_day = {{ day }} - 1 - {{ window_days() }}
),
{%- endif %}

rollups as (
    select
        r.user_id,
        r.category_id,
        r.city,
        r.price_pct,
        r.exp_weight_at_day_end,
        r.weight_sum,
        r.weight_age_sum,
        {{ days_between(cutoff, "((r.event_day + 1)::timestamp at time zone 'UTC')") }} as days_to_cutoff
    from {{ ref('int_user_listing_daily') }} as r
    where r.event_day >= {{ day }} - {{ window_days() }}
      and r.event_day < {{ day }}
    {%- if carry %}
      and (not (select yes from has_previous) or r.user_id in (select user_id from touched))
    {%- endif %}
),

decayed as (
    select
        user_id,
        category_id,
        city,
        price_pct,
        {{ decayed_rollup_value('days_to_cutoff', 'exp_weight_at_day_end', 'weight_sum', 'weight_age_sum') }}
            as decayed_weight
    from rollups
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

recomputed as (
    select
        user_id::uuid as user_id,
        case when total_weight > 0 then category_affinity else '{}'::jsonb end as category_affinity,
        case when total_weight > 0 then city_affinity else '{}'::jsonb end as city_affinity,
        (price_pct_weighted / nullif(priced_weight, 0))::double precision as price_sensitivity,
        total_weight::double precision as activity_weight
    from per_user
),

{%- if carry %}

carried as (
    select
        p.user_id,
        p.category_affinity,
        p.city_affinity,
        p.price_sensitivity,
        p.activity_weight * power(0.5::double precision, 1.0 / {{ var('half_life_days') | float }}) as activity_weight
    from previous as p
    where (select yes from has_previous)
      and not exists (select 1 from touched as t where t.user_id = p.user_id)
),
{%- endif %}

all_users as (
    select * from recomputed
    {%- if carry %}
    union all
    select * from carried
    {%- endif %}
),

final as (
    select
        user_id,
        category_affinity,
        city_affinity,
        price_sensitivity,
        -- 1 - exp(-S/scale) rounds to 1.0 for S > ~37 * scale; clamp to the largest double below 1
        -- so the documented range [0, 1) holds (a change of at most 1.1e-16)
        least(1 - exp(-activity_weight / {{ var('activity_scale') | float }}), 1 - 1.1102230246251565e-16)::double precision
            as activity_score,
        activity_weight,
        {{ cutoff }} as as_of,
        now() as last_updated_at
    from all_users
)

select * from final
{%- endmacro %}

{# Whether a snapshot may carry from the previous day's: exponential decay, an existing table and no
   --full-refresh (the snapshot SQL still recomputes everyone when the previous day is missing). #}
{% macro snapshot_can_carry() -%}
    {{ return(var('decay_kind') == 'exponential' and is_incremental() and not flags.FULL_REFRESH) }}
{%- endmacro %}

{# Pre-hook of user_features_history: in a range run, the snapshots of the cutoffs before T, oldest
   first, each replacing any snapshot of its cutoff (idempotent); then T's rows are deleted, and the
   model appends T's snapshot (every delete is by as_of, through its index). On a table that does
   not exist yet there is nothing to insert into, so the caller runs the range's first day alone. #}
{% macro replace_snapshots_up_to_cutoff() -%}
    {%- set cutoffs = range_cutoffs_before_cutoff() -%}
    {%- if execute and cutoffs and not is_incremental() -%}
        {{ exceptions.raise_compiler_error("a range run needs features.user_features_history to exist: run the range's first partition alone first") }}
    {%- endif -%}
    {%- if is_incremental() -%}
    {%- for at in cutoffs %}
        delete from {{ this }} where as_of = {{ at }};
        insert into {{ this }} (user_id, category_affinity, city_affinity, price_sensitivity, activity_score, activity_weight, as_of, last_updated_at)
        {{ user_features_snapshot(at, carry=snapshot_can_carry(), late_days=none if loop.first else 0) }};
    {%- endfor %}
        delete from {{ this }} where as_of = {{ cutoff_ts() }};
    {%- endif -%}
{%- endmacro %}
