"""Validated, idempotent, all-or-nothing loading of event and listing files into ``raw``.

Per file, in one transaction: read → parse → pandera validation → COPY the valid rows into a
temporary table → insert into the raw table (``on conflict do nothing`` makes re-delivery a
no-op; listings add a version per new attribute state and upsert their latest state) → quarantine
everything else with the original payload and a reason. Every input row is accounted for:
``rows_read == accepted + rejected + duplicates`` is asserted before commit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from fs_platform.infra.config import Settings, get_settings
from fs_platform.infra.runtime import pg_connect
from fs_platform.ingestion.copy_text import copy_payload
from fs_platform.ingestion.file_reader import ReadResult, payload_of, read_rows
from fs_platform.ingestion.raw_schema import SOURCE_FILE_SETTING, ensure_raw_schema
from fs_platform.ingestion.validation import (
    InteractionRow,
    ListingRow,
    failure_reasons,
    time_window_reasons,
    updated_at_reasons,
)

INTERACTION_COLUMNS = ["event_id", "user_id", "listing_id", "event_type", "occurred_at", "device_type"]
LISTING_COLUMNS = ["listing_id", "category_id", "city", "price", "is_premium", "image_count", "created_at"]
#: optional listing column: when the attributes changed at the source (dates the new version)
UPDATED_AT = "updated_at"
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


class ConservationError(AssertionError):
    """Rows read did not equal accepted + rejected + duplicates: a bug, never committed."""


@dataclass
class IngestReport:
    kind: str
    source_file: str
    file_sha256: str
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    updated: int = 0  # listings only: listings whose current state changed (their rows are in accepted)
    versions_added: int = 0  # listings only: new rows of raw.listing_versions (one per accepted row)
    reject_reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def check_conservation(self) -> None:
        if self.rows_read != self.accepted + self.rejected + self.duplicates:
            raise ConservationError(
                f"{self.source_file}: rows read {self.rows_read} != accepted {self.accepted} + rejected "
                f"{self.rejected} + duplicates {self.duplicates}"
            )

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "source_file": self.source_file,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "updated": self.updated,
            "versions_added": self.versions_added,
            "reject_reasons": dict(self.reject_reasons),
            "seconds": round(self.seconds, 3),
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_QUOTED = re.compile(r"'[^']*'")
_UUIDISH = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T][0-9:.+-]+")
_NUMBER = re.compile(r"\b\d+\b")


def _reason_category(reason: str) -> str:
    """Group reasons for metadata: the reason with the quoted values and numbers blanked out."""
    text = _QUOTED.sub("'…'", reason)
    text = _UUIDISH.sub("<id>", text)
    text = _TIMESTAMP.sub("<time>", text)
    return _NUMBER.sub("N", text)


def _strip(series: pd.Series) -> pd.Series:
    return series.astype(pd.StringDtype("pyarrow")).str.strip()


def _parse_timestamps(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.astype("datetime64[us, UTC]")
    text = _strip(series)
    parsed = pd.to_datetime(text.astype(object), utc=True, errors="coerce", format="ISO8601")
    return parsed.astype("datetime64[us, UTC]")


# ----------------------------------------------------------------------------- interactions


def _parse_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    parsed = pd.DataFrame(index=frame.index)
    for name in ("event_id", "user_id", "listing_id"):
        parsed[name] = _strip(frame[name]).str.lower()
    for name in ("event_type", "device_type"):
        parsed[name] = _strip(frame[name])
    parsed["occurred_at"] = _parse_timestamps(frame["occurred_at"])
    return parsed


class KnownListingIds:
    """Listing ids known to be in ``raw.listings``, shared by the files of one ingestion batch.

    Each file's events are checked against the listings. Asking the database for every file costs
    ~10 % of a file's load, so a batch loads the known ids once and asks only about the ids it has
    not seen. Sound because ``raw.listings`` only grows (listings are upserted, never deleted): an
    id known once stays known for the batch, and an id not known is always checked in the database.
    """

    def __init__(self) -> None:
        self._ids: set[str] | None = None
        self._lock = threading.Lock()

    def unknown(self, cur: psycopg2.extensions.cursor, ids: np.ndarray) -> set[str]:
        """Which of ``ids`` are not listings (the database decides every id the cache lacks)."""
        with self._lock:
            if self._ids is None:
                cur.execute("select listing_id::text from raw.listings")
                self._ids = {row[0] for row in cur.fetchall()}
            known = self._ids
        misses = [i for i in pa.array(ids, type=pa.string()).to_pylist() if i not in known]
        unknown = _unknown_listing_ids(cur, misses)
        with self._lock:
            self._ids.update(set(misses) - unknown)
        return unknown


def ingest_interactions_file(
    conn: psycopg2.extensions.connection,
    path: Path,
    settings: Settings | None = None,
    *,
    known_listings: KnownListingIds | None = None,
) -> IngestReport:
    """Load one interactions file; see the module docstring for the guarantees.

    ``known_listings`` shares the listing-id check between the files of a batch (``ingest_many``).
    """
    settings = settings or get_settings()
    started = time.perf_counter()
    ensure_raw_schema(conn)
    read = read_rows(path, INTERACTION_COLUMNS)
    report = IngestReport("interactions", str(path.name), file_sha256(path), rows_read=read.rows_read)
    parsed = _parse_interactions(read.frame)

    reasons = pd.Series(read.row_problems, dtype=object)
    reasons = reasons.combine_first(failure_reasons(InteractionRow, parsed, read.frame))
    now = datetime.now(UTC)
    earliest = datetime.combine(settings.earliest_event_date, datetime.min.time(), tzinfo=UTC)
    latest = now + timedelta(seconds=settings.future_tolerance_seconds)
    reasons = reasons.combine_first(time_window_reasons(parsed["occurred_at"], earliest, latest))

    valid_mask = np.ones(len(parsed), dtype=bool)
    valid_mask[reasons.index.to_numpy(dtype=np.int64)] = False
    valid = parsed[valid_mask]
    in_file_dup = valid["event_id"].duplicated(keep="first")
    report.duplicates += int(in_file_dup.sum())
    valid = valid[~in_file_dup]

    with conn.cursor() as cur:
        listing_ids = valid["listing_id"].unique()
        unknown = (
            known_listings.unknown(cur, listing_ids)
            if known_listings is not None
            else _unknown_listing_ids(cur, listing_ids)
        )
        unknown_listing = _isin(valid["listing_id"], unknown)
        unknown_reasons = {
            int(row): f"listing_id {lid} is not a known listing"
            for row, lid in zip(
                valid.index[unknown_listing], valid["listing_id"][unknown_listing], strict=True
            )
        }
        candidates = valid[~unknown_listing]
        report.accepted = _insert_events(cur, candidates, report.source_file)
        report.duplicates += len(candidates) - report.accepted
        all_reasons = {int(k): str(v) for k, v in reasons.items()}
        all_reasons.update(unknown_reasons)
        _quarantine(cur, "raw.rejected_interactions", report, read, all_reasons)
        _finish(cur, report, started)
    conn.commit()
    return report


def _isin(series: pd.Series, values: set[str]) -> np.ndarray:
    """Vectorised membership in Arrow (pandas' isin on Arrow strings loops in Python)."""
    if not values:
        return np.zeros(len(series), dtype=bool)
    mask = pc.is_in(pa.array(series, type=pa.string()), value_set=pa.array(sorted(values), type=pa.string()))
    return mask.to_numpy(zero_copy_only=False).astype(bool)


def _unknown_listing_ids(cur: psycopg2.extensions.cursor, ids: np.ndarray | list[str]) -> set[str]:
    """Which of ``ids`` (canonical lower-case UUID text) are not in ``raw.listings``.

    Only the misses travel back (usually none), not every known id of the file.
    """
    if len(ids) == 0:
        return set()
    cur.execute(
        "select u.id::text from unnest(%s::uuid[]) as u(id) "
        "where not exists (select 1 from raw.listings as l where l.listing_id = u.id)",
        ("{" + ",".join(pa.array(ids, type=pa.string()).to_pylist()) + "}",),
    )
    return {row[0] for row in cur.fetchall()}


def _insert_events(cur: psycopg2.extensions.cursor, events: pd.DataFrame, source_file: str) -> int:
    """Insert the events not stored yet; returns how many were inserted.

    Fast path (a new delivery): COPY the rows straight into the table, in key order so the
    primary-key B-tree is updated page by page. If any id is already stored — a re-delivery, or a
    concurrent load of an overlapping file — the unique violation rolls the COPY back and the rows
    go through a temp table and ``insert ... on conflict do nothing`` in key order (exact under
    concurrency, deadlock-free).
    """
    if events.empty:
        return 0
    new = events.sort_values("event_id").assign(source_file=source_file)
    columns = ["event_id", "user_id", "listing_id", "event_type", "occurred_at", "device_type", "source_file"]
    cur.execute("savepoint fast_copy")
    try:
        # source_file's column default reads this transaction-local setting (warehouse.py): the file
        # name is not repeated in every COPY row
        cur.execute(f"select set_config('{SOURCE_FILE_SETTING}', %s, true)", (source_file,))
        _copy_frame(cur, "raw.user_interactions", new[columns[:-1]])
        cur.execute("release savepoint fast_copy")
        return len(new)
    except psycopg2.errors.UniqueViolation:
        cur.execute("rollback to savepoint fast_copy")
    cur.execute(
        "create temp table _ingest_events (event_id uuid, user_id uuid, listing_id uuid, event_type text, "
        "occurred_at timestamptz, device_type text, source_file text) on commit drop"
    )
    _copy_frame(cur, "_ingest_events", new[columns])
    cur.execute(
        f"""
        with inserted as (
            insert into raw.user_interactions ({", ".join(columns)})
            select {", ".join(columns)} from _ingest_events
            order by event_id  -- a fixed key order: concurrent loads cannot deadlock
            on conflict (event_id) do nothing
            returning 1
        )
        select count(*) from inserted
        """
    )
    return cur.fetchone()[0]


def ingest_many(
    database_url: str,
    paths: list[Path],
    ingest_file: Callable[[psycopg2.extensions.connection, Path], IngestReport],
    *,
    workers: int = 2,
    progress: bool = False,
) -> list[IngestReport]:
    """Ingest files concurrently, one connection and one transaction per file.

    Parsing/validation of one file overlaps with the database work of another; each file stays
    all-or-nothing. Reports come back in the order of ``paths``; the first failure is re-raised
    after the other in-flight files have finished (their commits are kept: they were valid).
    """
    local = threading.local()
    connections: list[psycopg2.extensions.connection] = []
    lock = threading.Lock()
    if ingest_file is ingest_interactions_file and len(paths) > 1:
        ingest_file = functools.partial(ingest_interactions_file, known_listings=KnownListingIds())

    def work(path: Path) -> IngestReport:
        if not hasattr(local, "conn"):
            local.conn = pg_connect(database_url)
            with lock:
                connections.append(local.conn)
        try:
            return ingest_file(local.conn, path)
        except Exception:
            local.conn.rollback()
            raise

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(work, path) for path in paths]
            iterator = tqdm(futures, desc="ingest", unit="file", disable=not progress)
            reports = [future.result() for future in iterator]
        if any(r.accepted for r in reports):
            # fresh statistics now, so the next day-range query over the new rows uses the BRIN index
            # instead of waiting for autovacuum's next visit
            with pg_connect(database_url) as conn, conn.cursor() as cur:
                cur.execute("analyze raw.listings")
                cur.execute("analyze raw.listing_versions")
                cur.execute("analyze raw.user_interactions")
            conn.close()
        return reports
    finally:
        for conn in connections:
            conn.close()


