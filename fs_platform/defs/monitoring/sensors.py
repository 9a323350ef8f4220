"""Dagster sensors that turn failures into alerts (``monitoring.alerts`` + log + webhook).

- ``run_failure_alert_sensor``: any failed run (job, partition, assets, error).
- ``monitoring_alert_sensor``: failed evaluations of the monitoring checks (drift and quality), read
  from the instance's event log after a storage-id cursor, so every evaluation alerts exactly once.
"""

import dagster as dg

from fs_platform.defs.monitoring.checks import monitoring_checks
from fs_platform.defs.resources import PostgresResource
from fs_platform.monitoring import alerts

#: names of the checks whose failures alert, read off the check definitions themselves
ALERTING_CHECKS: frozenset[str] = frozenset(
    spec.name for check in monitoring_checks for spec in check.check_specs
)
_BATCH = 200


def _text(metadata: dict, key: str) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    return str(getattr(value, "value", value))


def check_alert(record: dg.EventLogRecord) -> alerts.Alert | None:
    """The alert for one ASSET_CHECK_EVALUATION record, or None when it passed / is not ours."""
    event = record.event_log_entry.dagster_event
    evaluation = event.event_specific_data if event is not None else None
    if evaluation is None or evaluation.passed or evaluation.check_name not in ALERTING_CHECKS:
        return None
    meta = dict(evaluation.metadata)
    severity = evaluation.severity.value if evaluation.severity is not None else "ERROR"
    partition = getattr(evaluation, "partition", None)
    asset = evaluation.asset_key.to_user_string()
    # the check's own one-line verdict ("3 of 877 rows violate ...", "drift in device_type")
    detail = evaluation.description or _text(meta, "drifted_columns") or _text(meta, "summary")
    where = f"{asset}[{partition}]" if partition else asset
    return alerts.Alert(
        kind="drift" if evaluation.check_name.endswith("_drift") else "quality",
        severity=severity,
        message=f"check {evaluation.check_name} failed on {where}: {detail or 'see the check metadata'}",
        asset=asset,
        partition=partition,
        check_name=evaluation.check_name,
        report=_text(meta, "report"),
        run_id=record.event_log_entry.run_id,
        dedup_key=f"check-evaluation:{record.storage_id}",
        details={k: _text(meta, k) for k in meta if not k.startswith("drift/") and k != "columns"},
    )


def record_check_failures(conn, records: list[dg.EventLogRecord]) -> list[alerts.Alert]:
    """Record an alert for each failed monitoring check among ``records``; returns the new ones."""
    new = []
    for record in records:
        alert = check_alert(record)
        if alert is not None and alerts.record(conn, alert):
            new.append(alert)
    return new


@dg.sensor(
    name="monitoring_alert_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records an alert (table, log, webhook) for every failed drift or data-quality check.",
)
def monitoring_alert_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.SkipReason | dg.SensorResult:
    cursor = int(context.cursor) if context.cursor else None
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=cursor),
        limit=_BATCH,
        ascending=True,
    )
    if not records:
        return dg.SkipReason("no new check evaluations")
    with postgres.connect() as conn:
        new = record_check_failures(conn, records)
    for alert in new:
        context.log.warning(alert.message)
    recorded = len(new)
    context.update_cursor(str(records[-1].storage_id))
    return dg.SkipReason(f"{len(records)} check evaluation(s) read, {recorded} alert(s) recorded")


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records an alert (table, log, webhook) for every failed run.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, postgres: PostgresResource) -> None:
    run = context.dagster_run
    partition = run.tags.get("dagster/partition") or (
        f"{run.tags['dagster/asset_partition_range_start']}..{run.tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in run.tags
        else None
    )
    assets = sorted(k.to_user_string() for k in (run.asset_selection or []))
    error = context.failure_event.message or "run failed"
    alert = alerts.Alert(
        kind="run_failure",
        severity="ERROR",
        message=f"run {run.run_id[:8]} of {run.job_name} failed: {error}",
        asset=", ".join(assets) or None,
        partition=partition,
        run_id=run.run_id,
        dedup_key=f"run-failure:{run.run_id}",
        details={"job": run.job_name, "tags": dict(run.tags)},
    )
    with postgres.connect() as conn:
        alerts.record(conn, alert)
