{# listing_engagement of every listing live at the latest partition T: what the online store serves. #}
with partition_cutoff as (
    select {{ cutoff_ts() }} as as_of
),

final as (
    {{ listing_engagement_at('partition_cutoff') }}
)

select * from final
