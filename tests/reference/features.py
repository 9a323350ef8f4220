"""Independent plain-Python reference implementation of the user feature formulas.

Used by tests to cross-check the dbt/SQL implementation. Deliberately written as simple
loops over events with ``math`` only; pandas is used just to read the input frames.
"""

from __future__ import annotations

import bisect
import math
from datetime import datetime

import pandas as pd

EVENT_WEIGHTS: dict[str, float] = {
    "impression": 0.0,
    "listing_viewed": 1.0,
    "listing_favorited": 3.0,
    "listing_contact_clicked": 5.0,
}

DECAY_KINDS = ("exponential", "linear")


def _is_null(value: object) -> bool:
    """True for None / NaN / NA."""
    return value is None or bool(pd.isna(value))


def listing_versions(listings: pd.DataFrame) -> dict[str, list[dict]]:
    """listing_id -> its versions, oldest first, each ``{valid_from, category_id, city, price, live_from}``.

    ``listings`` may be a plain listing table (one version each, valid from ``created_at``, or from
    the beginning of time without that column) or a version table with a ``valid_from`` column.
    """
    far_past = pd.Timestamp.min.tz_localize("UTC")
    by_listing: dict[str, list[dict]] = {}
    for row in listings.to_dict("records"):
        created = row.get("created_at")
        created = far_past if _is_null(created) else pd.Timestamp(created)
        valid_from = row.get("valid_from")
        valid_from = created if _is_null(valid_from) else pd.Timestamp(valid_from)
        by_listing.setdefault(row["listing_id"], []).append(
            {
                "valid_from": valid_from,
                "category_id": row["category_id"],
                "city": str(row["city"]).lower(),
                "price": None if _is_null(row.get("price")) else float(row["price"]),
                "created_at": created,
            }
        )
    for versions in by_listing.values():
        versions.sort(key=lambda v: v["valid_from"])
        live_from = min(v["created_at"] for v in versions)
        if live_from == far_past:
            live_from = versions[0]["valid_from"]
        for v in versions:
            v["live_from"] = live_from
    return by_listing


def version_at(versions: list[dict], at: pd.Timestamp) -> dict | None:
    """The version in force just before ``at`` (valid_from < at), for a listing live before ``at``."""
    current = None
    for v in versions:
        if v["valid_from"] < at:
            current = v
    if current is None or not current["live_from"] < at:
        return None
    return current


def reference_price_pct(
    listings: pd.DataFrame | dict[str, list[dict]], at: datetime | None = None
) -> dict[str, float | None]:
    """Map listing_id -> percent_rank of its price within its category, among the priced listings
    live at ``at`` with the version in force just before it (SQL ``percent_rank()``).

    percent_rank = (rank - 1) / (n - 1), rank = 1 + number of strictly lower prices in the
    category (ties share the lowest rank); 0.0 when the category has a single priced listing.
    Listings with a null price map to None and do not count towards n; listings not live at ``at``
    are absent. ``at=None``: every listing's latest version.
    """
    when = pd.Timestamp.max.tz_localize("UTC") if at is None else pd.Timestamp(at)
    by_listing = listings if isinstance(listings, dict) else listing_versions(listings)
    state: dict[str, dict] = {}
    for listing_id, versions in by_listing.items():
        v = versions[-1] if at is None else version_at(versions, when)
        if v is not None:
            state[listing_id] = v

    prices_by_category: dict[str, list[float]] = {}
    for v in state.values():
        if v["price"] is not None:
            prices_by_category.setdefault(v["category_id"], []).append(v["price"])
    for prices in prices_by_category.values():
        prices.sort()

    result: dict[str, float | None] = {}
    for listing_id, v in state.items():
        if v["price"] is None:
            result[listing_id] = None
            continue
        prices = prices_by_category[v["category_id"]]
        n = len(prices)
        if n == 1:
            result[listing_id] = 0.0
            continue
        lower = bisect.bisect_left(prices, v["price"])  # how many prices are strictly lower
        result[listing_id] = lower / (n - 1)
    return result


