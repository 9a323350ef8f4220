"""Where the data starts: the first ingested event's UTC day, remembered in the state folder.

The daily partitions of the feature pipeline start the day after it (the first cutoff with any
event before it), so the Dagster UI shows the days that can exist instead of months of "missing"
partitions before the data. A file, not a query: definitions load without a database.
"""

from __future__ import annotations

from datetime import UTC, date
from pathlib import Path

import psycopg2.extensions

FIRST_EVENT_DAY_FILE = "first_event_day"


def first_event_day(home: Path) -> date | None:
    """The first event's UTC day recorded under ``home``, or None before any ingestion."""
    path = home / FIRST_EVENT_DAY_FILE
    try:
        return date.fromisoformat(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def record_first_event_day(conn: psycopg2.extensions.connection, home: Path) -> date | None:
    """Store the earliest event day of ``raw.user_interactions`` (only ever moves earlier).

    Once a day is known, only events before it are looked for: the BRIN index on ``occurred_at``
    narrows that to the block ranges holding such events (usually none), so an ingestion run does
    not scan the whole table for a minimum that rarely moves.
    """
    known = first_event_day(home)
    with conn.cursor() as cur:
        cur.execute("select to_regclass('raw.user_interactions') is not null")
        if not cur.fetchone()[0]:
            return known
        if known is None:
            cur.execute("select min(occurred_at) from raw.user_interactions")
        else:
            cur.execute(
                "select min(occurred_at) from raw.user_interactions "
                "where occurred_at < (%s::date)::timestamp at time zone 'UTC'",
                (known,),
            )
        earliest = cur.fetchone()[0]
    conn.rollback()
    if earliest is None:
        return known
    found = earliest.astimezone(UTC).date()
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{FIRST_EVENT_DAY_FILE}.tmp"
    tmp.write_text(found.isoformat() + "\n")
    tmp.replace(home / FIRST_EVENT_DAY_FILE)
    return found
