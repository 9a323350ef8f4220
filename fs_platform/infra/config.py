"""Configuration resolved from environment variables, in one place.

Every variable the platform reads is declared once in ``ENV_VARS`` (name, default, parser,
description, secrecy). ``Settings`` is built from those declarations, and the table that
``fs-platform config`` prints and the README carries is derived from them, so a default is
written in exactly one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

#: the checkout (or image) root: dbt_project/, dagster.yaml and workspace.yaml live here
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: umask of every process that writes platform state: files 0600, folders 0700
PRIVATE_UMASK = 0o077


def _keys(value: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in value.split(",") if k.strip())


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: the only place its default and meaning are written."""

    name: str
    #: the value used when unset; ``$FS_HOME`` / ``$PROJECT_ROOT`` are expanded. None: unset.
    default: str | None
    description: str
    #: the ``Settings`` attribute it fills; None when another module reads it
    attr: str | None = None
    parse: Callable[[str], Any] = str
    #: shown instead of a None default ("(embedded)", "derived", ...)
    unset: str = "(none)"
    #: how to redact it for display: "url", "keys", "webhook", "value" or None (not secret)
    secret: str | None = None

    @property
    def shown_default(self) -> str:
        return self.default or self.unset


def _path(value: str) -> Path:
    return Path(value).resolve()


