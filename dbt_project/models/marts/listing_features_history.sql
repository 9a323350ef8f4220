{# The item features of every listing at every partition T that has been computed (the days of
   int_category_price_ranks): the listings live at T, their version in force just before T, and
   price_pct among the priced listings of the category live at T. A view over the compact form
   (versions + one sorted price array per category and day), so it costs no storage; filter it by
   as_of and/or listing_id. The training set and the user features read the same two tables. #}
{{ config(materialized='view') }}

with partitions as (
    select distinct as_of from {{ ref('int_category_price_ranks') }}
),

final as (
    select
        v.listing_id,
        p.as_of,
        v.category_id,
        v.city,
        v.price::double precision as price,
        {{ price_pct_from_ranks('v.price', 'k.prices', 'k.priced_listings') }} as price_pct,
        v.is_premium,
        v.image_count,
        v.live_from as created_at
    from partitions as p
    inner join {{ ref('stg_listing_versions') }} as v on {{ version_in_force('v', 'p.as_of') }}
    left join {{ ref('int_category_price_ranks') }} as k
        on k.as_of = p.as_of and k.category_id = v.category_id
)

select * from final
