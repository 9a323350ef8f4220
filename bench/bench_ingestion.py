"""Generation and ingestion throughput, against a plain COPY of the same rows.

Ours: Parquet files → read, parse, pandera validation, COPY to a temp table, insert with
idempotency (primary key, ``on conflict``), quarantine, bookkeeping — per daily file.
Reference, same server, same run: the same rows as CSV (converted beforehand, not timed)
COPYed into an unindexed table: the raw speed limit of getting bytes into PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.common import target, write_result
from bench.database import bench_database, reset_schemas
from fs_platform.dev.synthetic import generate, write_parquet
from fs_platform.infra.runtime import pg_connect
from fs_platform.ingestion.load import ingest_interactions_file, ingest_listings_file, ingest_many


def generate_dataset(scale: str, folder: Path, seed: int = 42) -> tuple[dict, float, int]:
    started = time.perf_counter()
    data = generate(scale, seed=seed, progress=True)
    seconds = time.perf_counter() - started
    written = write_parquet(data, folder)
    return written, seconds, len(data.events)


def run(scale: str, runs: int, workdir: Path) -> Path:
    folder = workdir / f"data_{scale}"
    written, gen_seconds, n_events = generate_dataset(scale, folder)
    database_url = bench_database(scale)
    conn = pg_connect(database_url)
    reset_schemas(conn)

    started = time.perf_counter()
    for path in written["listings"]:
        ingest_listings_file(conn, path)
    totals = {"rows_read": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    for report in ingest_many(database_url, written["interactions"], ingest_interactions_file, progress=True):
        for key in totals:
            totals[key] += getattr(report, key)
    ingest_seconds = time.perf_counter() - started
    assert totals["rows_read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"]

    # the reference: the same rows as CSV, COPYed into an unindexed table
    csv_dir = workdir / f"csv_{scale}"
    csv_dir.mkdir(parents=True, exist_ok=True)
    csv_files = []
    for path in written["interactions"]:
        target_csv = csv_dir / (path.stem + ".csv")
        if not target_csv.exists():
            pacsv.write_csv(pq.read_table(path), target_csv)
        csv_files.append(target_csv)
    copy_times = []
    for _ in range(max(1, runs)):
        with conn.cursor() as cur:
            cur.execute("drop table if exists public.bench_plain_copy")
            cur.execute(
                "create unlogged table public.bench_plain_copy (event_id uuid, user_id uuid, listing_id uuid, "
                "event_type text, occurred_at timestamptz, device_type text)"
            )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for path in csv_files:
                with path.open("rb") as fh:
                    cur.copy_expert(
                        "copy public.bench_plain_copy (event_id, user_id, listing_id, event_type, occurred_at, "
                        "device_type) from stdin with (format csv, header true)",
                        fh,
                    )
        conn.commit()
        copy_times.append(time.perf_counter() - started)
    copy_seconds = min(copy_times)
    with conn.cursor() as cur:
        cur.execute("drop table if exists public.bench_plain_copy")
    conn.commit()
    conn.close()

    ingest_rps = totals["rows_read"] / ingest_seconds
    copy_rps = totals["rows_read"] / copy_seconds
    ratio = ingest_rps / copy_rps
    metrics = {
        "events": n_events,
        "listings_files": len(written["listings"]),
        "interaction_files": len(written["interactions"]),
        "generation_seconds": gen_seconds,
        "generation_rows_per_s": n_events / gen_seconds,
        "ingestion_seconds": ingest_seconds,
        "ingestion_rows_per_s": ingest_rps,
        "plain_copy_seconds": copy_seconds,
        "plain_copy_rows_per_s": copy_rps,
        "rows_accepted": totals["accepted"],
        "rows_rejected": totals["rejected"],
        "rows_duplicate": totals["duplicates"],
    }
    targets = [
        target("ingestion rows/s", ingest_rps, ">= 200000"),
        target("ingestion / plain COPY throughput", ratio, ">= 0.5"),
    ]
    if scale == "s":
        targets.insert(0, target("generation seconds (scale s)", gen_seconds, "<= 120"))
    return write_result(
        "ingestion",
        scale,
        metrics,
        {"ingestion_vs_plain_copy": ratio},
        targets,
        notes="Plain COPY: same rows as CSV into an unindexed unlogged table, best of the runs.",
    )
