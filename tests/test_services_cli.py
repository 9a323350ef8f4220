"""`fs-platform services` against real embedded servers under a temporary FS_HOME.

Covers what broke in use: the default FS_HOME depending on the working directory, `services
stop` after `eval "$(fs-platform services env)"`, restarts after kill -9 (stale pid files),
secrets on the terminal, and the modes of the files the platform writes.
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from fs_platform.infra.config import get_settings
from fs_platform.infra.runtime import EmbeddedPostgres, EmbeddedRedis, ensure_services, stop_services

pytestmark = pytest.mark.timeout(300)

#: runs the CLI with PROJECT_ROOT pointed elsewhere, so the default FS_HOME is a temporary folder
_CLI_WITH_ROOT = (
    "import sys; from pathlib import Path; import fs_platform.infra.config as config; "
    "config.PROJECT_ROOT = Path(sys.argv[1]); from fs_platform.cli import main; "
    "main(sys.argv[2:], prog_name='fs-platform')"
)


def _base_env(**extra: str) -> dict[str, str]:
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    env.update(extra)
    return env


def _cli(env: dict[str, str], *args: str, cwd: Path | None = None, root: Path | None = None) -> str:
    if root is None:
        argv = [str(Path(sys.executable).with_name("fs-platform")), *args]
    else:
        argv = [sys.executable, "-c", _CLI_WITH_ROOT, str(root), *args]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _exports(text: str) -> dict[str, str]:
    """The variables of `export NAME=value` lines, as a shell's eval would set them."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(autouse=True)
def _restore_umask() -> Iterator[None]:
    """In-process calls set the platform's owner-only umask; later tests get theirs back."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield
    os.umask(saved)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A temporary FS_HOME whose embedded servers are stopped whatever the test did."""
    home = tmp_path / "home"
    yield home
    _cli(_base_env(FS_HOME=str(home)), "services", "stop")


