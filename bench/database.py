"""The benchmark database: on the configured server (embedded unless FS_DATABASE_URL is set)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlparse, urlunparse

import psycopg2
import psycopg2.extensions

from fs_platform.infra.runtime import ensure_services, pg_connect


def bench_database(scale: str) -> str:
    """URL of ``fs_bench_<scale>`` on the platform's server, created if missing."""
    server = ensure_services().database_url
    name = f"fs_bench_{scale}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f"create database {name}")
    admin.close()
    return urlunparse(urlparse(server)._replace(path=f"/{name}"))


def reset_schemas(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute("drop schema if exists raw, staging, features cascade")
    conn.commit()


def event_time_span(database_url: str) -> tuple[datetime, datetime]:
    """Oldest and newest raw event of the bench database; exits with a hint when nothing is
    ingested yet."""
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("select min(occurred_at), max(occurred_at) from raw.user_interactions")
        first, last = cur.fetchone()
    conn.close()
    if last is None:
        raise SystemExit("no raw events in the bench database: run the ingestion benchmark first")
    return first, last


def last_event_time(database_url: str) -> datetime:
    """Newest raw event of the bench database."""
    return event_time_span(database_url)[1]
