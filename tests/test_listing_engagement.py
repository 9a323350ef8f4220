"""listing_engagement: a feature view added as SQL + yml only, against a plain-Python reference, and
picked up by everything downstream without a line of Python naming it: the registry, the Dagster
graph and checks, the Redis sync, the generic API route and historical retrieval."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from feature_pipeline import load_frames, run_partition, run_range
from online_support import delete_prefix

from fs_platform.dev.synthetic import generate
from fs_platform.features.registry import load_registry
from fs_platform.infra.dbt import DBT_PROJECT_DIR
from fs_platform.ingestion.load import ingest_interactions_file
from fs_platform.online.store import OnlineStore, connect
from fs_platform.online.sync import sync_snapshot
from fs_platform.retrieval.historical import get_historical_features
from fs_platform.serving import create_app

END = date(2026, 3, 1)
DAYS = (END - timedelta(days=3), END - timedelta(days=2), END - timedelta(days=1))
FEATURES = (
    "decayed_impressions",
    "decayed_views",
    "decayed_favourites",
    "decayed_contacts",
    "view_rate",
    "engagement_rate",
)
COUNTED = {
    "impression": "decayed_impressions",
    "listing_viewed": "decayed_views",
    "listing_favorited": "decayed_favourites",
    "listing_contact_clicked": "decayed_contacts",
}


def _at(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def reference_engagement(events: pd.DataFrame, cutoff: datetime, listing_ids: list[str]) -> dict[str, dict]:
    """The yml's definition, per event: each event counts 0.5^((T - E)/h), E = the end of its UTC
    day, for the days in [T - window_days, T); rates smoothed with the declared prior."""
    knobs = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    window, half_life, prior = knobs["window_days"], knobs["half_life_days"], knobs["engagement_prior"]
    sums: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTED.values(), 0.0))
    first_day = (cutoff - timedelta(days=window)).date()
    for listing_id, event_type, occurred_at in events[["listing_id", "event_type", "occurred_at"]].itertuples(
        index=False
    ):
        day = occurred_at.astimezone(UTC).date()
        if not first_day <= day < cutoff.date():
            continue
        day_end = _at(day + timedelta(days=1))
        sums[listing_id][COUNTED[event_type]] += 0.5 ** (
            (cutoff - day_end).total_seconds() / 86400 / half_life
        )
    out = {}
    s = prior["strength"]
    for listing_id in listing_ids:
        row = dict(sums.get(listing_id) or dict.fromkeys(COUNTED.values(), 0.0))
        row["view_rate"] = (row["decayed_views"] + s * prior["view_rate"]) / (row["decayed_impressions"] + s)
        row["engagement_rate"] = (
            row["decayed_contacts"] + row["decayed_favourites"] + s * prior["engagement_rate"]
        ) / (row["decayed_views"] + s)
        out[listing_id] = row
    return out


def _rows(conn, relation: str, day: date | None = None) -> dict[str, dict]:
    where = "" if day is None else " where as_of = %s"
    with conn.cursor() as cur:
        cur.execute(
            f"select listing_id::text, {', '.join(FEATURES)} from {relation}{where}",
            () if day is None else (_at(day),),
        )
        rows = {r[0]: dict(zip(FEATURES, r[1:], strict=True)) for r in cur.fetchall()}
    conn.commit()
    return rows


def _live(conn, day: date) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "select listing_id::text from features.listing_features_history where as_of = %s", (_at(day),)
        )
        ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    return ids


@pytest.fixture(scope="module")
def data():
    return generate("xs", days=12, seed=11, end=END)


@pytest.fixture()
def built(clean_db, tmp_path, data):
    load_frames(clean_db, data.listings, data.events, tmp_path / "data")
    assert run_partition(DAYS[0]).success
    assert run_range(DAYS[1], DAYS[2]).success  # a range run too
    return clean_db


def test_every_partition_equals_the_reference_and_the_latest_is_served(built, data):
    for day in DAYS:
        live = _live(built, day)
        assert len(live) > 1000
        got = _rows(built, "features.listing_engagement_history", day)
        expected = reference_engagement(data.events, _at(day), live)
        assert set(got) == set(expected)
        assert sum(r["decayed_contacts"] > 0 for r in expected.values()) > 50  # the data exercise it
        for listing_id, row in expected.items():
            for name, value in row.items():
                assert got[listing_id][name] == pytest.approx(value, rel=1e-9, abs=1e-12), (
                    day,
                    listing_id,
                    name,
                )
    served = _rows(built, "features.listing_engagement")
    latest = _rows(built, "features.listing_engagement_history", DAYS[-1])
    assert set(served) == set(latest)
    for listing_id, row in latest.items():  # the same sums, maybe added in another order
        assert served[listing_id] == pytest.approx(row, rel=1e-12, abs=1e-15), listing_id


def test_the_view_reaches_registry_dagster_redis_api_and_retrieval_without_python(
    built, data, database_url, service_urls
):
    from fs_platform.definitions import defs

    registry = load_registry()
    view = registry.view("listing_engagement")
    assert view.online and view.entity.join_key == "listing_id" and tuple(view.feature_names) == FEATURES
    assert view.online_relation == ("features", "listing_engagement")

    # Dagster: the models, the sync asset and the generated null/range check
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"listing_engagement", "listing_engagement_history", "online_listing_engagement"} <= keys
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("listing_engagement", "null_range_violations") in checks

    # Redis and the generic route
    prefix = f"fs_test_engagement_{datetime.now(UTC):%H%M%S%f}"
    client = connect(service_urls["redis_url"], 10)
    try:
        synced = sync_snapshot("listing_engagement", built, client, prefix=prefix)
        served_rows = _rows(built, "features.listing_engagement")
        assert synced.rows == len(served_rows) and synced.as_of == _at(DAYS[-1])
        store = OnlineStore(
            connect(service_urls["redis_url"], 2), prefix=prefix, max_age=timedelta(days=10_000)
        )
        app = create_app(store=store)
        ids = list(served_rows)[:25]
        body = TestClient(app).post(
            "/v1/features/get",
            json={"features": [f"listing_engagement:{f}" for f in FEATURES], "entities": {"listing_id": ids}},
        )
        assert body.status_code == 200, body.text
        values = body.json()["values"]
        for i, listing_id in enumerate(ids):
            for name in FEATURES:
                assert values[f"listing_engagement:{name}"][i] == served_rows[listing_id][name]
    finally:
        delete_prefix(client, prefix)

    # historical retrieval: as of a time inside each partition's day, that partition's values
    history = {day: _rows(built, "features.listing_engagement_history", day) for day in DAYS}
    ids = list(history[DAYS[0]])[:40]
    frame = pd.DataFrame(
        {
            "listing_id": ids * len(DAYS),
            "event_timestamp": [_at(day) + timedelta(hours=5) for day in DAYS for _ in ids],
        }
    )
    out = get_historical_features(built, frame, [f"listing_engagement:{f}" for f in FEATURES])
    for row in out.itertuples(index=False):
        day = row.event_timestamp.date()
        for name in FEATURES:
            assert getattr(row, name) == pytest.approx(history[day][row.listing_id][name], rel=1e-12)


def _assert_served_equals_reference(conn, events: pd.DataFrame, day: date) -> None:
    served = _rows(conn, "features.listing_engagement")
    expected = reference_engagement(events, _at(day), _live(conn, day))
    assert set(served) == set(expected)
    for listing_id, row in expected.items():
        for name, value in row.items():
            assert served[listing_id][name] == pytest.approx(value, rel=1e-9, abs=1e-12), (
                day,
                listing_id,
                name,
            )


def _settled_as_of(conn) -> datetime:
    with conn.cursor() as cur:
        cur.execute("select distinct as_of from features.int_listing_engagement_settled")
        (as_of,) = cur.fetchall()
    conn.commit()
    return as_of[0]


def test_daily_runs_carry_the_settled_sums_exactly(clean_db, tmp_path, data):
    """Day by day, with late events, a re-run and a gap, the served view carried from the previous
    partition equals the reference; and it really is carried (a changed stored sum shows through)."""
    conn, events = clean_db, data.events
    first = END - timedelta(days=6)
    load_frames(conn, data.listings, events, tmp_path / "data")
    assert run_partition(first).success
    _assert_served_equals_reference(conn, events, first)

    # events of the partition's last day arrive after its run: the next run rebuilds that day
    late = events[events["occurred_at"].dt.date == first - timedelta(days=1)].head(200).copy()
    late["event_id"] = [str(uuid.uuid4()) for _ in range(len(late))]
    late["occurred_at"] = late["occurred_at"] + timedelta(minutes=1)
    late = late[late["occurred_at"].dt.date == first - timedelta(days=1)]
    late.to_parquet(tmp_path / "late.parquet")
    assert ingest_interactions_file(conn, tmp_path / "late.parquet").rejected == 0
    events = pd.concat([events, late], ignore_index=True)

    for day in (first + timedelta(days=1), first + timedelta(days=1), first + timedelta(days=4)):
        assert run_partition(day).success  # the next day, a re-run of it, a gap of three days
        assert _settled_as_of(conn) == _at(day)
        _assert_served_equals_reference(conn, events, day)

    # the next run starts from the stored sums, not from the window: a shifted sum shows through
    day = first + timedelta(days=5)
    knobs = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    with conn.cursor() as cur:
        cur.execute(
            "update features.int_listing_engagement_settled set decayed_views = decayed_views + 1000 "
            "where listing_id = (select listing_id from features.int_listing_engagement_settled where views > 0 "
            "order by listing_id limit 1) "
            "returning listing_id::text"
        )
        (shifted,) = cur.fetchone()
    conn.commit()
    before = _rows(conn, "features.listing_engagement")[shifted]["decayed_views"]
    assert run_partition(day).success
    expected = reference_engagement(events, _at(day), [shifted])[shifted]["decayed_views"]
    got = _rows(conn, "features.listing_engagement")[shifted]["decayed_views"]
    assert before > 0 and got == pytest.approx(
        expected + 1000 * 0.5 ** (1 / knobs["half_life_days"]), rel=1e-9
    )
    assert run_partition(day, full_refresh=True).success  # --full-refresh sums the window again
    _assert_served_equals_reference(conn, events, day)
