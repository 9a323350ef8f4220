"""Data-quality measures: completeness of a feature partition, ingestion reject rate, null/range rules.

Each returns plain numbers; the Dagster checks turn them into pass/fail with a severity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg2.extensions
from psycopg2 import sql

from fs_platform.features.registry import FeatureView
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

#: the sum of a map's shares may differ from its declared ``sums_to`` by rounding only
SUM_TOLERANCE = 1e-6


def rule_predicates(view: FeatureView) -> dict[str, sql.Composable]:
    """Rule name -> SQL predicate marking a row of ``view`` that breaks a declared rule of a feature.

    Generated from the registry (null policy ``reject``, ``min``/``max``, ``allowed_values``, a map's
    ``sums_to``), so a new feature view or feature gets its checks with no code change.
    """
    rules: dict[str, sql.Composable] = {}
    for feature in view.features:
        column = sql.Identifier(feature.name)
        is_map = feature.type == "map"
        # a map's rules apply to each of its values
        value = sql.SQL("e.value::float8") if is_map else column
        if feature.null_policy == "reject":
            rules[f"{feature.name}_null"] = sql.SQL("{} is null").format(column)
        if feature.min is not None or feature.max is not None:
            out = []
            if feature.min is not None:
                out.append(sql.SQL("{} < {}").format(value, sql.Literal(feature.min)))
            if feature.max is not None:
                op = sql.SQL("> " if feature.max_inclusive else ">= ")
                out.append(sql.Composed([value, sql.SQL(" "), op, sql.Literal(feature.max)]))
            low = "-inf" if feature.min is None else f"{feature.min:g}"
            high = "inf" if feature.max is None else f"{feature.max:g}"
            close = "]" if feature.max_inclusive and feature.max is not None else ")"
            rules[f"{feature.name}_out_of_[{low},{high}{close}"] = _for_values(
                column, is_map, sql.SQL(" or ").join(out)
            )
        if feature.allowed_values is not None:
            allowed = sql.SQL(", ").join(sql.Literal(v) for v in feature.allowed_values)
            target = sql.SQL("e.value") if is_map else column
            rules[f"{feature.name}_not_in_allowed_values"] = _for_values(
                column, is_map, sql.SQL("{} not in ({})").format(target, allowed)
            )
        if feature.sums_to is not None:
            rules[f"{feature.name}_not_summing_to_{feature.sums_to:g}"] = sql.SQL(
                "{c} <> '{{}}'::jsonb and abs(coalesce((select sum(value::float8) from jsonb_each_text({c})), 0)"
                " - {s}) > {tol}"
            ).format(c=column, s=sql.Literal(feature.sums_to), tol=sql.Literal(SUM_TOLERANCE))
    return rules


def _for_values(column: sql.Composable, is_map: bool, predicate: sql.Composable) -> sql.Composable:
    """The predicate itself for a scalar; for a map: true when any of its values satisfies it."""
    if not is_map:
        return predicate
    return sql.SQL("exists (select 1 from jsonb_each_text({}) as e where {})").format(column, predicate)


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


def range_violations(
    conn: psycopg2.extensions.connection, partition: date, view: FeatureView
) -> RangeViolations:
    """Rows, violating rows and violating rows per declared rule of ``view``'s partition ``partition``."""
    rules = rule_predicates(view)
    selects = [sql.SQL("count(*) filter (where {})").format(p) for p in rules.values()]
    any_rule = sql.SQL(" or ").join(sql.SQL("coalesce(({}), false)").format(p) for p in rules.values())
    if not rules:
        any_rule = sql.SQL("false")
    query = sql.SQL("select {} from {} where {} = %s").format(
        sql.SQL(", ").join(
            [sql.SQL("count(*)"), sql.SQL("count(*) filter (where {})").format(any_rule), *selects]
        ),
        sql.Identifier(*view.relation),
        sql.Identifier(view.timestamp),
    )
    with conn.cursor() as cur:
        cur.execute(query, (day_start(partition),))
        rows, violating, *counts = cur.fetchone()
    conn.rollback()
    return RangeViolations(
        int(rows), int(violating), {name: int(n) for name, n in zip(rules, counts, strict=True)}
    )