def test_default_home_is_the_projects_whatever_the_working_directory(tmp_path: Path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    env = _base_env()  # FS_HOME unset
    try:
        _cli(env, "services", "start", cwd=project, root=project)
        status = _cli(env, "services", "status", cwd=elsewhere, root=project)
        assert "postgres: embedded, running on" in status and "redis: embedded, running on" in status
        assert (project / ".fs_platform" / "postgres" / "PG_VERSION").exists()
        assert not (elsewhere / ".fs_platform").exists()
        # an explicitly relative FS_HOME is resolved against the working directory, once, and
        # exported absolute, so child processes started in other folders agree
        exports = _exports(
            _cli(_base_env(FS_HOME=".fs_platform"), "services", "env", cwd=project, root=project)
        )
        assert exports["FS_HOME"] == str(project / ".fs_platform")
    finally:
        stopped = _cli(env, "services", "stop", cwd=elsewhere, root=project)
    assert "postgres: stopped" in stopped and "redis: stopped" in stopped


def test_stop_after_eval_services_env_stops_the_embedded_servers(home: Path):
    env = _base_env(FS_HOME=str(home))
    exported = {**env, **_exports(_cli(env, "services", "env"))}
    pg_port, redis_port = (
        int(exported["FS_PG_PORT"]),
        int(exported["FS_REDIS_URL"].rsplit(":", 1)[1].split("/")[0]),
    )
    status = _cli(exported, "services", "status")
    assert f"postgres: embedded, running on 127.0.0.1:{pg_port}" in status
    assert f"redis: embedded, running on 127.0.0.1:{redis_port}" in status

    stopped = _cli(exported, "services", "stop")
    assert "postgres: stopped" in stopped and "redis: stopped" in stopped
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(exported["FS_DATABASE_URL"], connect_timeout=2).close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(exported["FS_REDIS_URL"], socket_connect_timeout=1).ping()
    assert "embedded, stopped" in _cli(exported, "services", "status")

    # the exported URLs still name this FS_HOME's servers: start brings them back
    _cli(exported, "services", "start")
    with psycopg2.connect(exported["FS_DATABASE_URL"], connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
    assert redis.Redis.from_url(exported["FS_REDIS_URL"]).ping()


def _kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # dead, or a zombie nobody reaps (the usual case in containers)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{pid} survived kill -9")


def _sleeper() -> subprocess.Popen:
    """A live process that is not ours: what a reused PID in a stale pid file points at."""
    return subprocess.Popen(["sleep", "300"])


def test_postgres_restarts_on_the_first_call_after_kill_9(home: Path, monkeypatch: pytest.MonkeyPatch):
    server = EmbeddedPostgres(home)
    url = server.start()
    pid_file = server.pgdata / "postmaster.pid"

    _kill9(int(pid_file.read_text().splitlines()[0]))
    assert server.running_port() is None
    started = time.monotonic()
    url = server.start()
    assert time.monotonic() - started < 20  # not the 30 s wait for a server that never comes
    with psycopg2.connect(url, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)

    # the lock file names a PID that now belongs to another live process (PID reuse)
    sleeper = _sleeper()
    try:
        postmaster = int(pid_file.read_text().splitlines()[0])
        _kill9(postmaster)
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(sleeper.pid), *lines[1:]]) + "\n")
        assert server.running_port() is None
        monkeypatch.setenv("FS_HOME", str(home))
        monkeypatch.delenv("FS_DATABASE_URL", raising=False)
        monkeypatch.delenv("FS_REDIS_URL", raising=False)
        url = ensure_services().database_url
        with psycopg2.connect(url, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("select 1")
            assert cur.fetchone() == (1,)
        assert sleeper.poll() is None, "the unrelated process was killed"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_redis_restarts_on_the_first_call_after_kill_9(home: Path):
    server = EmbeddedRedis(home)
    url = server.start()
    redis.Redis.from_url(url).set("kept", "1")
    redis.Redis.from_url(url).save()

    _kill9(int(server.pid_file.read_text()))
    assert server.running_port() is None
    started = time.monotonic()
    url = server.start()
    assert time.monotonic() - started < 15
    assert redis.Redis.from_url(url).get("kept") == b"1"

    sleeper = _sleeper()
    try:
        _kill9(int(server.pid_file.read_text()))
        server.pid_file.write_text(f"{sleeper.pid}\n")
        assert server.running_port() is None
        assert redis.Redis.from_url(server.start()).ping()
        assert sleeper.poll() is None, "the unrelated process was killed"
    finally:
        sleeper.kill()
        sleeper.wait()
        server.stop()


def test_no_secret_reaches_the_terminal(tmp_path: Path):
    secrets = {
        "FS_DATABASE_URL": "postgresql://app:pg-s3cret@127.0.0.1:1/features",
        "FS_REDIS_URL": "redis://:redis-s3cret@127.0.0.1:2/0",
        "FS_TEST_DATABASE_URL": "postgresql://test:test-pg-s3cret@127.0.0.1:3/x",
        "FS_TEST_REDIS_URL": "redis://default:test-redis-s3cret@127.0.0.1:4/0",
        "FS_API_KEYS": "key-s3cret-1,key-s3cret-2",
        "FS_ALERT_WEBHOOK_URL": "https://hooks.example.com/services/T000/B000/hook-s3cret",
        "FS_PG_PASSWORD": "derived-s3cret",
    }
    env = _base_env(FS_HOME=str(tmp_path / "home"), **secrets)
    output = "".join(_cli(env, *args) for args in (["config"], ["services", "start"], ["services", "status"]))
    assert "s3cret" not in output, output
    assert "postgresql://app:***@127.0.0.1:1/features" in output
    assert "redis://:***@127.0.0.1:2/0" in output
    assert "*** (2 keys)" in output
    assert "https://hooks.example.com/***" in output


def test_files_the_platform_writes_are_owner_only(home: Path):
    env = _base_env(FS_HOME=str(home))
    _cli(env, "generate", "--scale", "xs", "--days", "1")  # raw event files in the inbox
    _cli(env, "services", "env")  # embedded servers' data, services.json, dagster.yaml
    _cli(env, "services", "stop")  # Redis writes its dump on the way down
    written = [home, *home.rglob("*")]
    assert any(p.suffix == ".parquet" for p in written) and (home / "redis" / "dump.rdb").exists()
    assert (home / "dagster_home" / "dagster.yaml").exists()
    readable = [
        f"{stat.filemode(p.lstat().st_mode)} {p}"
        for p in written
        if not p.is_symlink()
        and p.lstat().st_mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH)
    ]
    assert not readable, "\n".join(readable)


def test_stop_services_leaves_an_external_server_alone(home: Path, monkeypatch: pytest.MonkeyPatch):
    url = EmbeddedPostgres(home).start()
    # the same server seen through a URL of another FS_HOME is external there
    monkeypatch.setenv("FS_HOME", str(home.parent / "other"))
    monkeypatch.setenv("FS_DATABASE_URL", url)
    monkeypatch.setenv("FS_REDIS_URL", "redis://127.0.0.1:1/0")
    assert stop_services(get_settings()) == {"postgres": False, "redis": False}
    with psycopg2.connect(url, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
