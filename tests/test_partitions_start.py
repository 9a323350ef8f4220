"""The feature partitions start where the data starts (or where FS_FEATURES_START_DATE says)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime

from fs_platform.defs.features.partitions import partitions_start
from fs_platform.infra.config import get_settings
from fs_platform.ingestion.data_span import first_event_day, record_first_event_day
from fs_platform.ingestion.raw_schema import ensure_raw_schema


def _insert_event(conn, occurred_at: datetime) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "insert into raw.user_interactions (event_id, user_id, listing_id, event_type, occurred_at, "
            "device_type) values (%s, %s, %s, 'listing_viewed', %s, 'web')",
            (str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), occurred_at),
        )
    conn.commit()


def test_first_event_day_is_recorded_and_only_moves_earlier(clean_db, tmp_path):
    assert record_first_event_day(clean_db, tmp_path) is None  # no raw schema yet
    ensure_raw_schema(clean_db)
    clean_db.commit()
    assert record_first_event_day(clean_db, tmp_path) is None  # no events yet
    _insert_event(clean_db, datetime(2026, 5, 3, 23, 59, tzinfo=UTC))
    assert record_first_event_day(clean_db, tmp_path) == date(2026, 5, 3)
    _insert_event(clean_db, datetime(2026, 4, 30, 0, 0, 1, tzinfo=UTC))
    assert record_first_event_day(clean_db, tmp_path) == date(2026, 4, 30)
    with clean_db.cursor() as cur:
        cur.execute("delete from raw.user_interactions where occurred_at < '2026-05-01'")
    clean_db.commit()
    assert first_event_day(tmp_path) == date(2026, 4, 30)  # the range never shrinks under the UI
    assert record_first_event_day(clean_db, tmp_path) == date(2026, 4, 30)


def test_partitions_start_the_day_after_the_first_event(tmp_path, monkeypatch):
    monkeypatch.delenv("FS_FEATURES_START_DATE", raising=False)
    monkeypatch.setenv("FS_HOME", str(tmp_path))
    settings = get_settings()
    start, source = partitions_start(settings)
    assert start == datetime.now(UTC).date() and "no events" in source
    (tmp_path / "first_event_day").write_text("2026-04-30\n")
    start, source = partitions_start(settings)
    assert start == date(2026, 5, 1) and "2026-04-30" in source
    explicit = dataclasses.replace(settings, features_start_date=date(2026, 1, 1))
    assert partitions_start(explicit) == (date(2026, 1, 1), "FS_FEATURES_START_DATE")
