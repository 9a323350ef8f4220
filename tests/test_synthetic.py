"""Tests of the synthetic marketplace generator (xs scale only, so the whole module runs in seconds).

They pin the output contract other code depends on (schemas, ids, time window, file layout), the
reproducibility guarantees, the realism targets of semantics §9 and the injected drifts.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fs_platform.dev.synthetic import (
    DEVICE_TYPES,
    DRIFT_KINDS,
    EVENT_TYPES,
    SCALES,
    SyntheticData,
    content_hash,
    generate,
    write_parquet,
)

END = dt.date(2026, 3, 2)  # a Monday; the xs period is the 4 full weeks before it
DAYS = SCALES["xs"].default_days
START = END - dt.timedelta(days=DAYS)
DRIFT_FROM = START + dt.timedelta(days=14)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UUID7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate("xs", seed=7, end=END)


@pytest.fixture(scope="module")
def drifted() -> dict[str, SyntheticData]:
    return {kind: generate("xs", seed=7, end=END, drift=kind, drift_from=DRIFT_FROM) for kind in DRIFT_KINDS}


def _utc(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize("UTC")


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties get average ranks."""
    ranks = pd.Series(score).rank().to_numpy()
    pos = label == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _with_day(events: pd.DataFrame) -> pd.DataFrame:
    return events.assign(day=events["occurred_at"].dt.tz_localize(None).dt.normalize())


# --- reproducibility and time window -------------------------------------------------------------------


def test_same_seed_same_hash_and_frames(data: SyntheticData) -> None:
    again = generate("xs", seed=7, end=END)
    assert content_hash(again) == content_hash(data)
    for name in ("listings", "events", "ground_truth"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(data, name))


def test_different_seed_different_output(data: SyntheticData) -> None:
    other = generate("xs", seed=8, end=END)
    assert content_hash(other) != content_hash(data)
    assert not set(other.events["event_id"]) & set(data.events["event_id"])


def test_hash_sees_single_value_changes(data: SyntheticData) -> None:
    changed = SyntheticData(data.listings.copy(), data.events, data.ground_truth)
    changed.listings.loc[0, "price"] = 123.45 if changed.listings.loc[0, "price"] != 123.45 else 1.0
    assert content_hash(changed) != content_hash(data)


def test_days_covered_and_nothing_at_or_after_end(data: SyntheticData) -> None:
    ts = data.events["occurred_at"]
    assert ts.min() >= _utc(START)
    assert ts.max() < _utc(END)
    days = set(ts.dt.date)
    assert days == {START + dt.timedelta(days=i) for i in range(DAYS)}
    assert ts.is_monotonic_increasing


