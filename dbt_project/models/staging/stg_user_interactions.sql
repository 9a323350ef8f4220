{# raw.user_interactions is keyed by event_id, so rows are already unique (tested); this view types
   the columns and keeps only the event types the feature formulas know. #}
with source as (
    select * from {{ source('raw', 'user_interactions') }}
),

known_events as (
    select
        event_id,
        user_id,
        listing_id,
        event_type,
        occurred_at,
        device_type,
        ingested_at
    from source
    where event_type in (
        {%- for event_type in var('event_weights').keys() %}'{{ event_type }}'{{ "," if not loop.last }}{% endfor -%}
    )
)

select * from known_events
