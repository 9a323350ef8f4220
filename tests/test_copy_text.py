"""The vectorised timestamp text for COPY equals Python's own formatting, and PostgreSQL reads it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2

from fs_platform.ingestion.copy_text import copy_payload, utc_timestamp_text

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _python_text(micros: int) -> str:
    t = EPOCH + timedelta(microseconds=int(micros))
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}+00"


def test_matches_python_formatting_across_the_calendar() -> None:
    rng = np.random.default_rng(7)
    lowest = int((datetime(1, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000
    highest = (
        int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000 + 999_999
    )
    edges = [
        lowest,
        highest,
        0,
        -1,
        951_782_400_000_000,  # 2000-02-29
        4_107_542_399_999_999,  # 2100-02-28 23:59:59.999999 (no leap day in 2100)
        1_709_164_800_000_000,  # 2024-02-29
    ]
    micros = np.concatenate([np.array(edges, dtype=np.int64), rng.integers(lowest, highest, 20_000)])
    got = utc_timestamp_text(micros).to_pylist()
    assert got == [_python_text(m) for m in micros]


def test_copy_round_trip_through_postgres(database_url: str) -> None:
    stamps = pd.Series(
        pd.to_datetime(
            ["2026-03-29 01:59:59.999999", "1999-12-31 23:00:00", "2026-11-30 12:00:00.5"],
            utc=True,
            format="ISO8601",
        )
    ).astype("datetime64[us, UTC]")
    frame = pd.DataFrame({"id": [1, 2, 3], "at": stamps})
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        cur.execute("set time zone 'Europe/Berlin'")  # the text carries +00: the session zone must not matter
        cur.execute("create temp table t (id int, at timestamptz)")
        cur.copy_expert("copy t (id, at) from stdin with (format csv)", copy_payload(frame))
        cur.execute("select (extract(epoch from at) * 1000000)::bigint from t order by id")
        back = [row[0] for row in cur.fetchall()]
    conn.close()
    assert back == list(stamps.astype("int64"))