def test_days_argument_and_default_end() -> None:
    short = generate("xs", seed=1, days=3, end=END)
    assert set(short.events["occurred_at"].dt.date) == {END - dt.timedelta(days=i) for i in (1, 2, 3)}
    today = dt.datetime.now(dt.UTC).date()
    default = generate("xs", seed=1, days=1)
    assert default.events["occurred_at"].max() < _utc(
        today + dt.timedelta(days=1)
    )  # tolerate a midnight race
    assert default.events["occurred_at"].min() >= _utc(today - dt.timedelta(days=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": "xl"}, "unknown scale"),
        ({"drift": "weather", "drift_from": START}, "unknown drift kind"),
        ({"drift": "device_shift", "drift_from": END}, "outside the generated period"),
        (
            {"drift": "device_shift", "drift_from": START - dt.timedelta(days=1)},
            "outside the generated period",
        ),
        ({"drift": "device_shift"}, "together"),
        ({"days": 0}, "days"),
        ({"seed": -1}, "seed"),
        ({"end": dt.datetime(2026, 3, 2, tzinfo=dt.UTC)}, "end must be a datetime.date"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    kwargs = {"end": END, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(**kwargs)


# --- schemas and referential integrity -----------------------------------------------------------------


def test_listing_schema(data: SyntheticData) -> None:
    li = data.listings
    assert list(li.columns) == [
        "listing_id",
        "category_id",
        "city",
        "price",
        "is_premium",
        "image_count",
        "created_at",
    ]
    assert str(li["created_at"].dtype) == "datetime64[us, UTC]"
    assert (
        li["price"].dtype == np.float64
        and li["is_premium"].dtype == bool
        and li["image_count"].dtype == np.int64
    )
    for col in ("listing_id", "category_id", "city"):
        assert li[col].dtype == object and li[col].map(type).eq(str).all()
    assert li["listing_id"].str.fullmatch(UUID_RE).all() and li["listing_id"].is_unique
    assert li["city"].str.fullmatch(r"[a-z0-9]+(?:[-_][a-z0-9]+)*").all()
    assert li["category_id"].str.fullmatch(r"cat_\d\d").all()
    assert 8 <= li["category_id"].nunique() <= 20
    price = li["price"].dropna()
    assert (price >= 0).all() and np.allclose(price, price.round(2), rtol=0, atol=1e-9)
    assert 0.015 <= li["price"].isna().mean() <= 0.05
    assert (li["image_count"] >= 0).all()
    # listings appear over time: some before the period, some during it, none after it
    assert (li["created_at"] < _utc(START)).mean() > 0.3
    assert (li["created_at"] >= _utc(START)).mean() > 0.2
    assert li["created_at"].max() < _utc(END)
    # category-specific price levels: medians differ across categories by orders of magnitude
    medians = li.groupby("category_id")["price"].median()
    assert medians.max() / medians.min() > 10


def test_event_schema_and_integrity(data: SyntheticData) -> None:
    ev = data.events
    assert list(ev.columns) == [
        "event_id",
        "user_id",
        "listing_id",
        "event_type",
        "occurred_at",
        "device_type",
    ]
    assert str(ev["occurred_at"].dtype) == "datetime64[us, UTC]"
    for col in ("event_id", "user_id", "listing_id", "event_type", "device_type"):
        assert ev[col].dtype == object and ev[col].map(type).eq(str).all()
    assert ev["event_id"].is_unique
    assert ev["user_id"].str.fullmatch(UUID_RE).all()
    assert ev["event_id"].str.fullmatch(UUID7_RE).all()
    sample = ev["event_id"].iloc[:: max(1, len(ev) // 500)]
    assert all(str(uuid.UUID(x)) == x and uuid.UUID(x).version == 7 for x in sample)
    # version 7: the top 48 bits are the event's Unix milliseconds, so ids sort by time
    millis = ev["event_id"].str.slice(0, 8) + ev["event_id"].str.slice(9, 13)
    expected = ev["occurred_at"].astype("int64") // 1000
    assert (millis.map(lambda h: int(h, 16)) == expected).all()
    assert uuid.UUID(ev["user_id"].iloc[0]).version == 4
    assert set(ev["event_type"]) == set(EVENT_TYPES)
    assert set(ev["device_type"]) == set(DEVICE_TYPES)
    created = ev["listing_id"].map(data.listings.set_index("listing_id")["created_at"])
    assert created.notna().all(), "every event's listing exists"
    assert (ev["occurred_at"] >= created).all(), "no event before its listing was created"
    assert 50_000 <= len(ev) <= 150_000


def test_constants_match_landing_schema() -> None:
    warehouse = pytest.importorskip("fs_platform.ingestion.raw_schema")
    assert tuple(warehouse.EVENT_TYPES) == EVENT_TYPES
    assert tuple(warehouse.DEVICE_TYPES) == DEVICE_TYPES


def test_funnel_order_within_a_day(data: SyntheticData) -> None:
    """impression < view < favourite/contact for every pair and day that reaches each stage."""
    ev = _with_day(data.events)
    first = ev.groupby(["user_id", "listing_id", "day", "event_type"])["occurred_at"].min().unstack()
    viewed = first["listing_viewed"].notna()
    assert (first.loc[viewed, "impression"] < first.loc[viewed, "listing_viewed"]).all()
    for later in ("listing_favorited", "listing_contact_clicked"):
        reached = first[later].notna()
        assert viewed[reached].all(), f"{later} without a view"
        assert (first.loc[reached, "listing_viewed"] < first.loc[reached, later]).all()
    # within a session events are seconds to minutes apart
    gap = (first.loc[viewed, "listing_viewed"] - first.loc[viewed, "impression"]).dt.total_seconds()
    assert gap.median() < 600


# --- realism ---------------------------------------------------------------------------------------------


def test_funnel_rates(data: SyntheticData) -> None:
    s = data.summary()
    assert 0.05 <= s["view_rate"] <= 0.16
    assert 0.04 <= s["favorite_per_view"] <= 0.13
    assert 0.025 <= s["contact_per_view"] <= 0.09
    assert 0.005 <= s["positive_rate"] <= 0.06


def test_zipf_city_skew(data: SyntheticData) -> None:
    share = data.listings["city"].value_counts(normalize=True)
    assert share.iloc[0] > 2 * share.median()
    event_city = data.events["listing_id"].map(data.listings.set_index("listing_id")["city"])
    event_share = event_city.value_counts(normalize=True)
    assert event_share.index[0] == share.index[0]
    assert event_share.iloc[0] > 2 * event_share.median()


def test_weekly_and_daily_cycles(data: SyntheticData) -> None:
    ts = data.events["occurred_at"]
    per_day = ts.dt.date.value_counts()
    weekend = np.array([d.weekday() >= 5 for d in per_day.index])
    assert per_day[weekend].mean() > 1.1 * per_day[~weekend].mean()
    hour = ts.dt.hour
    evening = hour.between(18, 21).sum() / 4
    night = hour.between(1, 4).sum() / 4
    assert evening > 4 * night


def test_device_mix(data: SyntheticData) -> None:
    share = data.events["device_type"].value_counts(normalize=True)
    for device, target in zip(DEVICE_TYPES, (0.30, 0.45, 0.22, 0.03), strict=True):
        assert abs(share[device] - target) < 0.07, (
            device,
            share[device],
        )  # ~3.5 sd at xs (heavy-tailed users)


def test_activity_is_heavy_tailed(data: SyntheticData) -> None:
    per_user = data.events["user_id"].value_counts()
    top_decile = per_user.iloc[: len(per_user) // 10].sum() / per_user.sum()
    assert top_decile > 0.3
    assert per_user.median() < per_user.mean()


# --- ground truth ----------------------------------------------------------------------------------------


def test_ground_truth_schema_and_keys(data: SyntheticData) -> None:
    gt = data.ground_truth
    assert list(gt.columns) == ["user_id", "listing_id", "day", "true_p", "label"]
    assert str(gt["day"].dtype) == "datetime64[us]"
    assert (gt["day"] == gt["day"].dt.normalize()).all()
    assert gt["true_p"].dtype == np.float64 and gt["label"].dtype == np.int8
    assert gt["true_p"].between(0, 1, inclusive="neither").all()
    assert not gt.duplicated(["user_id", "listing_id", "day"]).any()
    ev = _with_day(data.events)
    with_events = ev[["user_id", "listing_id", "day"]].drop_duplicates()
    merged = with_events.merge(gt, on=["user_id", "listing_id", "day"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), "one ground-truth row per (user, listing, day) with events"


def test_ground_truth_labels_match_events(data: SyntheticData) -> None:
    ev = _with_day(data.events)
    positive = ev[ev["event_type"].isin(["listing_favorited", "listing_contact_clicked"])]
    pos_keys = positive[["user_id", "listing_id", "day"]].drop_duplicates().assign(has_positive=1)
    gt = data.ground_truth.merge(pos_keys, on=["user_id", "listing_id", "day"], how="left")
    assert (gt["label"] == gt["has_positive"].fillna(0).astype(int)).all()


def test_ground_truth_is_calibrated_and_informative(data: SyntheticData) -> None:
    gt = data.ground_truth
    mean_p, mean_label = gt["true_p"].mean(), gt["label"].mean()
    assert abs(mean_label - mean_p) < 0.15 * mean_p
    # calibration per true_p decile, not just on average
    decile = pd.qcut(gt["true_p"], 5, labels=False)
    by = gt.groupby(decile).agg(p=("true_p", "mean"), y=("label", "mean"))
    assert (by["y"].diff().dropna() > 0).all()
    assert np.allclose(by["y"], by["p"], rtol=0.3, atol=0.003)
    assert _auc(gt["true_p"].to_numpy(), gt["label"].to_numpy()) > 0.7


def test_true_p_signal_is_visible_in_observable_features(data: SyntheticData) -> None:
    """The score must depend on what a downstream model can see: premium, images, hour, user affinity."""
    gt = data.ground_truth.merge(data.listings[["listing_id", "is_premium", "image_count"]], on="listing_id")
    assert gt.loc[gt["is_premium"], "true_p"].mean() > 1.2 * gt.loc[~gt["is_premium"], "true_p"].mean()
    few, many = gt["image_count"] <= 2, gt["image_count"] >= 8
    assert gt.loc[many, "true_p"].mean() > gt.loc[few, "true_p"].mean()
    # a user's engaged categories in the first half predict positives in the second half
    ev = data.events.merge(data.listings[["listing_id", "category_id"]], on="listing_id")
    half = _utc(START + dt.timedelta(days=DAYS // 2))
    past = ev[(ev["occurred_at"] < half) & (ev["event_type"] != "impression")]
    affinity = past.groupby(["user_id", "category_id"]).size() / past.groupby("user_id").size()
    later = gt[gt["day"] >= half.tz_localize(None)].merge(
        data.listings[["listing_id", "category_id"]], on="listing_id"
    )
    later = later.join(affinity.rename("affinity"), on=["user_id", "category_id"]).fillna({"affinity": 0.0})
    assert _auc(later["affinity"].to_numpy(), later["label"].to_numpy()) > 0.6


# --- drift -----------------------------------------------------------------------------------------------


def test_drift_keeps_everything_before_drift_from(
    data: SyntheticData, drifted: dict[str, SyntheticData]
) -> None:
    """A drifted run is the undrifted run's counterfactual: identical up to drift_from."""
    cut = _utc(DRIFT_FROM)
    base = data.events[data.events["occurred_at"] < cut].reset_index(drop=True)
    for kind, d in drifted.items():
        pre = d.events[d.events["occurred_at"] < cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(pre, base, obj=kind)
        assert content_hash(d) != content_hash(data)


def test_device_shift(data: SyntheticData, drifted: dict[str, SyntheticData]) -> None:
    ev = drifted["device_shift"].events
    after = ev["occurred_at"] >= _utc(DRIFT_FROM)
    ios_before = (ev.loc[~after, "device_type"] == "ios").mean()
    ios_after = (ev.loc[after, "device_type"] == "ios").mean()
    android_before = (ev.loc[~after, "device_type"] == "android").mean()
    android_after = (ev.loc[after, "device_type"] == "android").mean()
    assert 0.14 <= ios_after - ios_before <= 0.26
    assert 0.14 <= android_before - android_after <= 0.26
    # against the counterfactual the shift is exactly the injected one, up to sampling noise
    base = data.events[data.events["occurred_at"] >= _utc(DRIFT_FROM)]
    assert abs((ios_after - (base["device_type"] == "ios").mean()) - 0.20) < 0.03


def test_price_inflation(data: SyntheticData, drifted: dict[str, SyntheticData]) -> None:
    """Listings created from drift_from on are 15% dearer than the same listings without drift.

    Measured against the undrifted run of the same seed (same listings): the exact 1.15 ratio per
    listing is a sharper check than comparing price levels within one run, which sampling moves too.
    """
    li, base = drifted["price_inflation"].listings, data.listings
    after = li["created_at"] >= _utc(DRIFT_FROM)
    assert after.sum() > 100
    assert li.loc[after, "price"].median() >= 1.1 * base.loc[after, "price"].median()
    ratio = (li.loc[after, "price"] / base.loc[after, "price"]).dropna()
    assert np.allclose(ratio, 1.15, atol=0.01)
    pd.testing.assert_series_equal(li.loc[~after, "price"], base.loc[~after, "price"])
    assert li["price"].isna().equals(base["price"].isna())
    # engaged prices move along: viewed listings created after drift_from are 15% dearer than in the counterfactual
    d = drifted["price_inflation"]
    views = d.events[d.events["event_type"] == "listing_viewed"]
    viewed_new = views["listing_id"].map(li.set_index("listing_id")["created_at"]) >= _utc(DRIFT_FROM)
    ids = views.loc[viewed_new, "listing_id"]
    drift_price = ids.map(li.set_index("listing_id")["price"]).mean()
    base_price = ids.map(base.set_index("listing_id")["price"]).mean()
    assert drift_price / base_price == pytest.approx(1.15, abs=0.01)


def test_category_shift(data: SyntheticData, drifted: dict[str, SyntheticData]) -> None:
    d = drifted["category_shift"]
    shifted = set(d.meta["shifted_user_ids"])
    n_users = SCALES["xs"].users
    assert len(shifted) == round(0.2 * n_users)
    ev = d.events.merge(d.listings[["listing_id", "category_id"]], on="listing_id")
    ev = ev[ev["event_type"] == "impression"]
    after = ev["occurred_at"] >= _utc(DRIFT_FROM)
    mix = (
        ev.groupby([after.rename("after"), "user_id"])["category_id"]
        .value_counts(normalize=True)
        .unstack(fill_value=0)
    )
    before_mix, after_mix = mix.loc[False], mix.loc[True]
    both = before_mix.index.intersection(after_mix.index)
    tvd = (after_mix.loc[both] - before_mix.loc[both]).abs().sum(axis=1) / 2
    # only users with enough impressions in both halves, so sampling noise does not dominate
    counts = ev.groupby([after.rename("after"), "user_id"]).size()
    busy = [u for u in both if counts.get((False, u), 0) >= 30 and counts.get((True, u), 0) >= 30]
    is_shifted = pd.Series([u in shifted for u in busy], index=busy)
    assert is_shifted.sum() >= 20
    assert tvd[busy][is_shifted].median() > 0.5
    assert tvd[busy][~is_shifted].median() < 0.3
    # and the rest of the population keeps the counterfactual's category mix exactly
    base = data.events[data.events["occurred_at"] >= _utc(DRIFT_FROM)]
    stayed = ~d.events["user_id"].isin(shifted) & (d.events["occurred_at"] >= _utc(DRIFT_FROM))
    assert (
        d.events.loc[stayed, "user_id"].nunique()
        == base.loc[~base["user_id"].isin(shifted), "user_id"].nunique()
    )


# --- parquet ---------------------------------------------------------------------------------------------


def test_write_parquet_round_trip(data: SyntheticData, tmp_path: Path) -> None:
    stale = tmp_path / "interactions" / "interactions_1999-01-01.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    paths = write_parquet(data, tmp_path)
    assert paths["listings"] == [tmp_path / "listings" / "listings.parquet"]
    assert paths["ground_truth"] == [tmp_path / "ground_truth" / "ground_truth.parquet"]
    expected_days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    assert [p.name for p in paths["interactions"]] == [
        f"interactions_{d.isoformat()}.parquet" for d in expected_days
    ]
    assert all(p.exists() for group in paths.values() for p in group)
    assert stale.exists(), "without clean=True other files are left alone"

    pd.testing.assert_frame_equal(pd.read_parquet(paths["listings"][0]), data.listings)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["ground_truth"][0]), data.ground_truth)
    parts = [pd.read_parquet(p) for p in paths["interactions"]]
    for day, part in zip(expected_days, parts, strict=True):
        assert (part["occurred_at"].dt.date == day).all()
        assert part["occurred_at"].is_monotonic_increasing
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), data.events)

    write_parquet(data, tmp_path, clean=True)
    assert not stale.exists()
    assert len(list((tmp_path / "interactions").glob("*.parquet"))) == DAYS


def test_summary_is_plain_floats(data: SyntheticData) -> None:
    s = data.summary()
    assert all(isinstance(v, float) for v in s.values())
    assert s["events"] == len(data.events) and s["listings"] == len(data.listings)
    assert s["top_city_listing_share"] > s["median_city_listing_share"]
