"""Dagster resources for PostgreSQL and Redis, resolved through the runtime module.

Leaving the URL empty means "whatever the environment says": ``FS_DATABASE_URL`` /
``FS_REDIS_URL`` when set, else the embedded servers (started on first use).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg2.extensions
import redis
from dagster_dbt import DbtCliResource

from fs_platform.infra.dbt import dbt_executable, dbt_project
from fs_platform.infra.runtime import ensure_services, pg_connect, pg_env, redis_client


class PostgresResource(dg.ConfigurableResource):
    """The feature warehouse (raw landing tables, dbt models, history)."""

    database_url: str = ""

    def url(self) -> str:
        return self.database_url or ensure_services().database_url

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        conn = pg_connect(self.url())
        try:
            yield conn
        finally:
            conn.close()

    def export_dbt_env(self) -> None:
        """dbt runs as a subprocess and reads its connection from FS_PG_* (profiles.yml)."""
        os.environ.update(pg_env(self.url()))


class RedisResource(dg.ConfigurableResource):
    """The online store."""

    redis_url: str = ""

    def url(self) -> str:
        return self.redis_url or ensure_services().redis_url

    def client(self) -> redis.Redis:
        return redis_client(self.url())


#: the resources every group shares, bound once for the code location
defs = dg.Definitions(
    resources={
        "postgres": PostgresResource(),
        "redis": RedisResource(),
        "dbt": DbtCliResource(
            project_dir=dbt_project,
            profiles_dir=str(dbt_project.profiles_dir),
            dbt_executable=dbt_executable(),
        ),
    }
)
