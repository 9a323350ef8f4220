"""The Dagster instance every command shares: Postgres storage on the platform's database."""

from __future__ import annotations

import os
import shutil

from fs_platform.infra.config import PROJECT_ROOT, Settings, get_settings, pin_home
from fs_platform.infra.runtime import ServiceUrls, ensure_services, export_env

DAGSTER_YAML = PROJECT_ROOT / "dagster.yaml"


def prepare_environment(settings: Settings | None = None) -> ServiceUrls:
    """Start/reuse the services, export their coordinates and point DAGSTER_HOME at our instance.

    Child processes (dbt, ``dagster dev``, the API) inherit ``os.environ`` and so find the same
    servers and the same Dagster storage. Pins FS_HOME (absolute) and the owner-only umask
    first: this process and its children write user data there.
    """
    settings = settings or get_settings()
    pin_home(settings.home)
    urls = ensure_services(settings)
    env = export_env(urls)
    if not env["FS_PG_PASSWORD"]:
        env["FS_PG_PASSWORD"] = "unused"  # trust auth ignores it; dagster.yaml needs a value
    os.environ.update(env)
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if DAGSTER_YAML.exists():
        shutil.copyfile(DAGSTER_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return urls
