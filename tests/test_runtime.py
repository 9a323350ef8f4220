"""The runtime: embedded servers start, are reused across processes, stop; configuration resolves."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import psycopg2
import pytest

from fs_platform.infra.config import ENV_VARS, PROJECT_ROOT, Settings, get_settings, markdown_table
from fs_platform.infra.runtime import pg_env, redact


def _cli(home: Path, *args: str) -> str:
    cli = Path(sys.executable).with_name("fs-platform")
    # /usr/sbin: as root, the embedded PostgreSQL creates its unprivileged user with useradd
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/sbin:/usr/bin:/sbin:/bin", "FS_HOME": str(home)}
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


def _readme_table() -> list[str]:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_config_command_and_readme_list_the_same_variables(tmp_path):
    listed = [line.split()[0] for line in _cli(tmp_path, "config").splitlines()]
    documented = [row.split("|")[1].strip().strip("`") for row in _readme_table()[2:]]
    assert listed == documented == list(ENV_VARS)


def test_readme_configuration_table_is_generated_from_the_declarations():
    """Edit the declarations in fs_platform/infra/config.py, then paste markdown_table()."""
    assert "\n".join(_readme_table()) == markdown_table()


def test_every_settings_field_is_declared_once():
    attrs = [var.attr for var in ENV_VARS.values() if var.attr]
    assert sorted(attrs) == sorted(f.name for f in fields(Settings))
    assert len(attrs) == len(set(attrs))


def test_defaults_apply_and_the_environment_overrides(monkeypatch, tmp_path):
    for var in ENV_VARS.values():
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv("FS_HOME", str(tmp_path))
    settings = get_settings()
    assert settings.future_tolerance_seconds == 300 and settings.online_cache_size == 10_000
    assert settings.dagster_home == tmp_path / "dagster_home" and settings.api_keys == ()
    assert settings.database_url is None and settings.embedded_postgres
    monkeypatch.setenv("FS_ONLINE_CACHE_SIZE", "7")
    monkeypatch.setenv("FS_API_KEYS", " a, b ,")
    monkeypatch.setenv("FS_MODEL_REGISTRY_DIR", str(tmp_path / "elsewhere"))
    settings = get_settings()
    assert settings.online_cache_size == 7 and settings.api_keys == ("a", "b")
    assert settings.model_registry_dir == tmp_path / "elsewhere"


def test_default_home_is_the_checkouts_and_a_relative_one_follows_the_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FS_HOME", raising=False)
    assert get_settings().home == PROJECT_ROOT / ".fs_platform"
    monkeypatch.setenv("FS_HOME", "state")
    assert get_settings().home == tmp_path / "state"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/fs", "postgresql://app:***@db:5432/fs"),
        ("postgresql://app@db:5432/fs", "postgresql://app@db:5432/fs"),
        ("postgresql://db/fs?user=app&password=s3cret", "postgresql://db/fs?user=app&password=***"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://default:s3cret@cache:6379/0", "redis://default:***@cache:6379/0"),
        ("rediss://default:s3cr%40t@cache:6380/1", "rediss://default:***@cache:6380/1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_hides_passwords_of_postgres_and_redis_urls(url, shown):
    assert redact(url) == shown