def _decay(age_days: float, decay: str, half_life_days: float, window_days: float) -> float:
    """Decay factor for an event ``age_days`` old."""
    if decay == "exponential":
        return 0.5 ** (age_days / half_life_days)
    if decay == "linear":
        return 1.0 - age_days / window_days
    raise ValueError(f"unknown decay {decay!r}; expected one of {DECAY_KINDS}")


def reference_user_features(
    events: pd.DataFrame,
    listings: pd.DataFrame,
    cutoff: datetime,
    *,
    window_days: float = 90,
    half_life_days: float = 14,
    decay: str = "exponential",
    activity_scale: float = 10,
    weights: dict[str, float] = EVENT_WEIGHTS,
) -> dict[str, dict]:
    """Compute per-user features as of ``cutoff`` (tz-aware UTC).

    ``listings``: listing rows or listing versions (see ``listing_versions``). Each event counts
    with its listing's category, city and price percentile at the end of the event's UTC day.

    Returns ``{user_id: {"category_affinity": {cat: share}, "city_affinity": {city: share},
    "price_sensitivity": float | None, "activity_score": float}}`` for every user with at
    least one in-window event (``cutoff - window_days <= occurred_at < cutoff``) of weight > 0.
    """
    if decay not in DECAY_KINDS:
        raise ValueError(f"unknown decay {decay!r}; expected one of {DECAY_KINDS}")
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")

    cutoff_ts = pd.Timestamp(cutoff)
    window_start = cutoff_ts - pd.Timedelta(days=window_days)
    versions = listing_versions(listings)
    pct_at_day_end: dict[pd.Timestamp, dict[str, float | None]] = {}

    # Per-user accumulators.
    total: dict[str, float] = {}
    by_category: dict[str, dict[str, float]] = {}
    by_city: dict[str, dict[str, float]] = {}
    priced_v: dict[str, float] = {}
    priced_v_pct: dict[str, float] = {}
    has_priced: dict[str, bool] = {}

    for ev in events.itertuples(index=False):
        w = weights.get(ev.event_type)
        if w is None or w <= 0:
            continue
        t = pd.Timestamp(ev.occurred_at)
        if not (window_start <= t < cutoff_ts):
            continue
        # the listing as the user saw it: its version and price percentile at the end of the
        # event's UTC day (frozen there: later listings and price changes never move it)
        day_end = t.tz_convert("UTC").normalize() + pd.Timedelta(days=1)
        version = version_at(versions.get(ev.listing_id, []), day_end)
        if version is None:
            continue
        category, city = version["category_id"], version["city"]
        age_days = (cutoff_ts - t).total_seconds() / 86400
        v = w * _decay(age_days, decay, half_life_days, window_days)

        user = ev.user_id
        total[user] = total.get(user, 0.0) + v
        cats = by_category.setdefault(user, {})
        cats[category] = cats.get(category, 0.0) + v
        cities = by_city.setdefault(user, {})
        cities[city] = cities.get(city, 0.0) + v
        if day_end not in pct_at_day_end:
            pct_at_day_end[day_end] = reference_price_pct(versions, day_end)
        pct = pct_at_day_end[day_end][ev.listing_id]
        if pct is not None:
            has_priced[user] = True
            priced_v[user] = priced_v.get(user, 0.0) + v
            priced_v_pct[user] = priced_v_pct.get(user, 0.0) + v * pct

    result: dict[str, dict] = {}
    for user, s in total.items():
        if s == 0:
            # Degenerate: only linear-decay events exactly window_days old.
            result[user] = {
                "category_affinity": {},
                "city_affinity": {},
                "price_sensitivity": None,
                "activity_score": 0.0,
            }
            continue
        price_sensitivity = None
        if has_priced.get(user) and priced_v[user] != 0:
            price_sensitivity = priced_v_pct[user] / priced_v[user]
        result[user] = {
            "category_affinity": {c: x / s for c, x in by_category[user].items()},
            "city_affinity": {c: x / s for c, x in by_city[user].items()},
            "price_sensitivity": price_sensitivity,
            "activity_score": 1.0 - math.exp(-s / activity_scale),
        }
    return result
