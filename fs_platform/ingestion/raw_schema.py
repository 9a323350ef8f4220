"""DDL of the raw landing schema (semantics §3), applied idempotently before any ingestion."""

from __future__ import annotations

import psycopg2.extensions

from fs_platform.ingestion.vocabulary import DEVICE_TYPES, EVENT_TYPES

#: transaction-local setting that ``raw.user_interactions.source_file`` defaults to (set per file)
SOURCE_FILE_SETTING = "fs_platform.source_file"
_SOURCE_FILE_DEFAULT = f"nullif(current_setting('{SOURCE_FILE_SETTING}', true), '')"

_RAW_DDL = f"""
create schema if not exists raw;

create table if not exists raw.listings (
    listing_id   uuid primary key,
    category_id  text not null,
    city         text not null,
    price        numeric(12, 2) check (price >= 0),
    is_premium   boolean not null,
    image_count  integer not null check (image_count >= 0),
    created_at   timestamptz,
    ingested_at  timestamptz not null default now(),
    source_file  text
);

-- every distinct attribute state of a listing, keyed by when it became valid (semantics §3); a
-- warehouse from before versions gets the table once, seeded with each listing's current state
-- (valid from created_at, or ingested_at when created_at is unknown)
do $$
begin
    if to_regclass('raw.listing_versions') is null then
        -- the columns, types, defaults and checks of raw.listings (one declaration), plus valid_from
        create table raw.listing_versions (
            like raw.listings including defaults including constraints,
            valid_from   timestamptz not null,
            primary key (listing_id, valid_from)
        );
        insert into raw.listing_versions
            (listing_id, valid_from, category_id, city, price, is_premium, image_count, created_at,
             ingested_at, source_file)
        select listing_id, coalesce(created_at, ingested_at), category_id, city, price, is_premium,
               image_count, created_at, ingested_at, source_file
        from raw.listings as l
        where not exists (select 1 from raw.listing_versions as v where v.listing_id = l.listing_id);
    end if;
end
$$;

create table if not exists raw.user_interactions (
    event_id     uuid primary key,
    user_id      uuid not null,
    listing_id   uuid not null,
    event_type   text not null check (event_type in ({", ".join(f"'{e}'" for e in EVENT_TYPES)})),
    occurred_at  timestamptz not null,
    device_type  text not null check (device_type in ({", ".join(f"'{d}'" for d in DEVICE_TYPES)})),
    ingested_at  timestamptz not null default now(),
    source_file  text default {_SOURCE_FILE_DEFAULT}
);
-- tables created before the default existed get it once (checked first: no lock when present)
do $$
begin
    if not exists (
        select 1 from pg_attrdef as d
        join pg_attribute as a on a.attrelid = d.adrelid and a.attnum = d.adnum
        where d.adrelid = 'raw.user_interactions'::regclass and a.attname = 'source_file'
    ) then
        alter table raw.user_interactions alter column source_file set default {_SOURCE_FILE_DEFAULT};
    end if;
end
$$;
-- events arrive roughly in time order: a BRIN index makes day slices cheap and costs ~nothing to maintain
create index if not exists user_interactions_occurred_at_brin
    on raw.user_interactions using brin (occurred_at);

create table if not exists raw.rejected_interactions (
    rejected_id  bigserial primary key,
    source_file  text not null,
    file_sha256  text not null,
    row_number   bigint not null,
    payload      jsonb not null,
    reason       text not null,
    rejected_at  timestamptz not null default now(),
    unique (file_sha256, row_number)
);

create table if not exists raw.rejected_listings (like raw.rejected_interactions including all);

create table if not exists raw.ingested_files (
    file_id      bigserial primary key,
    kind         text not null,
    source_file  text not null,
    file_sha256  text not null,
    rows_read    bigint not null,
    accepted     bigint not null,
    rejected     bigint not null,
    duplicates   bigint not null,
    ingested_at  timestamptz not null default now()
);
"""


def ensure_raw_schema(conn: psycopg2.extensions.connection) -> None:
    """Create the raw schema and tables if missing (safe to call concurrently and repeatedly)."""
    with conn.cursor() as cur:
        # serialise concurrent first-time creation (two Dagster runs starting together)
        cur.execute("select pg_advisory_xact_lock(hashtext('fs_platform.raw_ddl'))")
        cur.execute(_RAW_DDL)
    conn.commit()
