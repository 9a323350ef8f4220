"""Historical retrieval against a brute-force reference, on real dbt-built feature views.

The reference reads every row of each view's offline table into Python and, for each entity row,
takes the row of the same key with the latest as_of in [ts - ttl, ts - lag] (both inclusive),
exactly as docs/retrieval.md states it; on-demand features are recomputed from their formulas.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from feature_pipeline import fresh_features
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fs_platform.cli import main
from fs_platform.dev.synthetic import generate
from fs_platform.features.registry import load_registry
from fs_platform.retrieval import historical
from fs_platform.retrieval.historical import RetrievalError, get_historical_features

END = date(2026, 3, 1)
FEATURE_DAYS = (date(2026, 2, 24), date(2026, 2, 28))  # five partitions
USER_FEATURES = ["category_affinity", "city_affinity", "price_sensitivity", "activity_score"]
LISTING_FEATURES = ["category_id", "city", "price", "price_pct", "is_premium", "image_count"]
ALL_REFS = [f"user_features:{f}" for f in USER_FEATURES] + [f"listing_features:{f}" for f in LISTING_FEATURES]
ON_DEMAND_REFS = ["on_demand:user_category_affinity", "on_demand:user_city_affinity", "on_demand:price_gap"]


@pytest.fixture(scope="module")
def world(service_urls, tmp_path_factory):
    """xs events of 8 days ingested and five feature partitions built by one Dagster backfill."""
    data = generate("xs", days=8, seed=5, end=END)
    folder = tmp_path_factory.mktemp("retrieval_data")
    conn = fresh_features(service_urls["database_url"], data.listings, data.events, folder, *FEATURE_DAYS)
    registry = load_registry()
    with conn.cursor() as cur:
        cur.execute(
            f"select user_id::text, as_of, {', '.join(USER_FEATURES)} from features.user_features_history"
        )
        users = _by_key(cur.fetchall(), USER_FEATURES)
        cur.execute(
            f"select listing_id::text, as_of, {', '.join(LISTING_FEATURES)} from features.listing_features_history"
        )
        listings = _by_key(cur.fetchall(), LISTING_FEATURES)
    conn.rollback()
    yield {"conn": conn, "registry": registry, "users": users, "listings": listings, "data": data}
    conn.close()


@pytest.fixture(autouse=True)
def _rolled_back(world):
    """Each test ends its transaction (retrieval runs in the caller's)."""
    yield
    world["conn"].rollback()


def _by_key(rows, names) -> dict[str, list[tuple[datetime, dict]]]:
    out: dict[str, list[tuple[datetime, dict]]] = {}
    for key, as_of, *values in rows:
        out.setdefault(key, []).append((as_of, dict(zip(names, values, strict=True))))
    return out


def _reference_row(history, key, ts, ttl: timedelta, lag: timedelta) -> dict | None:
    """The brute-force as-of: latest as_of with as_of + lag <= ts and as_of >= ts - ttl."""
    if key is None:
        return None
    candidates = [
        (as_of, row) for as_of, row in history.get(key, []) if as_of + lag <= ts and as_of >= ts - ttl
    ]
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def _reference(world, frame: pd.DataFrame, lag: timedelta = timedelta(0)) -> pd.DataFrame:
    ttl = timedelta(days=7)
    out = frame.copy()
    rows = []
    for _, r in frame.iterrows():
        ts = pd.Timestamp(r["event_timestamp"]).to_pydatetime().astimezone(UTC)
        user = _reference_row(world["users"], r["user_id"], ts, ttl, lag)
        listing = _reference_row(world["listings"], r["listing_id"], ts, ttl, lag)
        row = {f: (user or {}).get(f) for f in USER_FEATURES} | {
            f: (listing or {}).get(f) for f in LISTING_FEATURES
        }
        affinity = (user or {}).get("category_affinity")
        cities = (user or {}).get("city_affinity")
        row["user_category_affinity"] = (
            math.nan
            if user is None
            else float(affinity.get(row["category_id"], 0.0))
            if row["category_id"]
            else 0.0
        )
        row["user_city_affinity"] = (
            math.nan if user is None else float(cities.get(row["city"], 0.0)) if row["city"] else 0.0
        )
        pct, sens = row["price_pct"], row["price_sensitivity"]
        row["price_gap"] = math.nan if pct is None or sens is None else abs(pct - sens)
        rows.append(row)
    for name in [
        *USER_FEATURES,
        *LISTING_FEATURES,
        "user_category_affinity",
        "user_city_affinity",
        "price_gap",
    ]:
        out[name] = [row[name] for row in rows]
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(math.isclose(a[k], b[k], rel_tol=1e-12) for k in a)
        )
    a_null = a is None or a is pd.NA or (isinstance(a, float) and math.isnan(a))
    b_null = b is None or b is pd.NA or (isinstance(b, float) and math.isnan(b))
    if a_null or b_null:
        return a_null and b_null
    if isinstance(a, float | np.floating) or isinstance(b, float | np.floating):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)
    return a == b


