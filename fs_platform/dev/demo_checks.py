"""The monitoring part of ``make demo``: run the partition's checks in Dagster, record the alerts,
print where the reports are (the demo data carries a device-mix shift on its last day)."""

from __future__ import annotations

import contextlib
from datetime import date

import dagster as dg

from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.defs.monitoring.checks import (
    USER_FEATURES,
    completeness_check,
    input_drift_check,
    null_range_checks,
)
from fs_platform.defs.monitoring.sensors import record_check_failures
from fs_platform.infra.config import get_settings
from fs_platform.infra.runtime import pg_connect

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo_checks(
    instance: dg.DagsterInstance, resources: dict, partition: date, database_url: str
) -> None:
    """Re-materialize ``user_features`` of ``partition`` with its monitoring checks (as the daily job does)."""
    checks = [input_drift_check, completeness_check, *null_range_checks]
    log_path = get_settings().home / "logs" / "monitoring-dbt.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log, contextlib.redirect_stdout(log):  # dbt's console output
        result = dg.materialize(
            [feature_dbt_assets, *checks],
            selection=dg.AssetSelection.assets(USER_FEATURES),
            partition_key=partition.isoformat(),
            resources=resources,
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
        )
    ours = {c.check_specs_by_output_name[o].name for c in checks for o in c.check_specs_by_output_name}
    print(f"\nmonitoring checks of user_features[{partition}] (run {result.run_id[:8]}):")
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name not in ours:
            continue
        meta = evaluation.metadata
        verdict = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
        print(f"  {evaluation.check_name:22} {verdict:16} {evaluation.description or ''}")
        if "report" in meta:
            print(f"  {'':22} report: {meta['report'].value}")
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
        limit=100,
        ascending=False,
    )
    conn = pg_connect(database_url)
    try:
        new = record_check_failures(conn, [r for r in records if r.event_log_entry.run_id == result.run_id])
    finally:
        conn.close()
    for alert in new:
        print(f"  alert recorded (monitoring.alerts, logs/alerts.jsonl): {alert.message}")
