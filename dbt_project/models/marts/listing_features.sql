{# Item features of the latest partition T for serving: every listing live at T with the version in
   force just before T; price_pct = percent_rank of its price among the priced listings of its
   category live at T (0 = cheapest, 1 = dearest; null for price on request). The history of these
   answers for every partition is listing_features_history. #}
with versions as (
    select * from {{ ref('stg_listing_versions') }} as v
    where {{ version_in_force('v', cutoff_ts()) }}
),

ranks as (
    select * from {{ ref('int_category_price_ranks') }}
    where as_of = {{ cutoff_ts() }}
),

final as (
    select
        v.listing_id,
        v.category_id,
        v.city,
        v.price::double precision as price,
        {{ price_pct_from_ranks('v.price', 'k.prices', 'k.priced_listings') }} as price_pct,
        v.is_premium,
        v.image_count,
        v.live_from as created_at,
        {{ cutoff_ts() }} as as_of
    from versions as v
    left join ranks as k on k.category_id = v.category_id
)

select * from final
