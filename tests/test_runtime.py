"""The runtime: embedded servers start, are reused across processes, stop; configuration resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from fs_platform.infra.config import ENV_VARS, get_settings
from fs_platform.infra.runtime import pg_env, redact


def _cli(home: Path, *args: str) -> str:
    cli = Path(sys.executable).with_name("fs-platform")
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "FS_HOME": str(home)}
    result = subprocess.run([str(cli), *args], capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.timeout(300)
def test_embedded_services_start_reuse_stop(tmp_path):
    home = tmp_path / "home"
    try:
        started = _cli(home, "services", "start")
        assert "postgres: postgresql://postgres@127.0.0.1:" in started
        status = _cli(home, "services", "status")
        assert "postgres: embedded, running on 127.0.0.1:" in status
        assert "redis: embedded, running on 127.0.0.1:" in status
        # a second start (another process) reuses the same servers
        assert _cli(home, "services", "start") == started
        url = started.split("postgres: ")[1].split()[0]
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("show server_version")
            assert cur.fetchone()[0].startswith("18")
        exports = _cli(home, "services", "env")
        assert "export FS_DATABASE_URL=" in exports and "export DAGSTER_HOME=" in exports
    finally:
        stopped = _cli(home, "services", "stop")
    assert "postgres: stopped" in stopped and "redis: stopped" in stopped
    assert "embedded, stopped" in _cli(home, "services", "status")


def test_settings_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FS_HOME", str(tmp_path))
    monkeypatch.setenv("FS_DATABASE_URL", "postgresql://app:s3cret@db.internal:6543/features")
    monkeypatch.delenv("FS_INBOX_DIR", raising=False)
    settings = get_settings()
    assert settings.home == tmp_path and settings.inbox_dir == tmp_path / "inbox"
    assert not settings.embedded_postgres
    assert pg_env(settings.database_url) == {
        "FS_PG_HOST": "db.internal",
        "FS_PG_PORT": "6543",
        "FS_PG_USER": "app",
        "FS_PG_PASSWORD": "s3cret",
        "FS_PG_DBNAME": "features",
    }
    assert "s3cret" not in redact(settings.database_url)


def test_every_env_var_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [name for name in ENV_VARS if f"`{name}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"
