{# Every attribute state of every listing with the interval it was in force: [valid_from, valid_to),
   valid_to null for the current version. `live_from` is when the listing entered the catalogue
   (its creation, else its first version). "As of T" means the state in force just before T:
   valid_from < T and (valid_to is null or valid_to >= T), for a listing with live_from < T
   (macro version_in_force). A table, not a view: every partition joins it by (listing_id, time).
   `category_key` numbers the categories of this build (1, 2, ...): an equality-only stand-in for
   category_id inside one query, never stored elsewhere. #}
{{ config(materialized='table', indexes=[{'columns': ['listing_id', 'valid_from'], 'unique': true}]) }}

{#- raw.listing_versions is written by the same ingestion asset as raw.listings (raw_listings), so it
    is addressed through that source: the lineage Dagster shows is raw_listings -> this model, with
    no second, unmaterialized "raw/listing_versions" asset beside it. #}
{%- set listings = source('raw', 'listings') -%}
{%- set listing_versions = api.Relation.create(
    database=listings.database, schema=listings.schema, identifier='listing_versions') -%}
with source as (
    select * from {{ listing_versions }}
),

typed as (
    select
        listing_id,
        valid_from,
        lead(valid_from) over (partition by listing_id order by valid_from) as valid_to,
        category_id,
        -- a small integer per category: windows partitioned by it sort ~2x faster than by the text
        dense_rank() over (order by category_id)::integer as category_key,
        lower(city) as city,
        price,
        is_premium,
        image_count,
        coalesce(
            min(created_at) over (partition by listing_id),
            min(valid_from) over (partition by listing_id)
        ) as live_from
    from source
)

select * from typed
