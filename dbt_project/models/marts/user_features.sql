{# The latest snapshot only: users who left the window disappear here but stay in the history.
   The history is named twice rather than through a CTE: a CTE read twice is materialized, which
   would copy every snapshot (~5 s at scale s) to keep one; this way both reads use the as_of index. #}
select
    user_id,
    category_affinity,
    city_affinity,
    price_sensitivity,
    activity_score,
    activity_weight,
    as_of,
    last_updated_at
from {{ ref('user_features_history') }}
where as_of = (select max(as_of) from {{ ref('user_features_history') }})
