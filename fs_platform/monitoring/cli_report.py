"""``fs-platform drift report``: the checks' reports written outside Dagster."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from fs_platform.infra.runtime import ensure_services, pg_connect
from fs_platform.monitoring import drift_reports
from fs_platform.monitoring.drift_reports import DriftResult, NotEnoughData


def write_reports(
    partition: date, checks: list[str], *, reference: date | None = None, root: Path | None = None
) -> tuple[list[DriftResult], dict[str, str]]:
    """(written results, check -> why it was not written) for the requested checks of ``partition``."""
    conn = pg_connect(ensure_services().database_url)
    results: list[DriftResult] = []
    failures: dict[str, str] = {}
    try:
        for check in checks:
            try:
                if check == "input":
                    results.append(drift_reports.input_drift(conn, partition, root=root))
                elif check == "features":
                    results.append(
                        drift_reports.feature_drift(conn, partition, reference_partition=reference, root=root)
                    )
                elif check == "predictions":
                    results.append(drift_reports.prediction_drift(conn, partition, root=root))
                else:
                    raise ValueError(f"unknown check {check!r}")
            except (NotEnoughData, FileNotFoundError) as exc:
                failures[check] = str(exc)
    finally:
        conn.close()
    return results, failures
