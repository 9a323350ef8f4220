"""Alerts: one row in ``monitoring.alerts``, one JSON line in ``$FS_HOME/logs/alerts.jsonl``, and a POST
to ``FS_ALERT_WEBHOOK_URL`` when it is set.

The table is what operators query; the log file survives a lost database; the webhook reaches a chat or
pager. A failing webhook never loses the alert (it is stored first) and never fails the sensor.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2.extensions

from fs_platform.infra.config import get_settings, redact_webhook

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0

_DDL = """
create schema if not exists monitoring;
create table if not exists monitoring.alerts (
    alert_id     bigserial primary key,
    created_at   timestamptz not null default now(),
    kind         text not null,
    asset        text,
    partition    text,
    check_name   text,
    severity     text not null,
    message      text not null,
    report       text,
    run_id       text,
    dedup_key    text unique,
    details      jsonb not null default '{}'::jsonb,
    webhook_status text
);
"""


@dataclass
class Alert:
    """What happened, where (asset, partition, check) and where to look (report, run)."""

    kind: str  # "drift" | "quality" | "run_failure"
    severity: str  # "WARN" | "ERROR"
    message: str
    asset: str | None = None
    partition: str | None = None
    check_name: str | None = None
    report: str | None = None
    run_id: str | None = None
    dedup_key: str | None = None  # the same key is recorded once (sensor re-evaluations)
    details: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def ensure_schema(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext('fs_platform.monitoring_ddl'))")
        cur.execute(_DDL)
    conn.commit()


def alerts_log_path() -> Path:
    return get_settings().home / "logs" / "alerts.jsonl"


def post_webhook(url: str, alert: Alert, timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> str:
    """POST the alert as JSON; returns 'HTTP <code>' or the error (never raises)."""
    body = json.dumps({"text": f"[{alert.severity}] {alert.message}", "alert": asdict(alert)}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"error: {exc}"


def record(conn: psycopg2.extensions.connection, alert: Alert) -> bool:
    """Store the alert (table + log), then notify the webhook. False if ``dedup_key`` was seen before."""
    ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute(
            """insert into monitoring.alerts
               (kind, asset, partition, check_name, severity, message, report, run_id, dedup_key, details)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
               on conflict (dedup_key) do nothing returning alert_id""",
            (
                alert.kind,
                alert.asset,
                alert.partition,
                alert.check_name,
                alert.severity,
                alert.message,
                alert.report,
                alert.run_id,
                alert.dedup_key,
                json.dumps(alert.details, default=str),
            ),
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return False
    path = alerts_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(asdict(alert), default=str) + "\n")
    url = os.environ.get("FS_ALERT_WEBHOOK_URL")
    if url:
        status = post_webhook(url, alert)
        if not status.startswith("HTTP 2"):
            log.warning("alert webhook %s: %s", redact_webhook(url), status)
        with conn.cursor() as cur:
            cur.execute(
                "update monitoring.alerts set webhook_status = %s where alert_id = %s", (status, row[0])
            )
        conn.commit()
    return True


def recent(conn: psycopg2.extensions.connection, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerts, newest first."""
    ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute("select * from monitoring.alerts order by alert_id desc limit %s", (limit,))
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.rollback()
    return rows
