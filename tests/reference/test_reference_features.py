"""Tests of the reference implementation itself, on tiny hand-computed examples."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from .features import reference_price_pct, reference_user_features

T = datetime(2024, 6, 1, tzinfo=UTC)


def _listings(rows: list[tuple[str, str, str, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["listing_id", "category_id", "city", "price"])


def _events(rows: list[tuple[str, str, str, datetime]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "listing_id", "event_type", "occurred_at"])
    df["occurred_at"] = pd.to_datetime(df["occurred_at"], utc=True)
    return df


LISTINGS = _listings(
    [
        ("l1", "cars", "berlin", 100.0),
        ("l2", "cars", "munich", 200.0),
        ("l3", "bikes", "berlin", 50.0),
        ("l4", "bikes", "berlin", None),
    ]
)


def _days(n: float) -> datetime:
    return T - timedelta(days=n)


# --- price_pct ---------------------------------------------------------------


def test_price_pct_ties_single_and_null() -> None:
    listings = _listings(
        [
            ("a", "c1", "x", 10.0),
            ("b", "c1", "x", 20.0),
            ("c", "c1", "x", 20.0),
            ("d", "c1", "x", 30.0),
            ("e", "c1", "x", 40.0),
            ("f", "c1", "x", float("nan")),
            ("g", "c2", "x", 99.0),
            ("h", "c2", "x", None),
            ("i", "c3", "x", None),
        ]
    )
    pct = reference_price_pct(listings)
    # c1 has n = 5 priced listings: ranks 1, 2, 2, 4, 5 -> (rank - 1) / 4.
    assert pct["a"] == 0.0
    assert pct["b"] == 0.25
    assert pct["c"] == 0.25
    assert pct["d"] == 0.75
    assert pct["e"] == 1.0
    assert pct["f"] is None
    # c2 has a single priced listing -> 0.0.
    assert pct["g"] == 0.0
    assert pct["h"] is None
    assert pct["i"] is None


# --- window bounds and membership ----------------------------------------------


def test_window_bounds_exact() -> None:
    events = _events(
        [
            ("at_cutoff", "l1", "listing_viewed", T),  # excluded
            ("at_start", "l1", "listing_viewed", _days(90)),  # included
            ("before_start", "l1", "listing_viewed", _days(90) - timedelta(microseconds=1)),  # excluded
        ]
    )
    feats = reference_user_features(events, LISTINGS, T)
    assert set(feats) == {"at_start"}
    # One view aged 90 days, half-life 14: S = 0.5 ** (90 / 14).
    s = 0.5 ** (90 / 14)
    assert feats["at_start"]["activity_score"] == pytest.approx(1 - math.exp(-s / 10))


def test_impressions_only_and_unknown_types_absent() -> None:
    events = _events(
        [
            ("imp", "l1", "impression", _days(1)),
            ("imp", "l2", "impression", _days(2)),
            ("unk", "l1", "listing_shared", _days(1)),
            ("ok", "l1", "impression", _days(1)),
            ("ok", "l1", "listing_viewed", _days(1)),
        ]
    )
    feats = reference_user_features(events, LISTINGS, T)
    assert set(feats) == {"ok"}
    # The impression does not dilute the shares.
    assert feats["ok"]["category_affinity"] == {"cars": 1.0}


# --- decay -----------------------------------------------------------------


def test_exponential_decay_by_hand() -> None:
    # View on l1 (cars/berlin) 14 days ago: v = 1 * 0.5 = 0.5.
    # Favorite on l3 (bikes/berlin) 28 days ago: v = 3 * 0.25 = 0.75.
    events = _events(
        [
            ("u", "l1", "listing_viewed", _days(14)),
            ("u", "l3", "listing_favorited", _days(28)),
        ]
    )
    f = reference_user_features(events, LISTINGS, T)["u"]
    s = 0.5 + 0.75
    assert f["category_affinity"] == pytest.approx({"cars": 0.5 / s, "bikes": 0.75 / s})
    assert f["city_affinity"] == pytest.approx({"berlin": 1.0})
    # price_pct: l1 = 0.0 (cheapest of 2 cars), l3 = 0.0 (only priced bike).
    assert f["price_sensitivity"] == pytest.approx(0.0)
    assert f["activity_score"] == pytest.approx(1 - math.exp(-1.25 / 10))


def test_linear_decay_by_hand() -> None:
    # window 90: view on l2 45 days ago -> v = 1 * 0.5; contact on l1 9 days ago -> v = 5 * 0.9 = 4.5.
    events = _events(
        [
            ("u", "l2", "listing_viewed", _days(45)),
            ("u", "l1", "listing_contact_clicked", _days(9)),
        ]
    )
    f = reference_user_features(events, LISTINGS, T, decay="linear")["u"]
    assert f["category_affinity"] == pytest.approx({"cars": 1.0})
    assert f["city_affinity"] == pytest.approx({"munich": 0.1, "berlin": 0.9})
    # price_pct: l2 = 1.0, l1 = 0.0 -> (0.5 * 1 + 4.5 * 0) / 5 = 0.1.
    assert f["price_sensitivity"] == pytest.approx(0.1)
    assert f["activity_score"] == pytest.approx(1 - math.exp(-5 / 10))


def test_fractional_age_and_custom_params() -> None:
    # 12 hours ago, half-life 1 day -> decay 0.5 ** 0.5; activity_scale 2.
    events = _events([("u", "l1", "listing_viewed", T - timedelta(hours=12))])
    f = reference_user_features(events, LISTINGS, T, half_life_days=1, activity_scale=2)["u"]
    assert f["activity_score"] == pytest.approx(1 - math.exp(-(0.5**0.5) / 2))


def test_linear_degenerate_case() -> None:
    events = _events([("u", "l1", "listing_viewed", _days(90))])
    f = reference_user_features(events, LISTINGS, T, decay="linear")["u"]
    assert f == {
        "category_affinity": {},
        "city_affinity": {},
        "price_sensitivity": None,
        "activity_score": 0.0,
    }


def test_unknown_decay_raises() -> None:
    with pytest.raises(ValueError):
        reference_user_features(_events([]), LISTINGS, T, decay="step")


# --- shares, price sensitivity ---------------------------------------------------


def test_shares_sum_to_one() -> None:
    events = _events(
        [
            ("u", "l1", "listing_viewed", _days(3)),
            ("u", "l2", "listing_favorited", _days(10)),
            ("u", "l3", "listing_contact_clicked", _days(40)),
            ("u", "l4", "listing_viewed", _days(70)),
        ]
    )
    f = reference_user_features(events, LISTINGS, T)["u"]
    assert set(f["category_affinity"]) == {"cars", "bikes"}
    assert set(f["city_affinity"]) == {"berlin", "munich"}
    assert sum(f["category_affinity"].values()) == pytest.approx(1.0)
    assert sum(f["city_affinity"].values()) == pytest.approx(1.0)


def test_price_sensitivity_none_when_only_null_priced() -> None:
    events = _events([("u", "l4", "listing_viewed", _days(1))])
    f = reference_user_features(events, LISTINGS, T)["u"]
    assert f["price_sensitivity"] is None
    assert f["category_affinity"] == {"bikes": 1.0}


def test_price_sensitivity_ignores_null_priced_events() -> None:
    # Views on l2 (pct 1.0) and l4 (null price), both 14 days old: only l2 counts -> 1.0.
    events = _events(
        [
            ("u", "l2", "listing_viewed", _days(14)),
            ("u", "l4", "listing_viewed", _days(14)),
        ]
    )
    f = reference_user_features(events, LISTINGS, T)["u"]
    assert f["price_sensitivity"] == pytest.approx(1.0)
    assert f["category_affinity"] == pytest.approx({"cars": 0.5, "bikes": 0.5})
    assert f["activity_score"] == pytest.approx(1 - math.exp(-1.0 / 10))
