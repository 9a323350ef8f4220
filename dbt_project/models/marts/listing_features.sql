{# Item features for training and serving; price_pct = percent_rank of the price among the
   priced listings of the same category (0 = cheapest, 1 = dearest; null for price on request). #}
with listings as (
    select * from {{ ref('stg_listings') }}
),

priced_rank as (
    select
        listing_id,
        percent_rank() over (partition by category_id order by price)::double precision as price_pct
    from listings
    where price is not null
),

final as (
    select
        l.listing_id,
        l.category_id,
        l.city,
        l.price,
        p.price_pct,
        l.is_premium,
        l.image_count,
        l.created_at
    from listings as l
    left join priced_rank as p using (listing_id)
)

select * from final
