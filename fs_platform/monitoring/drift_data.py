"""Pull the frames the drift reports compare out of PostgreSQL into pandas.

Rows of different grains (events, engaged events, active user-days, new listings) are stacked into
one frame with the other grains' columns left null: Evidently drops nulls column by column, so one
report (one HTML file) covers the whole input-drift check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2.extensions
from psycopg2 import sql

from fs_platform.features.registry import FeatureView, Registry

#: reference rows above this are sampled (seeded): effect sizes do not need millions of rows
MAX_REFERENCE_ROWS = 300_000

_EVENTS_SQL = """
select e.event_type, e.device_type, l.category_id
from raw.user_interactions e
join raw.listings l using (listing_id)
where e.occurred_at >= %(start)s and e.occurred_at < %(end)s
"""

# the price of engaged (w > 0) events' listings, raw and relative to its category's median price
_ENGAGED_SQL = """
with medians as (
    select category_id, percentile_cont(0.5) within group (order by price)::float8 as median_price
    from raw.listings where price > 0 group by category_id
)
select l.price::float8 as engaged_price,
       ln(l.price::float8 / m.median_price) as engaged_log_price_vs_category
from raw.user_interactions e
join raw.listings l using (listing_id)
join medians m using (category_id)
where e.occurred_at >= %(start)s and e.occurred_at < %(end)s
  and e.event_type <> 'impression' and l.price > 0