def _assert_equal(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.index) == list(expected.index)
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        for position, (a, b) in enumerate(zip(got[column], expected[column], strict=True)):
            assert _same(a, b), (column, position, a, b)


def _entity_frame(world, rng: random.Random, n: int) -> pd.DataFrame:
    """Rows at random times around the partitions, on exact TTL and partition boundaries, with
    unknown and null keys, and duplicated rows (same keys and timestamp)."""
    users, listings = sorted(world["users"]), sorted(world["listings"])
    first = datetime(2026, 2, 24, tzinfo=UTC)
    rows = []
    for k in range(n):
        choice = rng.random()
        if choice < 0.15:  # exactly on a partition (lag 0: included) or exactly TTL after one (included)
            day = first + timedelta(days=rng.randrange(5))
            ts = day + rng.choice([timedelta(0), timedelta(days=7), timedelta(days=7, microseconds=1)])
        else:
            ts = first + timedelta(seconds=rng.uniform(-2 * 86400, 13 * 86400))
        user = (
            rng.choice(users)
            if rng.random() > 0.1
            else ("00000000-0000-4000-8000-000000000000" if rng.random() < 0.5 else None)
        )
        listing = rng.choice(listings) if rng.random() > 0.1 else None
        rows.append({"user_id": user, "listing_id": listing, "event_timestamp": ts, "request_id": k})
    rows += [dict(rows[3], request_id=n), dict(rows[3], request_id=n + 1)]  # duplicates stay
    frame = pd.DataFrame(rows)
    frame.index = [f"r{i}" for i in range(len(frame))][::-1]  # a non-default index is kept
    return frame


def test_every_feature_matches_the_brute_force_reference(world, monkeypatch):
    monkeypatch.setattr(historical, "CHUNK_ROWS", 97)  # several chunks
    frame = _entity_frame(world, random.Random(1), 400)
    got = get_historical_features(world["conn"], frame, ALL_REFS + ON_DEMAND_REFS, registry=world["registry"])
    _assert_equal(got, _reference(world, frame))
    assert got["price_sensitivity"].notna().sum() > 50 and got["price_pct"].notna().sum() > 50  # not all null
    assert got["request_id"].tolist() == frame["request_id"].tolist()


@pytest.mark.parametrize("lag_hours", [4, 24])
def test_availability_lag_matches_the_reference(world, lag_hours):
    frame = _entity_frame(world, random.Random(lag_hours), 200)
    lag = timedelta(hours=lag_hours)
    got = get_historical_features(
        world["conn"], frame, ALL_REFS + ON_DEMAND_REFS, registry=world["registry"], availability_lag=lag
    )
    _assert_equal(got, _reference(world, frame, lag))


def test_a_feature_service_expands_and_full_names_prefix_the_view(world):
    frame = _entity_frame(world, random.Random(3), 30)
    got = get_historical_features(world["conn"], frame, "contact_model", registry=world["registry"])
    service = world["registry"].services["contact_model"].features
    assert list(got.columns) == [*frame.columns, *(ref.partition(":")[2] for ref in service)]
    full = get_historical_features(
        world["conn"],
        frame,
        ["user_features:price_sensitivity"],
        registry=world["registry"],
        full_feature_names=True,
    )
    assert list(full.columns)[-1] == "user_features__price_sensitivity"
    assert np.allclose(full.iloc[:, -1], got["price_sensitivity"], equal_nan=True)


