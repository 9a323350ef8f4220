{# Item features of the latest partition T for serving: every listing live at T with the version in
   force just before T; price_pct = percent_rank of its price among the priced listings of its
   category live at T (0 = cheapest, 1 = dearest; null for price on request). The same answers for
   every partition: listing_features_history. #}
with versions as (
    select * from {{ ref('stg_listing_versions') }} as v
    where {{ version_in_force('v', cutoff_ts()) }}
),

priced as (
    select
        listing_id,
        percent_rank() over (partition by category_id order by price)::double precision as price_pct
    from versions
    where price is not null
),

final as (
    select
        v.listing_id,
        v.category_id,
        v.city,
        v.price::double precision as price,
        p.price_pct,
        v.is_premium,
        v.image_count,
        v.live_from as created_at,
        {{ cutoff_ts() }} as as_of
    from versions as v
    left join priced as p using (listing_id)
)

select * from final
