"""Ingestion against a real PostgreSQL: every bad-input class of semantics §3, conservation, idempotency."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from fs_platform.ingestion.file_reader import UnreadableFileError
from fs_platform.ingestion.load import (
    INTERACTION_COLUMNS,
    LISTING_COLUMNS,
    ingest_interactions_file,
    ingest_listings_file,
)

NOW = datetime.now(UTC).replace(microsecond=0)
L1, L2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
USER = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"


def _event(**overrides) -> dict:
    row = {
        "event_id": str(uuid.uuid4()),
        "user_id": USER,
        "listing_id": L1,
        "event_type": "listing_viewed",
        "occurred_at": (NOW - timedelta(days=1)).isoformat(),
        "device_type": "ios",
    }
    row.update(overrides)
    return row


def _write_csv(path: Path, rows: list[dict], columns: list[str] = INTERACTION_COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _listing(listing_id: str, **overrides: str) -> dict:
    row = {
        "listing_id": listing_id,
        "category_id": "cars",
        "city": "oslo",
        "price": "100.00",
        "is_premium": "false",
        "image_count": "3",
        "created_at": "2025-01-01T00:00:00Z",
    }
    row.update(overrides)
    return row


@pytest.fixture()
def listed(clean_db, tmp_path):
    """A warehouse with two known listings."""
    rows = [
        _listing(L1, city="oslo", price="100.00", image_count="3"),
        _listing(L2, city="bergen", price="", is_premium="true", image_count="0"),
    ]
    report = ingest_listings_file(clean_db, _write_csv(tmp_path / "listings.csv", rows, LISTING_COLUMNS))
    assert report.accepted == 2
    return clean_db


def _count(conn, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"select count(*) from {table}")
        return cur.fetchone()[0]


def _rejections(conn) -> list[tuple[int, str, dict]]:
    with conn.cursor() as cur:
        cur.execute("select row_number, reason, payload from raw.rejected_interactions order by row_number")
        return cur.fetchall()


def _ingest_and_check(conn, path: Path):
    report = ingest_interactions_file(conn, path)
    assert report.rows_read == report.accepted + report.rejected + report.duplicates
    return report


def test_good_rows_load_from_every_format(listed, tmp_path):
    rows = [_event() for _ in range(5)]
    csv_report = _ingest_and_check(listed, _write_csv(tmp_path / "a.csv", rows[:2]))
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows[2:4]) + "\n")
    json_report = _ingest_and_check(listed, jsonl)
    frame = pd.DataFrame(rows[4:])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame.to_parquet(tmp_path / "c.parquet")
    pq_report = _ingest_and_check(listed, tmp_path / "c.parquet")
    assert (csv_report.accepted, json_report.accepted, pq_report.accepted) == (2, 2, 1)
    assert _count(listed, "raw.user_interactions") == 5
    assert _count(listed, "raw.rejected_interactions") == 0


@pytest.mark.parametrize(
    ("bad", "reason_part"),
    [
        ({"event_id": ""}, "event_id is missing"),
        ({"event_id": "not-a-uuid"}, "event_id is not a UUID"),
        ({"user_id": "1234"}, "user_id is not a UUID"),
        ({"listing_id": "zzzzzzzz-1111-4111-8111-111111111111"}, "listing_id is not a UUID"),
        ({"occurred_at": "yesterday"}, "occurred_at is not a valid value"),
        ({"occurred_at": ""}, "occurred_at is missing"),
        ({"event_type": "listing_shared"}, "unknown event_type 'listing_shared'"),
        ({"device_type": "fax"}, "unknown device_type 'fax'"),
        ({"occurred_at": (NOW + timedelta(days=3)).isoformat()}, "is in the future"),
        ({"occurred_at": "2001-05-05T00:00:00Z"}, "is before the earliest accepted date"),
        ({"listing_id": "99999999-9999-4999-8999-999999999999"}, "is not a known listing"),
    ],
)
def test_bad_row_is_quarantined_with_reason_and_good_rows_load(listed, tmp_path, bad, reason_part):
    good = [_event(), _event()]
    bad_row = _event(**bad)
    report = _ingest_and_check(listed, _write_csv(tmp_path / "events.csv", [good[0], bad_row, good[1]]))
    assert (report.rows_read, report.accepted, report.rejected, report.duplicates) == (3, 2, 1, 0)
    [(row_number, reason, payload)] = _rejections(listed)
    assert row_number == 2
    assert reason_part in reason
    # the original payload is kept as sent
    assert payload["event_id"] == (bad_row["event_id"] or None)
    assert _count(listed, "raw.user_interactions") == 2


def test_duplicates_within_and_across_files_are_counted_not_loaded(listed, tmp_path):
    first = [_event() for _ in range(3)]
    report = _ingest_and_check(listed, _write_csv(tmp_path / "one.csv", first + [first[0]]))
    assert (report.accepted, report.duplicates) == (3, 1)
    second = [first[1], _event()]
    report = _ingest_and_check(listed, _write_csv(tmp_path / "two.csv", second))
    assert (report.accepted, report.duplicates, report.rejected) == (1, 1, 0)
    assert _count(listed, "raw.user_interactions") == 4


def test_reingesting_the_same_file_changes_nothing(listed, tmp_path):
    path = _write_csv(tmp_path / "events.csv", [_event(), _event(event_type="nope"), _event()])
    first = _ingest_and_check(listed, path)
    before = (_count(listed, "raw.user_interactions"), _count(listed, "raw.rejected_interactions"))
    again = _ingest_and_check(listed, path)
    after = (_count(listed, "raw.user_interactions"), _count(listed, "raw.rejected_interactions"))
    assert (first.accepted, first.rejected) == (2, 1)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 2, 1)
    assert before == after == (2, 1)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.csv", "empty"),
        (
            b"event_id,user,listing_id,event_type,occurred_at,device_type\n",
            "cols.csv",
            "missing required column",
        ),
        (b"event_id,user_id\n1,2\n", "few.csv", "missing required column(s) listing_id"),
        (b"event_id,user_id,listing_id\n", "x.parquet", "not a readable Parquet file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "img.jsonl", "not a JSON-lines file"),
        (b"PAR1garbagePAR1", "broken.parquet", "not a readable Parquet file"),
        (b"hello", "events.xlsx", "unsupported file type"),
    ],
)
def test_unreadable_file_is_refused_whole(listed, tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest_interactions_file(listed, path)
    listed.rollback()
    assert _count(listed, "raw.user_interactions") == 0
    assert _count(listed, "raw.rejected_interactions") == 0


def test_refused_file_writes_nothing_even_after_good_rows(listed, tmp_path):
    """A Parquet file missing a column is refused before any row is written."""
    frame = pd.DataFrame([_event() for _ in range(3)]).drop(columns=["device_type"])
    frame.to_parquet(tmp_path / "nodevice.parquet")
    with pytest.raises(UnreadableFileError, match="device_type"):
        ingest_interactions_file(listed, tmp_path / "nodevice.parquet")
    listed.rollback()
    assert _count(listed, "raw.user_interactions") == 0


def test_non_utf8_bytes_reject_only_their_row(listed, tmp_path):
    good = [_event(), _event()]
    path = _write_csv(tmp_path / "latin1.csv", good)
    bad = _event(device_type="android")
    line = ",".join(bad[c] for c in INTERACTION_COLUMNS).encode().replace(b"android", b"andr\xf6id")
    path.write_bytes(path.read_bytes() + line + b"\n")
    report = _ingest_and_check(listed, path)
    assert (report.accepted, report.rejected) == (2, 1)
    [(_, reason, payload)] = _rejections(listed)
    assert "not valid UTF-8" in reason
    assert payload["event_id"] == bad["event_id"]


def test_hostile_strings_are_quarantined_verbatim(listed, tmp_path):
    hostile = [
        _event(event_type="listing_viewed'); drop table raw.user_interactions; --"),
        _event(device_type="ios\x00"),
        _event(user_id="<script>alert(1)</script>"),
        _event(event_type="x" * 100_000),
        _event(device_type="\u202eios"),
    ]
    jsonl = tmp_path / "hostile.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [_event(), *hostile]) + "\n{not json\n[1,2]\n")
    report = _ingest_and_check(listed, jsonl)
    assert (report.rows_read, report.accepted, report.rejected) == (8, 1, 7)
    reasons = [r for _, r, _ in _rejections(listed)]
    assert any("not valid JSON" in r for r in reasons)
    assert any("not a JSON object" in r for r in reasons)
    assert _count(listed, "raw.user_interactions") == 1  # the table survived
    payloads = [p for _, _, p in _rejections(listed)]
    assert any(p.get("user_id") == "<script>alert(1)</script>" for p in payloads)


def test_csv_row_with_wrong_field_count_is_quarantined(listed, tmp_path):
    path = _write_csv(tmp_path / "ragged.csv", [_event()])
    path.write_text(path.read_text() + "only,three,fields\n")
    report = _ingest_and_check(listed, path)
    assert (report.accepted, report.rejected) == (1, 1)
    [(_, reason, payload)] = _rejections(listed)
    assert "3 fields, expected 6" in reason
    assert payload["raw_line"] == "only,three,fields"


def test_listing_redelivery_updates_changed_attributes(listed, tmp_path):
    rows = [
        _listing(L1, city="oslo", price="120.00", image_count="3"),
        _listing(L2, city="bergen", price="", is_premium="true", image_count="0"),
        {
            "listing_id": str(uuid.uuid4()),
            "category_id": "cars",
            "city": "Not A Slug!",
            "price": "-5",
            "is_premium": "maybe",
            "image_count": "x",
            "created_at": "2025-01-01T00:00:00Z",
        },
    ]
    report = ingest_listings_file(listed, _write_csv(tmp_path / "l2.csv", rows, LISTING_COLUMNS))
    assert (report.accepted, report.updated, report.duplicates, report.rejected) == (1, 1, 1, 1)
    with listed.cursor() as cur:
        cur.execute("select price from raw.listings where listing_id = %s", (L1,))
        assert float(cur.fetchone()[0]) == 120.0
        cur.execute("select reason from raw.rejected_listings")
        [(reason,)] = cur.fetchall()
    assert "is not a valid value" in reason or "slug" in reason


def test_overlapping_files_loaded_concurrently_count_each_event_once(listed, tmp_path, database_url):
    from fs_platform.ingestion.load import ingest_many

    shared = [_event() for _ in range(200)]
    files = [_write_csv(tmp_path / f"part{i}.csv", shared + [_event() for _ in range(100)]) for i in range(4)]
    reports = ingest_many(database_url, files, ingest_interactions_file, workers=2)
    assert sum(r.accepted for r in reports) == 200 + 4 * 100
    assert sum(r.duplicates for r in reports) == 3 * 200
    assert _count(listed, "raw.user_interactions") == 600


def test_redelivery_mixed_with_new_events_takes_the_on_conflict_path(listed, tmp_path):
    """A file holding stored and new events: the fast COPY hits the primary key, rolls back to its
    savepoint, and the on-conflict path inserts exactly the new ones."""
    first = [_event() for _ in range(5)]
    _ingest_and_check(listed, _write_csv(tmp_path / "first.csv", first))
    report = _ingest_and_check(listed, _write_csv(tmp_path / "second.csv", first[:3] + [_event(), _event()]))
    assert (report.accepted, report.duplicates) == (2, 3)
    assert _count(listed, "raw.user_interactions") == 7


def test_a_batch_checks_listings_it_has_not_seen_and_records_each_rows_file(listed, tmp_path, database_url):
    """ingest_many shares one listing-id cache across its files: a listing delivered while the batch
    runs is accepted once it exists, an unknown one is still rejected; every stored row names its file
    (source_file comes from a transaction-local setting, not from the COPY rows)."""
    from fs_platform.ingestion.load import KnownListingIds, ingest_many

    l3 = "33333333-3333-4333-8333-333333333333"
    first = _write_csv(tmp_path / "first.csv", [_event(listing_id=L1), _event(listing_id=L2)])
    cache = KnownListingIds()
    report = ingest_interactions_file(listed, first, known_listings=cache)
    assert (report.accepted, report.rejected) == (2, 0)
    second = _write_csv(tmp_path / "second.csv", [_event(listing_id=l3), _event(listing_id=L1)])
    report = ingest_interactions_file(listed, second, known_listings=cache)
    assert (report.accepted, report.rejected) == (1, 1)
    assert "is not a known listing" in _rejections(listed)[-1][1]
    ingest_listings_file(listed, _write_csv(tmp_path / "l3.csv", [_listing(l3)], LISTING_COLUMNS))
    third = _write_csv(tmp_path / "third.csv", [_event(listing_id=l3)])
    fourth = _write_csv(
        tmp_path / "fourth.csv", [_event(listing_id=L2), _event(listing_id=str(uuid.uuid4()))]
    )
    reports = ingest_many(database_url, [third, fourth], ingest_interactions_file, workers=2)
    assert [(r.accepted, r.rejected) for r in reports] == [(1, 0), (1, 1)]
    with listed.cursor() as cur:
        cur.execute("select source_file, count(*) from raw.user_interactions group by 1 order by 1")
        assert cur.fetchall() == [("first.csv", 2), ("fourth.csv", 1), ("second.csv", 1), ("third.csv", 1)]
        cur.execute("select current_setting('fs_platform.source_file', true)")
        assert cur.fetchone()[0] in (None, "")  # the setting does not outlive its transaction


def test_a_raw_table_from_before_the_source_file_default_gets_it(listed, tmp_path):
    from fs_platform.ingestion.raw_schema import ensure_raw_schema

    with listed.cursor() as cur:
        cur.execute("alter table raw.user_interactions alter column source_file drop default")
    listed.commit()
    ensure_raw_schema(listed)
    _ingest_and_check(listed, _write_csv(tmp_path / "after_upgrade.csv", [_event()]))
    with listed.cursor() as cur:
        cur.execute("select source_file from raw.user_interactions")
        assert cur.fetchall() == [("after_upgrade.csv",)]


# ----------------------------------------------------------------------------- listing versions

VERSIONED_COLUMNS = [*LISTING_COLUMNS, "updated_at"]
CREATED = datetime(2025, 1, 1, tzinfo=UTC)


def _ingest_listings(conn, path: Path):
    report = ingest_listings_file(conn, path)
    assert report.rows_read == report.accepted + report.rejected + report.duplicates
    assert report.versions_added == report.accepted
    assert report.as_dict()["versions_added"] == report.versions_added
    return report


def _versions(conn, listing_id: str) -> list[tuple]:
    """(valid_from, category_id, price as float or None) of a listing, oldest first."""
    with conn.cursor() as cur:
        cur.execute(
            "select valid_from, category_id, price::float8 from raw.listing_versions "
            "where listing_id = %s order by valid_from",
            (listing_id,),
        )
        return cur.fetchall()


def _current(conn, listing_id: str) -> tuple:
    with conn.cursor() as cur:
        cur.execute(
            "select category_id, price::float8 from raw.listings where listing_id = %s", (listing_id,)
        )
        return cur.fetchone()


def test_first_delivery_makes_one_version_per_listing_valid_from_created_at(clean_db, tmp_path):
    l3, l4 = str(uuid.uuid4()), str(uuid.uuid4())
    rows = [
        _listing(L1),
        _listing(L2, price=""),
        _listing(l3, created_at=""),  # no creation time: valid from the ingestion
        _listing(l4, created_at="", updated_at="2025-03-01T00:00:00Z"),  # ... or from the change
    ]
    report = _ingest_listings(clean_db, _write_csv(tmp_path / "l.csv", rows, VERSIONED_COLUMNS))
    assert (report.accepted, report.versions_added, report.updated, report.duplicates) == (4, 4, 0, 0)
    assert _versions(clean_db, L1) == [(CREATED, "cars", 100.0)]
    assert _versions(clean_db, L2) == [(CREATED, "cars", None)]
    with clean_db.cursor() as cur:
        cur.execute(
            "select v.valid_from = l.ingested_at and v.valid_from = v.ingested_at from raw.listing_versions v "
            "join raw.listings l using (listing_id) where listing_id = %s",
            (l3,),
        )
        assert cur.fetchall() == [(True,)]
    assert _versions(clean_db, l4) == [(datetime(2025, 3, 1, tzinfo=UTC), "cars", 100.0)]


def test_identical_redelivery_adds_no_version_and_counts_duplicates(listed, tmp_path):
    rows = [_listing(L1), _listing(L2, city="bergen", price="", is_premium="true", image_count="0")]
    report = _ingest_listings(listed, _write_csv(tmp_path / "again.csv", rows, LISTING_COLUMNS))
    assert (report.accepted, report.duplicates, report.updated, report.versions_added) == (0, 2, 0, 0)
    # attributes are the state: a different created_at alone is not a new version
    report = _ingest_listings(
        listed,
        _write_csv(
            tmp_path / "created.csv", [_listing(L1, created_at="2024-06-01T00:00:00Z")], LISTING_COLUMNS
        ),
    )
    assert (report.accepted, report.duplicates) == (0, 1)
    assert _count(listed, "raw.listing_versions") == 2


def test_change_without_updated_at_is_a_version_valid_from_the_ingestion(listed, tmp_path):
    before = datetime.now(UTC)
    report = _ingest_listings(
        listed,
        _write_csv(tmp_path / "price.csv", [_listing(L1, price="120.00"), _listing(L2)], LISTING_COLUMNS),
    )
    after = datetime.now(UTC)
    # L2 had no price and was premium in the fixture: this delivery is a new state of it as well
    assert (report.accepted, report.updated, report.versions_added, report.duplicates) == (2, 2, 2, 0)
    [first, second] = _versions(listed, L1)
    assert first == (CREATED, "cars", 100.0)
    assert before <= second[0] <= after and second[1:] == ("cars", 120.0)
    with listed.cursor() as cur:  # "ingestion time" is the transaction's now(), shared by both tables
        cur.execute(
            "select v.valid_from = v.ingested_at and v.valid_from = l.ingested_at from raw.listing_versions v "
            "join raw.listings l using (listing_id) where listing_id = %s and v.price = 120",
            (L1,),
        )
        assert cur.fetchall() == [(True,)]
    assert _current(listed, L1) == ("cars", 120.0)


def test_change_with_updated_at_is_a_version_valid_from_it(listed, tmp_path):
    changed = _listing(L1, price="90.50", updated_at="2025-02-03T04:05:06+01:00")
    report = _ingest_listings(listed, _write_csv(tmp_path / "u.csv", [changed], VERSIONED_COLUMNS))
    assert (report.accepted, report.updated, report.duplicates) == (1, 1, 0)
    assert _versions(listed, L1) == [
        (CREATED, "cars", 100.0),
        (datetime(2025, 2, 3, 3, 5, 6, tzinfo=UTC), "cars", 90.5),
    ]
    assert _current(listed, L1) == ("cars", 90.5)
    # the same file again is a duplicate, not a second version
    report = _ingest_listings(listed, _write_csv(tmp_path / "u.csv", [changed], VERSIONED_COLUMNS))
    assert (report.accepted, report.duplicates) == (0, 1)
    assert len(_versions(listed, L1)) == 2


def test_files_without_updated_at_load_from_every_format(clean_db, tmp_path):
    l3 = str(uuid.uuid4())
    jsonl = tmp_path / "l.jsonl"
    jsonl.write_text(json.dumps(_listing(L1)) + "\n")
    frame = pd.DataFrame([_listing(L2), _listing(l3, updated_at="2025-04-01T00:00:00Z")])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True)  # a typed Parquet column
    frame.to_parquet(tmp_path / "l.parquet")
    assert _ingest_listings(clean_db, jsonl).accepted == 1
    assert _ingest_listings(clean_db, tmp_path / "l.parquet").accepted == 2
    changed = frame.assign(price="130.00", updated_at=pd.to_datetime(["2025-05-01", "2025-05-02"], utc=True))
    assert _ingest_listings(clean_db, _write_parquet(tmp_path / "l2.parquet", changed)).accepted == 2
    assert [v[0] for v in _versions(clean_db, L1)] == [CREATED]
    assert _versions(clean_db, L2)[-1] == (datetime(2025, 5, 1, tzinfo=UTC), "cars", 130.0)
    assert _versions(clean_db, l3)[-1] == (datetime(2025, 5, 2, tzinfo=UTC), "cars", 130.0)


def _write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_parquet(path)
    return path


@pytest.mark.parametrize(
    ("updated_at", "reason_part"),
    [
        ("last tuesday", "updated_at is not a valid value: 'last tuesday'"),
        ((NOW + timedelta(days=2)).isoformat(), "is in the future"),
        ("2024-12-31T23:59:59Z", "is before created_at 2025-01-01 00:00:00+00:00"),
    ],
)
def test_bad_updated_at_is_quarantined_with_reason(listed, tmp_path, updated_at, reason_part):
    rows = [_listing(L1, price="1.00", updated_at=updated_at), _listing(L2, price="2.00")]
    report = _ingest_listings(listed, _write_csv(tmp_path / "bad.csv", rows, VERSIONED_COLUMNS))
    assert (report.rows_read, report.accepted, report.rejected, report.duplicates) == (2, 1, 1, 0)
    with listed.cursor() as cur:
        cur.execute("select row_number, reason, payload from raw.rejected_listings")
        [(row_number, reason, payload)] = cur.fetchall()
    assert row_number == 1 and reason_part in reason
    assert payload["updated_at"] == updated_at  # kept as sent
    assert _versions(listed, L1) == [(CREATED, "cars", 100.0)]
    assert _current(listed, L1) == ("cars", 100.0)


def test_several_versions_of_one_listing_in_one_file(clean_db, tmp_path):
    l3 = str(uuid.uuid4())
    rows = [  # out of order on purpose: versions follow updated_at, not the file
        _listing(l3, price="90.00", updated_at="2025-05-01T00:00:00Z"),
        _listing(l3, price="100.00", updated_at="2025-02-01T00:00:00Z"),
        _listing(l3, price="120.00", updated_at="2025-04-01T00:00:00Z"),  # same as its predecessor
        _listing(l3, price="120.00", updated_at="2025-03-01T00:00:00Z"),
        _listing(l3, price="120.00", updated_at="2025-03-01T00:00:00Z"),  # a plain repeat
    ]
    report = _ingest_listings(clean_db, _write_csv(tmp_path / "many.csv", rows, VERSIONED_COLUMNS))
    assert (report.rows_read, report.accepted, report.duplicates, report.rejected) == (5, 3, 2, 0)
    assert _versions(clean_db, l3) == [
        (CREATED, "cars", 100.0),  # the first version of a new listing starts at its creation
        (datetime(2025, 3, 1, tzinfo=UTC), "cars", 120.0),
        (datetime(2025, 5, 1, tzinfo=UTC), "cars", 90.0),
    ]
    assert _current(clean_db, l3) == ("cars", 90.0)


def test_price_to_null_and_category_change_are_versions(listed, tmp_path):
    rows = [
        _listing(L1, price="", updated_at="2025-02-01T00:00:00Z"),
        _listing(L1, price="", category_id="boats", updated_at="2025-03-01T00:00:00Z"),
    ]
    report = _ingest_listings(listed, _write_csv(tmp_path / "null.csv", rows, VERSIONED_COLUMNS))
    assert (report.accepted, report.updated, report.duplicates) == (2, 1, 0)
    assert _versions(listed, L1) == [
        (CREATED, "cars", 100.0),
        (datetime(2025, 2, 1, tzinfo=UTC), "cars", None),
        (datetime(2025, 3, 1, tzinfo=UTC), "boats", None),
    ]
    assert _current(listed, L1) == ("boats", None)


def test_late_history_fills_in_and_never_overwrites(listed, tmp_path):
    june = _listing(L1, price="200.00", updated_at="2025-06-01T00:00:00Z")
    _ingest_listings(listed, _write_csv(tmp_path / "june.csv", [june], VERSIONED_COLUMNS))
    rows = [
        _listing(L1, price="150.00", updated_at="2025-03-01T00:00:00Z"),  # older than the latest: filled in
        _listing(L1, price="999.00", updated_at="2025-06-01T00:00:00Z"),  # that valid_from is taken: kept
        _listing(L1, price="100.00", updated_at="2025-01-01T00:00:00Z"),  # = the first version's key
    ]
    report = _ingest_listings(listed, _write_csv(tmp_path / "late.csv", rows, VERSIONED_COLUMNS))
    assert (report.accepted, report.duplicates, report.updated) == (1, 2, 0)
    assert _versions(listed, L1) == [
        (CREATED, "cars", 100.0),
        (datetime(2025, 3, 1, tzinfo=UTC), "cars", 150.0),
        (datetime(2025, 6, 1, tzinfo=UTC), "cars", 200.0),
    ]
    assert _current(listed, L1) == ("cars", 200.0)  # the latest version by valid_from


def test_refused_listings_file_writes_no_version(listed, tmp_path):
    path = _write_csv(
        tmp_path / "nocity.csv", [_listing(L1, price="5.00")], [c for c in LISTING_COLUMNS if c != "city"]
    )
    with pytest.raises(UnreadableFileError, match="city"):
        ingest_listings_file(listed, path)
    listed.rollback()
    assert _count(listed, "raw.listing_versions") == 2
    assert _count(listed, "raw.ingested_files") == 1  # the fixture's file only


def test_a_warehouse_from_before_versions_is_backfilled_once(clean_db, tmp_path):
    from fs_platform.ingestion.raw_schema import ensure_raw_schema

    l3 = str(uuid.uuid4())
    _ingest_listings(
        clean_db, _write_csv(tmp_path / "l.csv", [_listing(L1), _listing(l3, created_at="")], LISTING_COLUMNS)
    )
    with clean_db.cursor() as cur:
        cur.execute("drop table raw.listing_versions")
    clean_db.commit()
    ensure_raw_schema(clean_db)
    ensure_raw_schema(clean_db)  # idempotent
    assert _versions(clean_db, L1) == [(CREATED, "cars", 100.0)]
    with clean_db.cursor() as cur:
        cur.execute(
            "select v.valid_from = l.ingested_at from raw.listing_versions v join raw.listings l using (listing_id) "
            "where listing_id = %s",
            (l3,),
        )
        assert cur.fetchall() == [(True,)]
    # and versioning carries on from the backfilled state
    report = _ingest_listings(
        clean_db, _write_csv(tmp_path / "l2.csv", [_listing(L1, price="1.00")], LISTING_COLUMNS)
    )
    assert (report.accepted, report.updated) == (1, 1)
    assert len(_versions(clean_db, L1)) == 2
