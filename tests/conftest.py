"""Shared fixtures: a throw-away database on a real PostgreSQL, a real Redis, a temp FS_HOME.

``FS_TEST_DATABASE_URL`` / ``FS_TEST_REDIS_URL`` select external servers (CI's second pass);
otherwise the embedded servers under ``.fs_platform`` are started (or reused). Each test
session creates its own database and drops it afterwards, so the demo's data is never touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

from fs_platform.infra.runtime import EmbeddedPostgres, EmbeddedRedis, pg_connect, redis_client

REPO = Path(__file__).resolve().parent.parent
# the tests' synthetic data lives in early 2026, whatever the demo ingested under .fs_platform; the
# partitions are defined when the graph is imported, so this is set before any test imports it
os.environ["FS_FEATURES_START_DATE"] = "2026-01-01"


def _server_urls() -> tuple[str, str]:
    pg = os.environ.get("FS_TEST_DATABASE_URL")
    rd = os.environ.get("FS_TEST_REDIS_URL")
    home = REPO / ".fs_platform"
    if not pg:
        pg = EmbeddedPostgres(home).start()
    if not rd:
        rd = EmbeddedRedis(home).start()
    return pg, rd


def _with_db(url: str, dbname: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    server_url, redis_url = _server_urls()
    dbname = f"fs_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {dbname}")
    database_url = _with_db(server_url, dbname)
    home = tmp_path_factory.mktemp("fs_home")
    saved = {k: os.environ.get(k) for k in ("FS_DATABASE_URL", "FS_REDIS_URL", "FS_HOME", "DAGSTER_HOME")}
    os.environ.update({"FS_DATABASE_URL": database_url, "FS_REDIS_URL": redis_url, "FS_HOME": str(home)})
    os.environ.pop("DAGSTER_HOME", None)
    yield {"database_url": database_url, "redis_url": redis_url, "server_url": server_url, "home": str(home)}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {dbname} with (force)")
    admin.close()


@pytest.fixture()
def database_url(service_urls: dict[str, str]) -> str:
    return service_urls["database_url"]


@pytest.fixture()
def clean_db(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection to an empty warehouse (raw/staging/features schemas dropped)."""
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("drop schema if exists raw, staging, features cascade")
    conn.commit()
    yield conn
    conn.rollback()
    conn.close()


@pytest.fixture()
def redis_url(service_urls: dict[str, str]) -> str:
    return service_urls["redis_url"]


@pytest.fixture()
def redis_conn(redis_url: str):
    return redis_client(redis_url)


@pytest.fixture(scope="session")
def warehouse(request, service_urls, tmp_path_factory):
    """Real features of two partitions in a private database (see tests/online_support.py)."""
    from online_support import online_warehouse

    return online_warehouse(request, service_urls, tmp_path_factory)


@pytest.fixture(scope="session")
def ui_state(request, service_urls, tmp_path_factory):
    """A small platform run driven by sensor/schedule ticks on a Postgres-backed Dagster instance
    in a private database (see tests/ui_support.py); shared by the UI and tick tests."""
    from ui_support import build_ui_state

    return build_ui_state(request, service_urls, tmp_path_factory)


@pytest.fixture()
def prefix(warehouse):
    """An empty online store of our own; its keys are deleted afterwards."""
    from online_support import delete_prefix, unique_prefix

    name = unique_prefix(warehouse)
    yield name
    delete_prefix(warehouse.redis(), name)


@pytest.fixture(autouse=True)
def _no_published_dead_dagster_instance() -> Iterator[None]:
    """Fail the test that leaves a disposed Dagster instance published as the current defs-state
    storage (a sensor/schedule context built without ``with``), instead of letting every later
    ``dg.materialize`` in the session fail with "undefined DagsterInstance weakref"."""
    from dagster._core.storage.defs_state.base import _current_storage

    yield
    storage = _current_storage.get()
    ref = getattr(storage, "_instance_weakref", None)
    if storage is not None and ref is not None and ref() is None:
        _current_storage.set(None)
        pytest.fail("a disposed Dagster instance was left published: enter build_*_context(...) with `with`")
