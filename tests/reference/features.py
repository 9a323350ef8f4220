"""Independent plain-Python reference implementation of the user feature formulas.

Used by tests to cross-check the dbt/SQL implementation. Deliberately written as simple
loops over events with ``math`` only; pandas is used just to read the input frames.
"""

from __future__ import annotations

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


def reference_price_pct(listings: pd.DataFrame) -> dict[str, float | None]:
    """Map listing_id -> percent_rank of its price within its category (SQL ``percent_rank()``).

    percent_rank = (rank - 1) / (n - 1), rank = 1 + number of strictly lower prices in the
    category (ties share the lowest rank); 0.0 when the category has a single priced listing.
    Listings with a null price map to None and do not count towards n.
    """
    prices_by_category: dict[str, list[float]] = {}
    for row in listings.itertuples(index=False):
        if not _is_null(row.price):
            prices_by_category.setdefault(row.category_id, []).append(float(row.price))

    result: dict[str, float | None] = {}
    for row in listings.itertuples(index=False):
        if _is_null(row.price):
            result[row.listing_id] = None
            continue
        prices = prices_by_category[row.category_id]
        n = len(prices)
        if n == 1:
            result[row.listing_id] = 0.0
            continue
        price = float(row.price)
        rank = 1
        for other in prices:
            if other < price:
                rank += 1
        result[row.listing_id] = (rank - 1) / (n - 1)
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
    price_pct = reference_price_pct(listings)
    listing_info = {row.listing_id: (row.category_id, row.city) for row in listings.itertuples(index=False)}

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
        if ev.listing_id not in listing_info:
            continue
        category, city = listing_info[ev.listing_id]
        age_days = (cutoff_ts - t).total_seconds() / 86400
        v = w * _decay(age_days, decay, half_life_days, window_days)

        user = ev.user_id
        total[user] = total.get(user, 0.0) + v
        cats = by_category.setdefault(user, {})
        cats[category] = cats.get(category, 0.0) + v
        cities = by_city.setdefault(user, {})
        cities[city] = cities.get(city, 0.0) + v
        pct = price_pct[ev.listing_id]
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