@given(seed=st.integers(0, 10_000), lag_hours=st.sampled_from([0, 6]))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rows_computed_at_or_after_the_timestamp_never_leak_in(world, seed, lag_hours):
    """Overwrite, in a rolled-back transaction, every snapshot a row may not see (as_of + lag > ts)
    with absurd values: the answer for that row does not move."""
    rng = random.Random(seed)
    frame = _entity_frame(world, rng, 12)
    lag = timedelta(hours=lag_hours)
    conn, registry = world["conn"], world["registry"]
    before = get_historical_features(conn, frame, ALL_REFS, registry=registry, availability_lag=lag)
    row = frame.iloc[rng.randrange(len(frame))]
    ts = pd.Timestamp(row["event_timestamp"]).to_pydatetime()
    with conn.cursor() as cur:
        cur.execute(
            "update features.user_features_history set price_sensitivity = 0.123456, activity_score = 0.5 "
            "where as_of + %s > %s",
            (lag, ts),
        )
        # the listing view is computed from versions: reprice every version valid from after ts - lag
        cur.execute(
            "update staging.stg_listing_versions set price = 98765.43 where valid_from >= %s", (ts - lag,)
        )
    after = get_historical_features(conn, frame, ALL_REFS, registry=registry, availability_lag=lag)
    conn.rollback()
    mask = frame["event_timestamp"] == row["event_timestamp"]
    _assert_equal(after[mask], before[mask])


def test_bad_requests_fail_with_one_line(world):
    conn, registry = world["conn"], world["registry"]
    frame = _entity_frame(world, random.Random(4), 5)
    cases = [
        (frame.drop(columns="event_timestamp"), ALL_REFS, "has no 'event_timestamp' column"),
        (frame.drop(columns="listing_id"), ALL_REFS, "needs entity key column 'listing_id'"),
        (frame, ["user_features:nope"], "has no feature 'nope'"),
        (frame, ["nope:price"], "names no feature view"),
        (frame, "no_such_service", "is not 'view:feature' or a service name"),
        (frame.assign(user_id="not-a-uuid"), ["user_features:price_sensitivity"], "is not a UUID"),
        (frame.assign(price=1.0), ["listing_features:price"], "would be ambiguous"),
        (frame.assign(event_timestamp=None), ["listing_features:price"], "have no event_timestamp"),
    ]
    for entity_df, refs, message in cases:
        with pytest.raises((RetrievalError, ValueError), match=message) as caught:
            get_historical_features(conn, entity_df, refs, registry=registry)
        assert "\n" not in str(caught.value)


def test_cli_writes_the_same_frame_with_progress(world, tmp_path, monkeypatch, service_urls):
    monkeypatch.setenv("FS_DATABASE_URL", service_urls["database_url"])
    frame = _entity_frame(world, random.Random(6), 60).reset_index(drop=True)
    frame.to_parquet(tmp_path / "entities.parquet")
    result = CliRunner().invoke(
        main,
        [
            "retrieve",
            "--entities", str(tmp_path / "entities.parquet"),
            "--features", "user_features:price_sensitivity,listing_features:price_pct,on_demand:price_gap",
            "--out", str(tmp_path / "out.parquet"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(tmp_path / "out.parquet")
    expected = _reference(world, frame)[[*frame.columns, "price_sensitivity", "price_pct", "price_gap"]]
    written["event_timestamp"] = frame["event_timestamp"]
    _assert_equal(written, expected)
    bad = CliRunner().invoke(
        main,
        ["retrieve", "--entities", str(tmp_path / "entities.parquet"), "--features", "x:y", "--out", "o.csv"],
    )
    assert bad.exit_code != 0 and "names no feature view" in bad.output


def test_dagster_asset_writes_what_the_api_returns(world, tmp_path, service_urls):
    import dagster as dg

    from fs_platform.defs.resources import PostgresResource
    from fs_platform.defs.retrieval.assets import historical_features_asset

    frame = _entity_frame(world, random.Random(8), 40).reset_index(drop=True)
    frame.to_parquet(tmp_path / "entities.parquet")
    config = {
        "entities_path": str(tmp_path / "entities.parquet"),
        "features": ["contact_model"],
        "out_path": str(tmp_path / "features.parquet"),
    }
    result = dg.materialize(
        [historical_features_asset],
        resources={"postgres": PostgresResource(database_url=service_urls["database_url"])},
        run_config={"ops": {"historical_features": {"config": config}}},
    )
    assert result.success
    written = pd.read_parquet(tmp_path / "features.parquet")
    expected = get_historical_features(world["conn"], frame, "contact_model", registry=world["registry"])
    for column in ("price_sensitivity", "price_pct", "price_gap", "user_category_affinity"):
        assert np.allclose(written[column], expected[column], equal_nan=True), column
    assert written["category_id"].tolist() == expected["category_id"].tolist()
