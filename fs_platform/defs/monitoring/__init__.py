"""Monitoring: drift and data-quality checks on the other groups' assets, and the alert sensors."""

import dagster as dg

from fs_platform.defs.monitoring.checks import monitoring_checks
from fs_platform.defs.monitoring.schedules import prediction_drift_job, prediction_drift_schedule
from fs_platform.defs.monitoring.sensors import monitoring_alert_sensor, run_failure_alert_sensor

defs = dg.Definitions(
    asset_checks=monitoring_checks,
    jobs=[prediction_drift_job],
    schedules=[prediction_drift_schedule],
    sensors=[monitoring_alert_sensor, run_failure_alert_sensor],
)