# ----------------------------------------------------------------------------- listings


def _parse_bool(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Returns (parsed with missing -> False, mask of unparseable values)."""
    text = _strip(series).str.lower()
    parsed = pd.Series(pd.NA, index=series.index, dtype="boolean")
    parsed[text.isin(_TRUE).fillna(False)] = True
    parsed[text.isin(_FALSE).fillna(False)] = False
    bad = text.notna() & parsed.isna()
    return parsed.fillna(False), bad.fillna(False)


def _parse_listings(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    parsed = pd.DataFrame(index=frame.index)
    reasons = pd.Series(dtype=object)
    parsed["listing_id"] = _strip(frame["listing_id"]).str.lower()
    parsed["category_id"] = _strip(frame["category_id"])
    parsed["city"] = _strip(frame["city"]).str.lower()
    price_text = frame["price"]
    parsed["price"] = pd.to_numeric(price_text.astype(object), errors="coerce").astype(float).round(2)
    bad_price = price_text.notna() & parsed["price"].isna()
    premium, bad_premium = _parse_bool(frame["is_premium"])
    parsed["is_premium"] = premium
    images = pd.to_numeric(frame["image_count"].astype(object), errors="coerce")
    bad_images = frame["image_count"].notna() & (images.isna() | (images % 1 != 0))
    parsed["image_count"] = images.where(~bad_images, 0).fillna(0).astype("Int64")
    parsed["created_at"] = _parse_timestamps(frame["created_at"])
    bad_created = frame["created_at"].notna() & parsed["created_at"].isna()
    if UPDATED_AT in frame.columns:
        parsed[UPDATED_AT] = _parse_timestamps(frame[UPDATED_AT])
        bad_updated = frame[UPDATED_AT].notna() & parsed[UPDATED_AT].isna()
    else:  # files without the column date changes by their arrival (semantics §3)
        parsed[UPDATED_AT] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
        bad_updated = pd.Series(False, index=frame.index)
    for mask, column in (
        (bad_price, "price"),
        (bad_premium, "is_premium"),
        (bad_images, "image_count"),
        (bad_created, "created_at"),
        (bad_updated, UPDATED_AT),
    ):
        for row in np.flatnonzero(mask.to_numpy(dtype=bool)):
            reasons.loc[int(row)] = f"{column} is not a valid value: {str(frame.at[row, column])[:60]!r}"
    return parsed, reasons


def ingest_listings_file(
    conn: psycopg2.extensions.connection, path: Path, settings: Settings | None = None
) -> IngestReport:
    """Load one listings file: new attribute states become versions, ``raw.listings`` the latest.

    Versions are never overwritten, so features and training sets can ask what a listing looked
    like at any time; ``raw.listings`` stays the one-row-per-listing view that everything else
    reads. The rules (semantics §3) are in ``_VERSION_SQL``.
    """
    settings = settings or get_settings()
    started = time.perf_counter()
    ensure_raw_schema(conn)
    read = read_rows(path, LISTING_COLUMNS, optional=(UPDATED_AT,))
    report = IngestReport("listings", str(path.name), file_sha256(path), rows_read=read.rows_read)
    parsed, parse_reasons = _parse_listings(read.frame)
    reasons = pd.Series(read.row_problems, dtype=object).combine_first(parse_reasons)
    reasons = reasons.combine_first(failure_reasons(ListingRow, parsed, read.frame))
    latest = datetime.now(UTC) + timedelta(seconds=settings.future_tolerance_seconds)
    reasons = reasons.combine_first(updated_at_reasons(parsed[UPDATED_AT], parsed["created_at"], latest))

    valid_mask = np.ones(len(parsed), dtype=bool)
    valid_mask[reasons.index.to_numpy(dtype=np.int64)] = False
    valid = parsed[valid_mask].assign(seq=np.flatnonzero(valid_mask))

    with conn.cursor() as cur:
        cur.execute(
            "create temp table _ingest_listings (seq integer, listing_id uuid, category_id text, city text, "
            "price numeric(12,2), is_premium boolean, image_count integer, created_at timestamptz, "
            "updated_at timestamptz) on commit drop"
        )
        _copy_frame(cur, "_ingest_listings", valid)
        # one writer of versions at a time: each file's "latest version" is then the committed one
        cur.execute("select pg_advisory_xact_lock(hashtext('fs_platform.listing_versions'))")
        cur.execute(_VERSION_SQL, (report.source_file,))
        report.versions_added = cur.fetchone()[0]
        cur.execute(_CURRENT_SQL)
        _inserted, updated = cur.fetchone()
        report.accepted = report.versions_added  # a row is accepted iff it added a version
        report.updated = updated
        report.duplicates = len(valid) - report.accepted  # same state as its predecessor, or same key
        _quarantine(cur, "raw.rejected_listings", report, read, {int(k): str(v) for k, v in reasons.items()})
        _finish(cur, report, started)
    conn.commit()
    return report


#: Staged rows -> new versions. In order: (1) within the file, rows of a listing with the same
#: ``updated_at`` (or both without one) keep the last; (2) each row's ``valid_from``: the first row of
#: a listing without versions is valid from its ``created_at`` (else its ``updated_at``, else now()),
#: any other row from its ``updated_at``, else now() (the transaction's start); (3) rows whose
#: ``valid_from`` collides keep the last in the file, and a stored version with that ``valid_from``
#: is kept as it is (versions are never overwritten); (4) in ``valid_from`` order among the stored
#: versions, a row adds a version iff its attributes differ from the state just before it. Rows
#: that add nothing are duplicates. Returns the number of versions added.
_VERSION_SQL = """
with latest_per_updated_at as (
    select distinct on (listing_id, updated_at) *
    from _ingest_listings
    order by listing_id, updated_at, seq desc
),
ranked as (
    select s.*,
        row_number() over (partition by s.listing_id order by coalesce(s.updated_at, now()), s.seq) as k,
        exists (select 1 from raw.listing_versions as v where v.listing_id = s.listing_id) as known
    from latest_per_updated_at as s
),
dated as (
    select distinct on (listing_id, valid_from) *
    from (
        select r.*,
            case when not r.known and r.k = 1 then coalesce(r.created_at, r.updated_at, now())
                 else coalesce(r.updated_at, now()) end as valid_from
        from ranked as r
    ) as d
    order by listing_id, valid_from, seq desc
),
fresh as (
    select d.* from dated as d
    where not exists (
        select 1 from raw.listing_versions as v
        where v.listing_id = d.listing_id and v.valid_from = d.valid_from
    )
),
timeline as (
    select listing_id, valid_from, category_id, city, price, is_premium, image_count, created_at,
           true as is_new
    from fresh
    union all
    select listing_id, valid_from, category_id, city, price, is_premium, image_count, created_at,
           false
    from raw.listing_versions
    where listing_id in (select listing_id from fresh)
),
compared as (
    select t.*,
        lag(row(category_id, city, price, is_premium, image_count))
            over (partition by listing_id order by valid_from) as previous
    from timeline as t
),
added as (
    insert into raw.listing_versions
        (listing_id, valid_from, category_id, city, price, is_premium, image_count, created_at, source_file)
    select listing_id, valid_from, category_id, city, price, is_premium, image_count, created_at, %s
    from compared
    where is_new and row(category_id, city, price, is_premium, image_count) is distinct from previous
    order by listing_id, valid_from
    returning 1
)
select count(*) from added
"""

#: ``raw.listings`` <- the latest version (by ``valid_from``) of every listing in the file; returns
#: (listings inserted, listings whose current state changed).
_CURRENT_SQL = """
with latest as (
    select distinct on (v.listing_id) v.*
    from raw.listing_versions as v
    where v.listing_id in (select listing_id from _ingest_listings)
    order by v.listing_id, v.valid_from desc
),
upserted as (
    insert into raw.listings as l
        (listing_id, category_id, city, price, is_premium, image_count, created_at, source_file)
    select listing_id, category_id, city, price, is_premium, image_count, created_at, source_file
    from latest
    order by listing_id
    on conflict (listing_id) do update set
        category_id = excluded.category_id, city = excluded.city, price = excluded.price,
        is_premium = excluded.is_premium, image_count = excluded.image_count,
        created_at = excluded.created_at, source_file = excluded.source_file, ingested_at = now()
    where (l.category_id, l.city, l.price, l.is_premium, l.image_count, l.created_at)
          is distinct from
          (excluded.category_id, excluded.city, excluded.price, excluded.is_premium,
           excluded.image_count, excluded.created_at)
    returning (xmax = 0) as inserted
)
select count(*) filter (where inserted), count(*) filter (where not inserted) from upserted
"""


# ----------------------------------------------------------------------------- shared steps


def _copy_frame(cur: psycopg2.extensions.cursor, table: str, frame: pd.DataFrame) -> None:
    """COPY a frame as CSV built in C++/NumPy (one round trip, no per-row Python)."""
    cur.copy_expert(
        f"copy {table} ({', '.join(frame.columns)}) from stdin with (format csv)", copy_payload(frame)
    )


def _quarantine(
    cur: psycopg2.extensions.cursor,
    table: str,
    report: IngestReport,
    read: ReadResult,
    reasons: dict[int, str],
) -> None:
    rows = [
        (report.source_file, report.file_sha256, row + 1, json.dumps(payload_of(read.frame, row)), reason)
        for row, reason in sorted(reasons.items())
    ]
    offset = len(read.frame)
    rows += [
        (report.source_file, report.file_sha256, offset + i + 1, json.dumps(payload), reason)
        for i, (payload, reason) in enumerate(read.unparsed_rows)
    ]
    psycopg2.extras.execute_values(
        cur,
        f"insert into {table} (source_file, file_sha256, row_number, payload, reason) values %s "
        "on conflict (file_sha256, row_number) do nothing",
        rows,
        page_size=1000,
    )
    report.rejected = len(rows)
    report.reject_reasons = Counter(_reason_category(r[4]) for r in rows)


def _finish(cur: psycopg2.extensions.cursor, report: IngestReport, started: float) -> None:
    report.check_conservation()
    report.seconds = time.perf_counter() - started
    cur.execute(
        "insert into raw.ingested_files (kind, source_file, file_sha256, rows_read, accepted, rejected, duplicates) "
        "values (%s, %s, %s, %s, %s, %s, %s)",
        (
            report.kind,
            report.source_file,
            report.file_sha256,
            report.rows_read,
            report.accepted,
            report.rejected,
            report.duplicates,
        ),
    )
