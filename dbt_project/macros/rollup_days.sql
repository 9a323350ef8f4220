{#
  The event-time ranges a daily rollup (incremental, one row set per event_day) must (re)build for a
  run with cutoff T: the days of the window not yet rolled up (first run, days after the newest
  rolled-up day, a backfill further back than the oldest) plus the last `late_arrival_days` days
  before T. Plain constants, so the BRIN index on occurred_at narrows the scan to them: a daily run
  reads one day of raw events, not the window. Returns a list of (lower, upper) SQL expressions.
#}
{% macro rollup_rebuild_ranges() -%}
    {%- set window_start -%}({{ range_start_ts() }} - interval '{{ window_days() }} days'){%- endset -%}
    {%- set ranges = [] -%}
    {%- if is_incremental() and execute -%}
        {%- set bounds = run_query("select min(event_day), max(event_day) from " ~ this).rows[0] -%}
    {%- else -%}
        {%- set bounds = [none, none] -%}
    {%- endif -%}
    {%- if bounds[0] is none -%}
        {%- do ranges.append((window_start, cutoff_ts())) -%}
    {%- else -%}
        {%- set after_last -%}(('{{ bounds[1] }}'::date + 1 - {{ var('late_arrival_days') | int }})::timestamp at time zone 'UTC'){%- endset -%}
        {%- set first_day -%}('{{ bounds[0] }}'::date::timestamp at time zone 'UTC'){%- endset -%}
        {%- do ranges.append(("greatest(" ~ window_start ~ ", " ~ after_last ~ ")", cutoff_ts())) -%}
        {%- do ranges.append((window_start, "least(" ~ first_day ~ ", " ~ cutoff_ts() ~ ")")) -%}
    {%- endif -%}
    {{ return(ranges) }}
{%- endmacro %}

{# `occurred_at` within any of `ranges` (from rollup_rebuild_ranges). #}
{% macro in_rebuild_ranges(column, ranges) -%}
    (
    {%- for lower, upper in ranges %}
        ({{ column }} >= {{ lower }} and {{ column }} < {{ upper }}){{ " or" if not loop.last }}
    {%- endfor %}
    )
{%- endmacro %}