_DECLARED = [
    EnvVar(
        "FS_HOME",
        "$PROJECT_ROOT/.fs_platform",
        "State folder: embedded servers, inbox/archive, logs, reports, model registry (created "
        "owner-only, 0700). Default: `.fs_platform` in the checkout, whatever the working "
        "directory; a relative value is resolved against the working directory once, when a "
        "command starts, and exported as an absolute path to its child processes.",
        attr="home",
        parse=_path,
    ),
    EnvVar(
        "FS_DATABASE_URL",
        None,
        "External PostgreSQL `postgresql://user:pw@host:port/db`. Unset: embedded PostgreSQL 18.",
        attr="database_url",
        unset="(embedded)",
        secret="url",
    ),
    EnvVar(
        "FS_REDIS_URL",
        None,
        "External Redis `redis://[:pw@]host:port/db`. Unset: embedded Redis 6.2.",
        attr="redis_url",
        unset="(embedded)",
        secret="url",
    ),
    EnvVar(
        "FS_EARLIEST_EVENT_DATE",
        "2020-01-01",
        "Events before this UTC date are rejected at ingestion.",
        attr="earliest_event_date",
        parse=date.fromisoformat,
    ),
    EnvVar(
        "FS_FUTURE_TOLERANCE_SECONDS",
        "300",
        "Events further in the future than this (clock skew) are rejected.",
        attr="future_tolerance_seconds",
        parse=int,
    ),
    EnvVar(
        "FS_INBOX_DIR",
        "$FS_HOME/inbox",
        "Folder the inbox sensor watches (`listings/` and `interactions/` below it).",
        attr="inbox_dir",
        parse=_path,
    ),
    EnvVar(
        "FS_ARCHIVE_DIR",
        "$FS_HOME/archive",
        "Where ingested files are moved.",
        attr="archive_dir",
        parse=_path,
    ),
    EnvVar("FS_DBT_TARGET", "fs", "dbt target in `dbt_project/profiles.yml`.", attr="dbt_target"),
    EnvVar(
        "FS_DBT_PROJECT_DIR",
        "$PROJECT_ROOT/dbt_project",
        "The dbt project folder (the image sets it: the package is installed in site-packages).",
    ),
    EnvVar(
        "FS_FEATURES_START_DATE",
        None,
        "First daily partition of the feature pipeline (YYYY-MM-DD). Unset: the day after the "
        "first ingested event (recorded in `$FS_HOME/first_event_day`; the UI shows the new range "
        "after a reload of the code location), or today before any data.",
        attr="features_start_date",
        parse=date.fromisoformat,
        unset="(from the data)",
    ),
    EnvVar(
        "DAGSTER_HOME",
        "$FS_HOME/dagster_home",
        "Dagster instance folder; `dagster.yaml` (Postgres storage) is copied there.",
        attr="dagster_home",
        parse=_path,
    ),
    *(
        EnvVar(
            f"FS_PG_{part}",
            None,
            f"{what} of the database URL, exported for dbt's `profiles.yml` and `dagster.yaml`.",
            unset="derived",
            secret="value" if part == "PASSWORD" else None,
        )
        for part, what in (
            ("HOST", "Host"),
            ("PORT", "Port"),
            ("USER", "User"),
            ("PASSWORD", "Password"),
            ("DBNAME", "Database name"),
        )
    ),
    EnvVar(
        "FS_FEATURE_CUTOFF",
        None,
        "The partition cutoff `T` dbt uses when `--vars cutoff` is not given (set by the Dagster asset).",
        unset="today 00:00 UTC",
    ),
    EnvVar(
        "FS_FEATURE_RANGE_START",
        None,
        "The first cutoff `S` of a range run (a backfill `S..T` in one dbt invocation; set by the Dagster asset).",
        unset="one partition",
    ),
    EnvVar(
        "FS_REDIS_PREFIX",
        "fs",
        "Prefix of every online-store key in Redis (one Redis can host several stores).",
        attr="redis_prefix",
    ),
    EnvVar(
        "FS_REDIS_TIMEOUT_SECONDS",
        "0.5",
        "Connect/read timeout of online-store reads; Redis slower than this counts as down (503).",
        attr="redis_timeout_seconds",
        parse=float,
    ),
    EnvVar(
        "FS_ONLINE_MAX_AGE_HOURS",
        "36",
        "Served features whose snapshot as_of is older than this are flagged stale.",
        attr="online_max_age_hours",
        parse=float,
    ),
    EnvVar(
        "FS_ONLINE_CACHE_SIZE",
        "10000",
        "Entries of the serving API's in-process feature cache (0: off).",
        attr="online_cache_size",
        parse=int,
    ),
    EnvVar(
        "FS_ONLINE_CACHE_TTL_SECONDS",
        "1.0",
        "How long the API trusts its cached snapshot pointer before asking Redis again.",
        attr="online_cache_ttl_seconds",
        parse=float,
    ),
    EnvVar(
        "FS_ONLINE_BUILD_TTL_SECONDS",
        "3600",
        "TTL of a snapshot while it is written: a killed sync's partial snapshot expires after this.",
        attr="online_build_ttl_seconds",
        parse=int,
    ),
    EnvVar(
        "FS_ONLINE_GRACE_SECONDS",
        "60",
        "How long a replaced snapshot stays readable after a flip (in-flight readers), then expires.",
        attr="online_grace_seconds",
        parse=int,
    ),
    EnvVar(
        "FS_MODEL_REGISTRY_DIR",
        "$FS_HOME/models",
        "Model registry folder (versions + `current` pointer); shared by training and the serving API.",
        attr="model_registry_dir",
        parse=_path,
    ),
    EnvVar(
        "FS_API_KEYS",
        "",
        "Comma-separated API keys; when set, every /v1 route needs X-API-Key.",
        attr="api_keys",
        parse=_keys,
        secret="keys",
    ),
    EnvVar(
        "FS_ALERT_WEBHOOK_URL",
        None,
        "Monitoring alerts are also POSTed (JSON) to this URL; they are always stored in "
        "`monitoring.alerts` and `$FS_HOME/logs/alerts.jsonl`.",
        secret="webhook",
    ),
    EnvVar(
        "FS_DRIFT_CONFIG",
        None,
        "JSON file overriding drift methods/thresholds per check and column "
        "([docs/monitoring.md](docs/monitoring.md)).",
    ),
    EnvVar(
        "FS_TEST_DATABASE_URL",
        None,
        "Tests only: server on which the tests create (and drop) a throw-away database.",
        unset="(embedded)",
        secret="url",
    ),
    EnvVar(
        "FS_TEST_REDIS_URL",
        None,
        "Tests only: Redis used by the tests (they only touch their own key prefix).",
        unset="(embedded)",
        secret="url",
    ),
    EnvVar(
        "FS_TEST_CHROMIUM",
        "/usr/bin/chromium",
        "Tests only: the Chromium the browser test drives (Debian's package; `.ci/run` installs "
        "it). Missing: the test is skipped, or fails when `CI` is set.",
    ),
]

