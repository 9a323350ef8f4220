"""Ingestion assets: files from the inbox into the ``raw`` schema, validated and idempotent."""

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import psycopg2.extensions

from fs_platform.defs.resources import PostgresResource
from fs_platform.infra.config import get_settings
from fs_platform.ingestion.data_span import record_first_event_day
from fs_platform.ingestion.inbox import archive, inbox_files
from fs_platform.ingestion.load import (
    IngestReport,
    ingest_interactions_file,
    ingest_listings_file,
    ingest_many,
)


class IngestConfig(dg.Config):
    """Which files to load: explicit paths, or (empty) everything waiting in the inbox."""

    files: list[str] = []
    archive_after_ingest: bool = True


def _ingest(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    postgres: PostgresResource,
    kind: str,
    ingest_file: Callable[[psycopg2.extensions.connection, Path], IngestReport],
) -> dg.MaterializeResult:
    settings = get_settings()
    paths = [Path(f) for f in config.files] if config.files else inbox_files(settings, kind)
    totals = Counter()
    reasons: Counter = Counter()
    per_file = []
    # a file that cannot be read raises: its transaction never commits and the run fails; files
    # that loaded are kept (re-delivering them later is a no-op: ingestion is idempotent)
    workers = 2 if kind == "interactions" else 1  # events are checked against listings: load those first
    for path, report in zip(
        paths, ingest_many(postgres.url(), paths, ingest_file, workers=workers), strict=True
    ):
        context.log.info(f"{kind}: {report.as_dict()}")
        totals.update({k: getattr(report, k) for k in ("rows_read", "accepted", "rejected", "duplicates")})
        reasons.update(report.reject_reasons)
        per_file.append(report.as_dict())
        if config.archive_after_ingest and path.parent == settings.inbox_dir / kind:
            archive(settings, kind, path)
    # conservation across the whole run, on top of the per-file assertion inside each transaction
    assert totals["rows_read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"], totals
    reject_rate = totals["rejected"] / totals["rows_read"] if totals["rows_read"] else 0.0
    extra: dict[str, dg.MetadataValue] = {}
    if kind == "interactions":
        with postgres.connect() as conn:
            first_day = record_first_event_day(conn, settings.home)
        if first_day is not None:  # the feature partitions start the day after (on the next reload)
            extra["first_event_day"] = dg.MetadataValue.text(first_day.isoformat())
    return dg.MaterializeResult(
        metadata={
            **extra,
            "files": dg.MetadataValue.int(len(paths)),
            "rows_read": dg.MetadataValue.int(totals["rows_read"]),
            "rows_accepted": dg.MetadataValue.int(totals["accepted"]),
            "rows_rejected": dg.MetadataValue.int(totals["rejected"]),
            "rows_duplicate": dg.MetadataValue.int(totals["duplicates"]),
            "reject_rate": dg.MetadataValue.float(reject_rate),
            "reject_reasons": dg.MetadataValue.json(dict(reasons.most_common(20))),
            "per_file": dg.MetadataValue.json(per_file[-50:]),
        }
    )


@dg.asset(
    key="raw_listings",
    group_name="ingestion",
    kinds={"postgres", "python"},
    description="Listings files (Parquet/CSV/JSONL): every attribute change kept in raw.listing_versions, "
    "raw.listings the current state; bad rows in raw.rejected_listings.",
)
def raw_listings(context: dg.AssetExecutionContext, config: IngestConfig, postgres: PostgresResource):
    return _ingest(context, config, postgres, "listings", ingest_listings_file)


@dg.asset(
    key="raw_user_interactions",
    deps=[raw_listings],  # events are checked against known listings
    group_name="ingestion",
    kinds={"postgres", "python"},
    description="Interaction files loaded into raw.user_interactions (idempotent by event_id); "
    "bad rows quarantined in raw.rejected_interactions with a reason.",
)
def raw_user_interactions(
    context: dg.AssetExecutionContext, config: IngestConfig, postgres: PostgresResource
):
    return _ingest(context, config, postgres, "interactions", ingest_interactions_file)
