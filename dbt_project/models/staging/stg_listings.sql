with source as (
    select * from {{ source('raw', 'listings') }}
),

typed as (
    select
        listing_id,
        category_id,
        lower(city) as city,
        price::double precision as price,
        is_premium,
        image_count,
        created_at
    from source
)

select * from typed
