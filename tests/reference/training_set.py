"""Plain-Python reference of the point-in-time training set (semantics §5): loops and dicts, no SQL.

Deliberately naive: for every (user, listing, UTC day) it walks all of the pair's events and all
of the user's snapshots, so it is obviously right and only usable on small data.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

POSITIVE = {"listing_contact_clicked", "listing_favorited"}


def reference_examples(
    events: list[tuple[str, str, str, str, datetime, str, datetime]],
    history: list[tuple[str, datetime, dict, dict, float | None, float]],
    listings: dict[str, list[tuple[datetime, dict]]],
    start: date,
    end: date,
    max_staleness: timedelta = timedelta(days=7),
    availability_lag: timedelta = timedelta(0),
) -> dict[tuple[str, str, str], dict]:
    """events: (event_id, user_id, listing_id, event_type, occurred_at, device_type, ingested_at);
    history: (user_id, as_of, category_affinity, city_affinity, price_sensitivity, activity_score);
    listings: listing_id -> [(as_of, listing_features_history row)]: the item features of the
    latest listing partition under the same lag and staleness rule as the user's snapshot.
    Returns {(user, listing, 'YYYY-MM-DD'): example}."""
    pairs: dict[tuple[str, str, str], list] = defaultdict(list)
    for event in events:
        day = event[4].astimezone(UTC).date()
        if start <= day <= end:
            pairs[(event[1], event[2], day.isoformat())].append(event)
    snapshots: dict[str, list] = defaultdict(list)
    for row in history:
        snapshots[row[0]].append(row)

    out = {}
    for (user, listing, day), pair_events in pairs.items():
        first = min(pair_events, key=lambda e: (e[4], e[6], e[0]))  # ties: earliest delivered
        t = first[4]
        best = None
        for snap in snapshots[user]:
            as_of = snap[1]
            if (
                as_of + availability_lag <= t
                and as_of >= t - max_staleness
                and (best is None or as_of > best[1])
            ):
                best = snap
        item: dict = {}
        item_as_of = None
        for as_of, row in listings.get(listing, []):
            if (
                as_of + availability_lag <= t
                and as_of >= t - max_staleness
                and (item_as_of is None or as_of > item_as_of)
            ):
                item, item_as_of = row, as_of
        example = {
            "example_time": t,
            "label": int(any(e[3] in POSITIVE for e in pair_events)),
            "device_type": first[5],
            "day_of_week": t.astimezone(UTC).weekday(),
            "hour_of_day": t.astimezone(UTC).hour,
            "category_id": item.get("category_id"),
            "city": item.get("city"),
            "price": item.get("price"),
            "price_pct": item.get("price_pct"),
            "features_as_of": best[1] if best else None,
            "price_sensitivity": best[4] if best else None,
            "activity_score": best[5] if best else None,
            "user_category_affinity": None,
            "user_city_affinity": None,
            "price_gap": None,
        }
        if best is not None:
            example["user_category_affinity"] = best[2].get(item.get("category_id"), 0.0)
            example["user_city_affinity"] = best[3].get(item.get("city"), 0.0)
            if best[4] is not None and item.get("price_pct") is not None:
                example["price_gap"] = abs(item["price_pct"] - best[4])
        out[(user, listing, day)] = example
    return out
