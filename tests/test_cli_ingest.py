"""`fs-platform ingest` as a user runs it: real files, a real PostgreSQL, click's runner.

Why through the CLI: the per-file error handling, the summary and the exit code are the command's
own behaviour, not the loader's.
"""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg2.extensions
import pytest
from click.testing import CliRunner, Result

from fs_platform.cli import main
from fs_platform.ingestion.load import INTERACTION_COLUMNS, LISTING_COLUMNS

LISTING = "11111111-1111-4111-8111-111111111111"
YESTERDAY = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def _events(n: int, occurred_at: datetime = YESTERDAY) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [str(uuid.uuid4()) for _ in range(n)],
            "user_id": [str(uuid.uuid4()) for _ in range(n)],
            "listing_id": [LISTING] * n,
            "event_type": ["listing_viewed"] * n,
            "occurred_at": [occurred_at.isoformat()] * n,
            "device_type": ["ios"] * n,
        }
    )[INTERACTION_COLUMNS]


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


def _ingest(*args: str) -> Result:
    return CliRunner().invoke(main, ["ingest", *args], catch_exceptions=False)


def _count(conn: psycopg2.extensions.connection, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"select count(*) from {table}")
        (count,) = cur.fetchone()
    conn.rollback()
    return count


@pytest.fixture()
def listed(clean_db, database_url, tmp_path, monkeypatch) -> psycopg2.extensions.connection:
    """An empty warehouse with one listing, loaded through the CLI; FS_DATABASE_URL names it."""
    monkeypatch.setenv("FS_DATABASE_URL", database_url)
    listing = pd.DataFrame(
        [[LISTING, "cars", "oslo", "100.00", "false", "3", "2025-01-01T00:00:00Z"]], columns=LISTING_COLUMNS
    )
    result = _ingest("--kind", "listings", str(_csv(tmp_path / "listings.csv", listing)))
    assert result.exit_code == 0, result.stderr
    return clean_db


def test_a_refused_file_is_one_line_and_the_others_still_load(listed, tmp_path):
    first = _events(3)
    first["occurred_at"] = pd.to_datetime(first["occurred_at"], utc=True)
    first.to_parquet(tmp_path / "a.parquet")
    _csv(tmp_path / "bad.csv", _events(2).rename(columns={"user_id": "user"}))
    last = _events(4)
    last.to_parquet(tmp_path / "c.parquet")
    files = [str(tmp_path / name) for name in ("a.parquet", "bad.csv", "c.parquet")]

    result = _ingest(*files, "--kind", "interactions")

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert [line for line in lines if "bad.csv" in line] == [
        "refused bad.csv: missing required column(s) user_id (found: event_id, user, listing_id, "
        "event_type, occurred_at, device_type); file refused"
    ]
    assert lines[-1] == (
        "3 file(s): 2 loaded, 1 refused, 0 with every row rejected; rows accepted 7, rejected 0, duplicates 0"
    )
    assert [r.split('"source_file": "')[1].split('"')[0] for r in result.stdout.splitlines()] == [
        "a.parquet",
        "c.parquet",
    ]
    assert _count(listed, "raw.user_interactions") == 7


def test_a_file_with_every_row_rejected_warns_and_fails_unless_allowed(listed, tmp_path):
    old = _csv(tmp_path / "1997.csv", _events(5, occurred_at=datetime(1997, 6, 1, tzinfo=UTC)))
    good = _csv(tmp_path / "good.csv", _events(2))

    result = _ingest("--kind", "interactions", str(old), str(good))

    assert result.exit_code == 1
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning 1997.csv: all 5 rows rejected (most often: occurred_at")
    assert "before the earliest accepted date" in warnings[0]
    assert result.stderr.splitlines()[-1].endswith("rows accepted 2, rejected 5, duplicates 0")
    assert _count(listed, "raw.rejected_interactions") == 5  # quarantined with reasons, as always

    again = _ingest("--kind", "interactions", "--allow-all-rejected", str(old))
    assert again.exit_code == 0
    assert "warning 1997.csv: all 5 rows rejected" in again.stderr


def test_a_clean_batch_exits_zero(listed, tmp_path):
    result = _ingest("--kind", "interactions", str(_csv(tmp_path / "ok.csv", _events(3))))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1].startswith("1 file(s): 1 loaded, 0 refused")
    assert _count(listed, "raw.user_interactions") == 3
