{# The latest snapshot only: users who left the window disappear here but stay in the history. #}
with history as (
    select * from {{ ref('user_features_history') }}
),

latest as (
    select
        user_id,
        category_affinity,
        city_affinity,
        price_sensitivity,
        activity_score,
        activity_weight,
        as_of,
        last_updated_at
    from history
    where as_of = (select max(as_of) from history)
)

select * from latest