"""

# per engaged event: had the user engaged with this category in the `lookback` days before that day?
# A preference shift shows up as engagement with categories new to their users (impressions would not
# show it: exploration puts most categories in front of every user within a few weeks).
_NOVELTY_SQL = """
with engaged as (
    select e.user_id, l.category_id, (e.occurred_at at time zone 'UTC')::date as day
    from raw.user_interactions e
    join raw.listings l using (listing_id)
    where e.occurred_at >= %(start)s - make_interval(days => %(lookback)s) and e.occurred_at < %(end)s
      and e.event_type <> 'impression'
),
user_category_days as (
    select user_id, category_id, day,
           day - lag(day) over (partition by user_id, category_id order by day) as gap
    from (select distinct user_id, category_id, day from engaged) d
)
select case when u.gap <= %(lookback)s then 'known' else 'new' end as engaged_category_novelty
from engaged e
join user_category_days u using (user_id, category_id, day)
where e.day >= %(start)s::date
"""

# per listing created in [start, end) with a price: ln(price / median price of its category in the
# catalogue as it stood at `catalogue_at`), clipped to +-3 (a factor of 20) so a mistyped price cannot
# move the mean on its own. Current and reference rows use the same medians, so the medians' own noise
# cancels; they only take the category mix out (prices differ across categories by orders of magnitude).
_NEW_LISTINGS_SQL = """
with medians as (
    select category_id, percentile_cont(0.5) within group (order by price)::float8 as median_price
    from raw.listings
    where price > 0 and created_at < %(catalogue_at)s
    group by category_id
)
select greatest(-3.0, least(3.0, ln(l.price::float8 / m.median_price))) as new_listing_log_price_vs_category
from raw.listings l
join medians m using (category_id)
where l.created_at >= %(start)s and l.created_at < %(end)s and l.price > 0
"""

_USER_DAYS_SQL = """
select count(*)::float8 as events_per_active_user
from raw.user_interactions
where occurred_at >= %(start)s and occurred_at < %(end)s
group by user_id, (occurred_at at time zone 'UTC')::date
"""


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _query(conn: psycopg2.extensions.connection, sql: str, params: dict) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
        names = [d.name for d in cur.description]
    conn.rollback()  # read-only: never leave the caller's connection idle in a transaction
    return pd.DataFrame(rows, columns=names)


def _cap(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    return frame.sample(n=MAX_REFERENCE_ROWS, random_state=seed) if len(frame) > MAX_REFERENCE_ROWS else frame


#: days of history the novelty flag looks back over
NOVELTY_LOOKBACK_DAYS = 28


def first_event_day(conn: psycopg2.extensions.connection) -> date | None:
    frame = _query(conn, "select min(occurred_at) as first from raw.user_interactions", {})
    first = frame["first"].iloc[0]
    return None if first is None or pd.isna(first) else first.astimezone(UTC).date()


def interactions_frame(
    conn: psycopg2.extensions.connection,
    start: date,
    end: date,
    *,
    novelty: bool = True,
    catalogue_at: date | None = None,
) -> pd.DataFrame:
    """Events (and new listings) of the UTC days ``[start, end)`` as one stacked frame (see the module
    docstring).

    ``novelty=False`` leaves out the category-novelty rows (callers do when the data does not reach
    ``NOVELTY_LOOKBACK_DAYS`` before ``start``: every category would look new). New listings' prices
    are relative to their category's median in the catalogue at the start of ``catalogue_at`` (default
    ``start``); pass the judged day for both sides of a comparison so both use the same medians.
    """
    params = {
        "start": day_start(start),
        "end": day_start(end),
        "lookback": NOVELTY_LOOKBACK_DAYS,
        "catalogue_at": day_start(catalogue_at or start),
    }
    parts = [
        _cap(_query(conn, _EVENTS_SQL, params)),
        _cap(_query(conn, _ENGAGED_SQL, params)),
        _cap(_query(conn, _USER_DAYS_SQL, params)),
        _cap(_query(conn, _NEW_LISTINGS_SQL, params)),
    ]
    if novelty:
        parts.append(_cap(_query(conn, _NOVELTY_SQL, params)))
    frame = pd.concat(parts, ignore_index=True)
    if "engaged_category_novelty" not in frame:
        frame["engaged_category_novelty"] = None
    for column in (
        "engaged_price",
        "engaged_log_price_vs_category",
        "events_per_active_user",
        "new_listing_log_price_vs_category",
    ):
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce").astype(np.float64)
    return frame


#: derived drift column of a map feature -> (column suffix, method, kind)
_MAP_PARTS = {
    "top": ("_top", "jensenshannon", "cat"),
    "top_share": ("_top_share", "wasserstein", "num"),
    "keys": ("_keys", "wasserstein", "num"),
}


def feature_drift_columns(view: FeatureView) -> dict[str, dict]:
    """The columns feature drift judges for ``view`` and their rules, from the yml's ``drift``
    declarations: a scalar feature as itself (numeric: Wasserstein, categorical or boolean:
    Jensen-Shannon, unless it names a method), a map through its top key (``<f>_top``), that key's
    value (``<f>_top_share``) and its number of keys (``<f>_keys``), each part only if declared."""
    columns: dict[str, dict] = {}
    for feature in view.features:
        if feature.drift is None:
            continue
        if feature.type == "map":
            for part, (suffix, method, kind) in _MAP_PARTS.items():
                if part in feature.drift:
                    columns[feature.name + suffix] = {
                        "method": method,
                        "threshold": feature.drift[part],
                        "kind": kind,
                    }
            continue
        kind = "num" if feature.type == "numeric" else "cat"
        method = feature.drift.get("method", "wasserstein" if kind == "num" else "jensenshannon")
        columns[feature.name] = {"method": method, "threshold": feature.drift["threshold"], "kind": kind}
    return columns


def _features_sql(view: FeatureView) -> sql.Composed:
    """One row per entity of a partition: every drift-declared feature, maps as their derived parts."""
    selected: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    for n, feature in enumerate(f for f in view.features if f.drift is not None):
        column = sql.Identifier(feature.name)
        if feature.type == "map":
            alias = sql.Identifier(f"m{n}")
            joins.append(
                sql.SQL(
                    "left join lateral (select key, value::float8 as share, count(*) over () as n "
                    "from jsonb_each_text(h.{column}) order by value::float8 desc, key limit 1) {alias} on true"
                ).format(column=column, alias=alias)
            )
            for source, suffix in (("key", "_top"), ("share", "_top_share"), ("n", "_keys")):
                selected.append(
                    sql.SQL("{}.{} as {}").format(
                        alias, sql.Identifier(source), sql.Identifier(feature.name + suffix)
                    )
                )
        elif feature.type == "boolean":
            selected.append(sql.SQL("h.{0}::text as {0}").format(column))
        else:
            selected.append(sql.SQL("h.{0}").format(column))
    if not selected:
        raise ValueError(f"feature view {view.name} declares no drift on any feature")
    return sql.SQL("select {selected} from {relation} h {joins} where h.{ts} = %(as_of)s").format(
        selected=sql.SQL(", ").join(selected),
        relation=sql.Identifier(*view.relation),
        joins=sql.SQL(" ").join(joins),
        ts=sql.Identifier(view.timestamp),
    )


def features_frame(conn: psycopg2.extensions.connection, view: FeatureView, as_of: date) -> pd.DataFrame:
    """One row per entity of the view's partition ``as_of`` with the columns feature drift judges."""
    with conn.cursor() as cur:
        frame = _query(conn, _features_sql(view).as_string(cur), {"as_of": day_start(as_of)})
    for column, rule in feature_drift_columns(view).items():
        if rule["kind"] == "num":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame


def drift_views(registry: Registry) -> list[FeatureView]:
    """The feature views with at least one drift declaration (each gets a feature drift check)."""
    return [v for v in registry.views.values() if any(f.drift is not None for f in v.features)]


@dataclass(frozen=True)
class Window:
    """The current slice and its reference, as UTC day ranges [start, end)."""

    current: tuple[date, date]
    reference: tuple[date, date]


def input_window(day: date, reference_days: int) -> Window:
    """Events of ``day`` against the ``reference_days`` days before it."""
    return Window(
        current=(day, day + timedelta(days=1)), reference=(day - timedelta(days=reference_days), day)
    )