#: name -> declaration, in the order `fs-platform config` and the README list them
ENV_VARS: dict[str, EnvVar] = {var.name: var for var in _DECLARED}


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _expand(text: str, home: Path | None) -> str:
    text = text.replace("$PROJECT_ROOT", str(PROJECT_ROOT))
    return text.replace("$FS_HOME", str(home)) if home is not None else text


def raw_value(name: str, home: Path | None = None) -> str | None:
    """The variable's text: the environment's, else its declared default (expanded), else None."""
    return _env(name) or (None if ENV_VARS[name].default is None else _expand(ENV_VARS[name].default, home))


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
    features_start_date: date | None
    dagster_home: Path
    redis_prefix: str
    redis_timeout_seconds: float
    online_max_age_hours: float
    online_cache_size: int
    online_cache_ttl_seconds: float
    online_build_ttl_seconds: int
    online_grace_seconds: int
    model_registry_dir: Path
    api_keys: tuple[str, ...]

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"


def get_settings() -> Settings:
    """Read the environment now (tests change it between cases)."""
    home = _path(raw_value("FS_HOME") or "")
    values: dict[str, Any] = {}
    for var in ENV_VARS.values():
        if var.attr is None:
            continue
        text = raw_value(var.name, home)
        values[var.attr] = None if text is None else var.parse(text)
    missing = {f.name for f in fields(Settings)} - set(values)
    assert not missing, f"Settings fields without a declaration: {missing}"
    return Settings(**values)


def pin_home(home: Path | None = None) -> Path:
    """Resolve FS_HOME once and export it absolute, so child processes in other folders agree.

    Also sets the owner-only umask: everything the platform writes under its state folder
    (raw event archives, models, logs, reports, server data) holds user data.
    """
    os.umask(PRIVATE_UMASK)
    home = home or get_settings().home
    os.environ["FS_HOME"] = str(home)
    return home


# ---------------------------------------------------------------- display


def redact_url(url: str) -> str:
    """Hide the password of a URL (``user:pw@``, ``:pw@``, ``?password=``) before it is shown."""
    try:
        parsed = urlparse(url)
        password = parsed.password
    except ValueError:
        return "***"
    netloc = parsed.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = parsed.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in ("password", "pass", "token") for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() in ("password", "pass", "token") else v) for k, v in pairs],
                safe="*",
            )
    return urlunparse(parsed._replace(netloc=netloc, query=query))


def redact_webhook(url: str) -> str:
    """Webhook URLs carry their token in the path: keep only where they go."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.hostname or ''}/***"


def redact_value(var: EnvVar, value: str) -> str:
    """``value`` of ``var`` as it may be shown on a terminal or in a log."""
    if var.secret == "url":
        return redact_url(value)
    if var.secret == "keys":
        return f"*** ({len(_keys(value))} keys)"
    if var.secret == "webhook":
        return redact_webhook(value)
    if var.secret:
        return "***"
    return value


def config_rows() -> list[tuple[str, str, str]]:
    """(name, current value or default, description) for ``fs-platform config``; secrets redacted."""
    rows = []
    for var in ENV_VARS.values():
        current = _env(var.name)
        rows.append((var.name, redact_value(var, current) if current else var.shown_default, var.description))
    return rows


def markdown_table() -> str:
    """The README's configuration table, generated from the declarations."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for var in ENV_VARS.values():
        default = f"`{var.default}`" if var.default else var.unset
        lines.append(f"| `{var.name}` | {default} | {var.description} |")
    return "\n".join(lines)
