{# The cutoff T as given (var `cutoff`, else FS_FEATURE_CUTOFF), '' when unset; the one place that
   reads it. The env var lets Dagster vary T without invalidating dbt's partial parse (vars would). #}
{% macro cutoff_setting() -%}
    {{ return(var('cutoff', none) or env_var('FS_FEATURE_CUTOFF', '')) }}
{%- endmacro %}

{# The first cutoff S of a range run as given (FS_FEATURE_RANGE_START), '' for one partition. #}
{% macro range_start_setting() -%}
    {{ return(env_var('FS_FEATURE_RANGE_START', '')) }}
{%- endmacro %}

{# The partition cutoff T as a timestamptz literal (default today 00:00 UTC). #}
{% macro cutoff_ts() -%}
    {%- set cutoff = cutoff_setting() -%}
    {%- if not cutoff -%}
        (date_trunc('day', now() at time zone 'UTC') at time zone 'UTC')
    {%- else -%}
        ('{{ cutoff }}'::timestamptz)
    {%- endif -%}
{%- endmacro %}

{# The first cutoff of a range run (a backfill of partitions S..T in one dbt invocation): S as a
   timestamptz literal from FS_FEATURE_RANGE_START, else T itself (a one-partition run). The rollups
   and price lists then cover every window of the range, and user_features_history builds the
   snapshots S..T-1 day by day before T's. #}
{% macro range_start_ts() -%}
    {%- set start = range_start_setting() -%}
    {%- if start -%}
        (least('{{ start }}'::timestamptz, {{ cutoff_ts() }}))
    {%- else -%}
        {{ cutoff_ts() }}
    {%- endif -%}
{%- endmacro %}

{# The cutoffs S, S + 1 day, ..., before T of a range run, as timestamptz literals (empty for a
   one-partition run): the earlier snapshots user_features_history computes in its pre-hook. #}
{% macro range_cutoffs_before_cutoff() -%}
    {%- set start = range_start_setting() -%}
    {%- set cutoff = cutoff_setting() -%}
    {%- set days = [] -%}
    {%- if start and cutoff -%}
        {%- set first = modules.datetime.datetime.fromisoformat(start) -%}
        {%- set last = modules.datetime.datetime.fromisoformat(cutoff) -%}
        {%- for k in range((last - first).days) -%}
            {%- do days.append("('" ~ (first + modules.datetime.timedelta(days=k)).isoformat() ~ "'::timestamptz)") -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(days) }}
{%- endmacro %}

{# The UTC day of T (partition D). #}
{% macro cutoff_day() -%}
    (({{ cutoff_ts() }} at time zone 'UTC')::date)
{%- endmacro %}

{% macro window_days() -%}
    {%- set days = var('window_days') | int -%}
    {%- if days != var('window_days') | float or days <= 0 -%}
        {{ exceptions.raise_compiler_error("window_days must be a positive whole number of days, got " ~ var('window_days')) }}
    {%- endif -%}
    {{ days }}
{%- endmacro %}

{# CASE expression mapping event_type to its weight w (var `event_weights`). #}
{% macro event_weight(event_type_column) -%}
    case {{ event_type_column }}
    {%- for event_type, weight in var('event_weights').items() %}
        when '{{ event_type }}' then {{ weight | float }}::double precision
    {%- endfor %}
        else 0::double precision
    end
{%- endmacro %}

{# Seconds between two timestamps as float8 days (extract() returns numeric since PG 14). #}
{% macro days_between(later, earlier) -%}
    (extract(epoch from ({{ later }} - {{ earlier }}))::double precision / 86400.0)
{%- endmacro %}

{#
  Decayed value of a daily rollup at cutoff T, from the rollup's sums at its day end E:
    exponential: 0.5^((T-E)/h) * sum(w * 0.5^((E-t)/h))
    linear:      sum(w) * (1 - (T-E)/W) - sum(w * (E-t)) / W
  Both reproduce sum(w * decay(T - t)) over the day's events exactly (semantics §4).
#}
{% macro decayed_rollup_value(days_to_cutoff, exp_weight_at_day_end, weight_sum, weight_age_sum) -%}
    {%- set kind = var('decay_kind') -%}
    {%- if kind == 'exponential' -%}
        power(0.5::double precision, {{ days_to_cutoff }} / {{ var('half_life_days') | float }}) * {{ exp_weight_at_day_end }}
    {%- elif kind == 'linear' -%}
        ({{ weight_sum }} * (1.0 - {{ days_to_cutoff }} / {{ window_days() }}.0) - {{ weight_age_sum }} / {{ window_days() }}.0)
    {%- else -%}
        {{ exceptions.raise_compiler_error("decay_kind must be 'exponential' or 'linear', got '" ~ kind ~ "'") }}
    {%- endif -%}
{%- endmacro %}

{# The listing version in force just before `at` (alias `v` of stg_listing_versions), for a listing
   already live then: what a partition with cutoff `at` knows of the listing. #}
{% macro version_in_force(v, at) -%}
    ({{ v }}.valid_from < {{ at }} and ({{ v }}.valid_to is null or {{ v }}.valid_to >= {{ at }}) and {{ v }}.live_from < {{ at }})
{%- endmacro %}

{# percent_rank of `price` among a category's sorted live prices (int_category_price_ranks):
   #(prices < price) / (n - 1), by binary search; 0 for the only priced listing, null without a price. #}
{% macro price_pct_from_ranks(price, prices, priced_listings) -%}
    case
        when {{ price }} is null or {{ priced_listings }} is null or {{ priced_listings }} = 0 then null
        when {{ priced_listings }} = 1 then 0::double precision
        else width_bucket({{ price }}::double precision - 0.005, {{ prices }})::double precision / ({{ priced_listings }} - 1)
    end
{%- endmacro %}
