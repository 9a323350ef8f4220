{# Item features of the latest partition T for serving: every listing live at T with the version in
   force just before T; price_pct = percent_rank of its price among the priced listings of its
   category live at T (0 = cheapest, 1 = dearest; null for price on request). The same answers for
   every partition: listing_features_history. #}
with versions as (
    select * from {{ ref('stg_listing_versions') }} as v
    where {{ version_in_force('v', cutoff_ts()) }}
),

-- unpriced listings are their own window partition, so the priced ones rank among themselves
final as (
    select
        listing_id,
        category_id,
        city,
        price::double precision as price,
        case when price is not null then
            percent_rank() over (partition by category_key, price is null order by price::double precision)::double precision
        end as price_pct,
        is_premium,
        image_count,
        live_from as created_at,
        {{ cutoff_ts() }} as as_of
    from versions
)

select * from final
