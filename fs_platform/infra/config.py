"""Configuration resolved from environment variables, in one place.

Every knob the platform reads from the environment is declared in ``ENV_VARS`` so the
README table and ``fs-platform config`` can never drift from the code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

#: the checkout (or image) root: dbt_project/, dagster.yaml and workspace.yaml live here
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: name -> (default shown to people, description). The README's configuration table mirrors this.
ENV_VARS: dict[str, tuple[str, str]] = {
    "FS_HOME": (".fs_platform", "State folder: embedded servers, inbox/archive, reports, model registry."),
    "FS_DATABASE_URL": (
        "(embedded)",
        "External PostgreSQL (postgresql://user:pw@host:port/db). Unset: embedded PG 18.",
    ),
    "FS_REDIS_URL": ("(embedded)", "External Redis (redis://host:port/db). Unset: embedded Redis 6.2."),
    "FS_EARLIEST_EVENT_DATE": ("2020-01-01", "Events before this UTC date are rejected at ingestion."),
    "FS_FUTURE_TOLERANCE_SECONDS": (
        "300",
        "Events further than this in the future (clock skew) are rejected.",
    ),
    "FS_INBOX_DIR": (
        "$FS_HOME/inbox",
        "Folder the inbox sensor watches (listings/ and interactions/ below it).",
    ),
    "FS_ARCHIVE_DIR": ("$FS_HOME/archive", "Where ingested files are moved."),
    "FS_DBT_TARGET": ("fs", "dbt target name in dbt_project/profiles.yml."),
    "FS_FEATURES_START_DATE": ("2026-01-01", "First daily partition of the feature pipeline."),
    "DAGSTER_HOME": (
        "$FS_HOME/dagster_home",
        "Dagster instance folder (dagster.yaml with Postgres storage).",
    ),
    "FS_REDIS_PREFIX": (
        "fs",
        "Prefix of every online-store key in Redis (one Redis can host several stores).",
    ),
    "FS_REDIS_TIMEOUT_SECONDS": (
        "0.5",
        "Connect/read timeout of online-store reads; Redis slower than this counts as down (503).",
    ),
    "FS_ONLINE_MAX_AGE_HOURS": (
        "36",
        "Served features whose snapshot as_of is older than this are flagged stale.",
    ),
    "FS_ONLINE_CACHE_SIZE": ("10000", "Entries of the serving API's in-process feature cache (0: off)."),
    "FS_ONLINE_CACHE_TTL_SECONDS": (
        "1.0",
        "How long the API trusts its cached snapshot pointer before asking Redis again.",
    ),
    "FS_ONLINE_BUILD_TTL_SECONDS": (
        "3600",
        "TTL of a snapshot while it is written: a killed sync's partial snapshot expires after this.",
    ),
    "FS_ONLINE_GRACE_SECONDS": (
        "60",
        "How long a replaced snapshot stays readable after a flip (in-flight readers), then expires.",
    ),
    "FS_MODEL_REGISTRY_DIR": (
        "$FS_HOME/models",
        "Model registry folder (versions + `current` pointer); shared by training and the serving API.",
    ),
    "FS_API_KEYS": ("(none)", "Comma-separated API keys; when set, every /v1 route needs X-API-Key."),
    "FS_ALERT_WEBHOOK_URL": (
        "(none)",
        "Monitoring alerts are also POSTed (JSON) to this URL; they are always stored in monitoring.alerts.",
    ),
    "FS_DRIFT_CONFIG": (
        "(none)",
        "JSON file overriding drift methods/thresholds per check and column (docs/monitoring.md).",
    ),
    "FS_TEST_DATABASE_URL": ("(embedded)", "Tests only: server on which tests create throw-away databases."),
    "FS_TEST_REDIS_URL": (
        "(embedded)",
        "Tests only: Redis the tests use (they only touch their own key prefix).",
    ),
}


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment; cheap to build, so build it where it is needed."""

    home: Path
    database_url: str | None
    redis_url: str | None
    earliest_event_date: date
    future_tolerance_seconds: int
    inbox_dir: Path
    archive_dir: Path
    dbt_target: str
    features_start_date: date
    redis_prefix: str = "fs"
    redis_timeout_seconds: float = 0.5
    online_max_age_hours: float = 36.0
    online_cache_size: int = 10_000
    online_cache_ttl_seconds: float = 1.0
    online_build_ttl_seconds: int = 3600
    online_grace_seconds: int = 60
    api_keys: tuple[str, ...] = ()

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def dagster_home(self) -> Path:
        return Path(_env("DAGSTER_HOME") or self.home / "dagster_home")

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def model_registry_dir(self) -> Path:
        return Path(_env("FS_MODEL_REGISTRY_DIR") or self.home / "models")


def get_settings() -> Settings:
    """Read the environment now (tests change it between cases)."""
    home = Path(_env("FS_HOME") or ".fs_platform").resolve()
    return Settings(
        home=home,
        database_url=_env("FS_DATABASE_URL"),
        redis_url=_env("FS_REDIS_URL"),
        earliest_event_date=date.fromisoformat(_env("FS_EARLIEST_EVENT_DATE") or "2020-01-01"),
        future_tolerance_seconds=int(_env("FS_FUTURE_TOLERANCE_SECONDS") or 300),
        inbox_dir=Path(_env("FS_INBOX_DIR") or home / "inbox").resolve(),
        archive_dir=Path(_env("FS_ARCHIVE_DIR") or home / "archive").resolve(),
        dbt_target=_env("FS_DBT_TARGET") or "fs",
        features_start_date=date.fromisoformat(_env("FS_FEATURES_START_DATE") or "2026-01-01"),
        redis_prefix=_env("FS_REDIS_PREFIX") or "fs",
        redis_timeout_seconds=float(_env("FS_REDIS_TIMEOUT_SECONDS") or 0.5),
        online_max_age_hours=float(_env("FS_ONLINE_MAX_AGE_HOURS") or 36),
        online_cache_size=int(_env("FS_ONLINE_CACHE_SIZE") or 10_000),
        online_cache_ttl_seconds=float(_env("FS_ONLINE_CACHE_TTL_SECONDS") or 1.0),
        online_build_ttl_seconds=int(_env("FS_ONLINE_BUILD_TTL_SECONDS") or 3600),
        online_grace_seconds=int(_env("FS_ONLINE_GRACE_SECONDS") or 60),
        api_keys=tuple(k.strip() for k in (_env("FS_API_KEYS") or "").split(",") if k.strip()),
    )
