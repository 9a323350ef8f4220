"""Data-quality measures: completeness of a feature partition, ingestion reject rate, null/range rules.

Each returns plain numbers; the Dagster checks turn them into pass/fail with a severity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg2.extensions

from fs_platform.monitoring.drift_data import day_start

COMPLETENESS_MIN = 0.95  # ERROR below this share
REJECTED_RATE_MAX = 0.001  # WARN above 0.1 %

# users with a weighted event in the window [T - window, T) and whether the snapshot T has them
_COMPLETENESS_SQL = """
with active as (
    select distinct user_id from raw.user_interactions
    where occurred_at >= %(cutoff)s - make_interval(days => %(window_days)s) and occurred_at < %(cutoff)s
      and event_type <> 'impression'
)
select count(*) as active_users,
       count(h.user_id) as with_features,
       (select count(*) from features.user_features_history where as_of = %(cutoff)s) as snapshot_rows
from active a
left join features.user_features_history h on h.user_id = a.user_id and h.as_of = %(cutoff)s
"""

# the deliveries of the 24 hours ending at the latest one
_REJECTED_SQL = """
with recent as (
    select * from raw.ingested_files
    where kind = 'interactions'
      and ingested_at > (select max(ingested_at) from raw.ingested_files where kind = 'interactions')
                        - interval '24 hours'
)
select count(*), coalesce(sum(rows_read), 0), coalesce(sum(rejected), 0),
       min(ingested_at), max(ingested_at)
from recent
"""

#: rule name -> SQL predicate that marks a violating row of a user_features snapshot
RANGE_RULES: dict[str, str] = {
    "activity_score_null_or_out_of_[0,1)": "activity_score is null or activity_score < 0 or activity_score >= 1",
    "price_sensitivity_out_of_[0,1]": "price_sensitivity < 0 or price_sensitivity > 1",
    "category_affinity_null": "category_affinity is null",
    "city_affinity_null": "city_affinity is null",
    "category_shares_not_summing_to_1": "category_affinity <> '{}'::jsonb and abs(coalesce((select sum(value::float8) "
    "from jsonb_each_text(category_affinity)), 0) - 1) > 1e-6",
    "city_shares_not_summing_to_1": "city_affinity <> '{}'::jsonb and abs(coalesce((select sum(value::float8) "
    "from jsonb_each_text(city_affinity)), 0) - 1) > 1e-6",
    "last_updated_at_null": "last_updated_at is null",
}


@dataclass(frozen=True)
class Completeness:
    active_users: int
    with_features: int
    snapshot_rows: int

    @property
    def share(self) -> float:
        return self.with_features / self.active_users if self.active_users else 1.0


def completeness(
    conn: psycopg2.extensions.connection, partition: date, window_days: int = 90
) -> Completeness:
    """Share of users with a weighted event in the partition's window that have a features row."""
    with conn.cursor() as cur:
        cur.execute(_COMPLETENESS_SQL, {"cutoff": day_start(partition), "window_days": window_days})
        active, covered, rows = cur.fetchone()
    conn.rollback()
    return Completeness(int(active), int(covered), int(rows))


@dataclass(frozen=True)
class RejectedRate:
    files: int
    rows_read: int
    rejected: int
    first_delivery: datetime | None
    last_delivery: datetime | None

    @property
    def rate(self) -> float:
        return self.rejected / self.rows_read if self.rows_read else 0.0

    @property
    def deliveries(self) -> str:
        """The deliveries' time span as ISO timestamps (or "none")."""
        if self.first_delivery is None or self.last_delivery is None:
            return "none"
        return f"{self.first_delivery.isoformat(timespec='seconds')}..{self.last_delivery.isoformat(timespec='seconds')}"


def rejected_rate(conn: psycopg2.extensions.connection) -> RejectedRate:
    """Rejected / read rows of the interaction deliveries of the last 24 h (ending at the newest)."""
    with conn.cursor() as cur:
        cur.execute(_REJECTED_SQL)
        files, rows_read, rejected, first, last = cur.fetchone()
    conn.rollback()
    return RejectedRate(int(files), int(rows_read), int(rejected), first, last)


@dataclass(frozen=True)
class RangeViolations:
    """Rows of a snapshot, rows breaking at least one rule, and violating rows per rule."""

    rows: int
    violating_rows: int
    per_rule: dict[str, int]

    @property
    def summary(self) -> str:
        """Counts with their units: a bare "877" next to "passed" reads as 877 violations."""
        if not self.rows:
            return "empty snapshot: 0 rows"
        text = f"{self.violating_rows:,} of {self.rows:,} rows violate a null/range rule"
        broken = [f"{name}: {n:,} rows" for name, n in self.per_rule.items() if n]
        return f"{text}: {', '.join(broken)}" if broken else text


def range_violations(conn: psycopg2.extensions.connection, partition: date) -> RangeViolations:
    """Rows, violating rows and violating rows per rule of the snapshot of partition ``partition``."""
    selects = ", ".join(f"count(*) filter (where {sql})" for sql in RANGE_RULES.values())
    any_rule = " or ".join(f"coalesce(({sql}), false)" for sql in RANGE_RULES.values())
    with conn.cursor() as cur:
        cur.execute(
            f"select count(*), count(*) filter (where {any_rule}), {selects} "
            "from features.user_features_history where as_of = %s",
            (day_start(partition),),
        )
        rows, violating, *counts = cur.fetchone()
    conn.rollback()
    return RangeViolations(
        int(rows), int(violating), {name: int(n) for name, n in zip(RANGE_RULES, counts, strict=True)}
    )
