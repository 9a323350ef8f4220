{#
  The price distribution of each category as of each partition cutoff T: the sorted prices of the
  priced listings live at T (created before T, attributes of the version in force just before T).
  A listing's price_pct at T is then one binary search: percent_rank = #(prices < p) / (n - 1),
  i.e. width_bucket(p - 0.005, prices) / (n - 1) (prices have two decimals, so this is exact; as
  float8 they keep their order and the half-cent margin).

  This is the compact form of a per-partition listing history: one row per (T, category) instead of
  one per (T, listing) (docs/feature_pipeline.md has the sizes). A day's distribution never changes
  once built: later listings and price changes are valid from later times and never reach it.

  Incremental: builds the days of the window [T - window_days + 1, T] that are missing and always
  T itself (for a range run S..T: the days from S - window_days + 1 that are missing, and always
  S..T).

  `full_refresh=false`: a day's price lists depend on the listing versions only, never on a feature
  knob, so --full-refresh (which exists to re-derive the rollups after a knob changed) keeps them;
  re-running a partition or a range rebuilds its days (drop the table by hand for a schema change).

  `prices` is stored uncompressed (storage external): a price_pct lookup reads the whole array, and
  pglz decompression was three quarters of a retrieval probe of listing_features_history (44 of 63
  µs at scale xs; ~11 µs uncompressed) at twice the bytes of a compact history that is still a
  tenth of a daily copy. The post-hook sets the storage and re-stores the rows still compressed
  (the new days: CTAS and dbt's insert keep the datums they got compressed).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of',
        on_schema_change='fail',
        full_refresh=false,
        indexes=[{'columns': ['as_of', 'category_id'], 'unique': true}],
        post_hook=[
            "alter table {{ this }} alter column prices set storage external",
            "update {{ this }} set prices = prices || array[]::double precision[] where pg_column_size(prices) < 8 * priced_listings",
        ],
    )
}}

with wanted as (
    select day_start as as_of
    from generate_series(
        {{ range_start_ts() }} - ({{ window_days() }} - 1) * interval '1 day', {{ cutoff_ts() }}, interval '1 day'
    ) as day_start
    {% if is_incremental() %}
    where day_start >= {{ range_start_ts() }}
       or not exists (select 1 from {{ this }} as r where r.as_of = day_start)
    {% endif %}
),

live_versions as (
    select
        w.as_of,
        v.category_key,
        v.category_id,
        v.price::double precision as price
    from wanted as w
    inner join {{ ref('stg_listing_versions') }} as v on {{ version_in_force('v', 'w.as_of') }}
),

-- grouped by the integer category key and sorted as float8 (two-decimal prices keep their order):
-- several times faster than grouping by the text and sorting numerics
final as (
    select
        as_of,
        min(category_id) as category_id,
        count(price)::integer as priced_listings,
        coalesce(array_agg(price order by price) filter (where price is not null), '{}')::double precision[]
            as prices
    from live_versions
    group by as_of, category_key
)

select * from final
