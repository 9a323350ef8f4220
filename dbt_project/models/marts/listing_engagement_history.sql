{# listing_engagement at every computed partition T (the days of int_category_price_ranks), for
   historical retrieval: a view over the daily counts, so it costs no storage and a partition's
   answers are those the partition's own run served (macros/listing_engagement.sql). #}
{{ config(materialized='view') }}

{{ listing_engagement_at(ref('int_category_price_ranks')) }}
