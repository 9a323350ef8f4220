"""Monitoring as Dagster asset checks: drift (Evidently) and data quality, per daily partition.

The checks on ``user_features`` are partitioned like the dbt asset (``daily_partitions``), so each
day's result is stored against its partition and the daily feature job runs them right after dbt
(``AssetSelection.assets`` includes the checks of the selected assets). Prediction drift is a check on
``ctr_model`` run by its own daily job; the ingestion reject rate is a check on ``raw_user_interactions``
that runs with every ingestion. Every drift check links its saved HTML report from its metadata.
"""

import json
import warnings
from datetime import UTC, date, datetime

import dagster as dg

from fs_platform.defs.features.partitions import daily_partitions
from fs_platform.defs.resources import PostgresResource
from fs_platform.features.registry import FeatureView, load_registry
from fs_platform.monitoring import drift_data, drift_reports, quality
from fs_platform.monitoring.drift_reports import DriftResult, NotEnoughData

# partitioned asset checks are a preview feature of Dagster 1.13 (docs/decisions.md, Monitoring)
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")

USER_FEATURES = dg.AssetKey("user_features")
CTR_MODEL = dg.AssetKey("ctr_model")
RAW_INTERACTIONS = dg.AssetKey("raw_user_interactions")

#: every check of this module (the alert sensor reports their failures)
MONITORING_CHECKS = {
    "input_drift",
    "feature_drift",
    "prediction_drift",
    "completeness",
    "null_range_violations",
    "rejected_row_rate",
}


class DriftCheckConfig(dg.Config):
    """Run-time overrides; the defaults live in fs_platform/monitoring/settings.py (and FS_DRIFT_CONFIG)."""

    #: JSON merged over the check's settings, e.g. '{"columns": {"device_type": {"threshold": 0.05}}}'
    settings_json: str = "{}"


class FeatureDriftConfig(DriftCheckConfig):
    #: reference partition YYYY-MM-DD; empty: the same weekday a week earlier
    reference_partition: str = ""


class PredictionDriftConfig(DriftCheckConfig):
    #: partition whose last day's examples are scored; empty: today (UTC)
    partition: str = ""


def _override(config: DriftCheckConfig) -> dict:
    try:
        value = json.loads(config.settings_json or "{}")
    except ValueError as exc:
        raise ValueError(f"settings_json is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("settings_json must be a JSON object")
    return value


def drift_metadata(result: DriftResult) -> dict[str, dg.MetadataValue]:
    """Report links, the verdict and one row per column (the UI shows which columns moved)."""
    meta: dict[str, dg.MetadataValue] = {
        "report": dg.MetadataValue.path(result.html_path),
        "report_url": dg.MetadataValue.url(f"file://{result.html_path}"),
        "report_json": dg.MetadataValue.path(result.json_path),
        "drifted_columns": dg.MetadataValue.text(", ".join(result.drifted_columns) or "(none)"),
        "current": dg.MetadataValue.text(f"{result.current} ({result.current_rows:,} rows)"),
        "reference": dg.MetadataValue.text(f"{result.reference} ({result.reference_rows:,} rows)"),
        "columns": dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "column": name,
                        "method": r["method"],
                        # a skipped column has no value: None, since NaN breaks the UI's table
                        "value": None if r["value"] is None else float(r["value"]),
                        "threshold": float(r["threshold"]),
                        # ">= 0.3" for a distance, "p < 0.005" for a p-value test
                        "drifts_when": str(r.get("drifts_when", "")),
                        "current_values": int(r.get("current_values", 0)),
                        "drifted": bool(r["drifted"]),
                        "decides": name in result.decisive,
                        # why the column has no value (too few values, sparse categories, ...)
                        "skipped": str(r.get("skipped") or ""),
                    }
                )
                for name, r in result.columns.items()
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("column", "string"),
                    dg.TableColumn("method", "string"),
                    dg.TableColumn("value", "float"),
                    dg.TableColumn("threshold", "float"),
                    dg.TableColumn("drifts_when", "string"),
                    dg.TableColumn("current_values", "int"),
                    dg.TableColumn("drifted", "bool"),
                    dg.TableColumn("decides", "bool"),
                    dg.TableColumn("skipped", "string"),
                ]
            ),
        ),
    }
    for name, r in result.columns.items():  # plotted over partitions by the UI
        if r["value"] is not None:
            meta[f"drift/{name}"] = dg.MetadataValue.float(float(r["value"]))
    if result.notes:
        meta["notes"] = dg.MetadataValue.text("; ".join(result.notes))
    if result.warmup:
        meta["warmup"] = dg.MetadataValue.text(result.warmup)
    return meta


def _drift_result(result: DriftResult) -> dg.AssetCheckResult:
    verdict = (
        f"drift in {', '.join(result.drifted_columns)}"
        if result.drift_detected
        else "no column above its threshold"
    )
    return dg.AssetCheckResult(
        passed=not result.drift_detected,
        severity=dg.AssetCheckSeverity.WARN,
        # a verdict on a short history says so next to it, not only in the metadata
        description=f"{verdict} ({result.warmup})" if result.warmup else verdict,
        metadata=drift_metadata(result),
    )


def _skipped(reason: str) -> dg.AssetCheckResult:
    """Too little data to judge (the first days of a pipeline): pass, and say so."""
    metadata = {"status": dg.MetadataValue.text(f"skipped: {reason}")}
    if reason.startswith("warming up"):
        metadata["warmup"] = dg.MetadataValue.text(reason)
    return dg.AssetCheckResult(
        passed=True,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"skipped: {reason}",
        metadata=metadata,
    )


def _partition(context: dg.AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@dg.asset_check(
    asset=USER_FEATURES,
    name="input_drift",
    partitions_def=daily_partitions,
    description="The partition's last day of interactions (event-type, device and category mix, category "
    "novelty, engaged prices, events per active user) against the 28 days before (Evidently; WARN).",
)
def input_drift_check(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, config: DriftCheckConfig
) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        try:
            result = drift_reports.input_drift(conn, _partition(context), override=_override(config))
        except NotEnoughData as exc:
            return _skipped(str(exc))
    context.log.info(f"input drift report: {result.html_path}")
    return _drift_result(result)


def _feature_drift_check(view: FeatureView) -> dg.AssetChecksDefinition:
    """``feature_drift`` on the view's online mart (else its model), on the columns its yml declares."""
    columns = ", ".join(drift_data.feature_drift_columns(view))

    @dg.asset_check(
        asset=dg.AssetKey(view.online_model or view.model),
        name="feature_drift",
        partitions_def=daily_partitions,
        description=f"Feature view {view.name} of the partition against a reference partition, by "
        f"default a week earlier (WARN), on the columns its yml declares drift for: {columns}.",
    )
    def feature_drift_check(
        context: dg.AssetCheckExecutionContext, postgres: PostgresResource, config: FeatureDriftConfig
    ) -> dg.AssetCheckResult:
        reference = date.fromisoformat(config.reference_partition) if config.reference_partition else None
        with postgres.connect() as conn:
            try:
                result = drift_reports.feature_drift(
                    conn,
                    _partition(context),
                    view=view,
                    reference_partition=reference,
                    override=_override(config),
                )
            except NotEnoughData as exc:
                return _skipped(str(exc))
        context.log.info(f"feature drift report: {result.html_path}")
        return _drift_result(result)

    return feature_drift_check


#: one feature drift check per view whose yml declares drift on any feature
feature_drift_checks = [_feature_drift_check(view) for view in drift_data.drift_views(load_registry())]


@dg.asset_check(
    asset=CTR_MODEL,
    name="prediction_drift",
    description="Scores of the promoted model on the latest day's point-in-time examples against its "
    "scores on its own test days (WARN).",
)
def prediction_drift_check(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, config: PredictionDriftConfig
) -> dg.AssetCheckResult:
    partition = date.fromisoformat(config.partition) if config.partition else datetime.now(UTC).date()
    with postgres.connect() as conn:
        try:
            result = drift_reports.prediction_drift(conn, partition, override=_override(config))
        except (NotEnoughData, FileNotFoundError) as exc:
            return _skipped(str(exc))
    context.log.info(f"prediction drift report: {result.html_path}")
    return _drift_result(result)


@dg.asset_check(
    asset=USER_FEATURES,
    name="completeness",
    partitions_def=daily_partitions,
    description="Share of users with a weighted event in the partition's 90-day window that have a "
    f"features row; ERROR below {quality.COMPLETENESS_MIN:.0%}.",
)
def completeness_check(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        measured = quality.completeness(conn, _partition(context))
    return dg.AssetCheckResult(
        passed=measured.share >= quality.COMPLETENESS_MIN,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{measured.share:.2%} of {measured.active_users:,} window-active users have features",
        metadata={
            "completeness": dg.MetadataValue.float(measured.share),
            "active_users": dg.MetadataValue.int(measured.active_users),
            "users_with_features": dg.MetadataValue.int(measured.with_features),
            "snapshot_rows": dg.MetadataValue.int(measured.snapshot_rows),
            "minimum": dg.MetadataValue.float(quality.COMPLETENESS_MIN),
        },
    )


def _null_range_check(view: FeatureView) -> dg.AssetChecksDefinition:
    """The declared rules of ``view`` (the registry: null policy, range, allowed values, a map's sum)
    as a check of the asset that serves the view (its online mart, else its model)."""

    @dg.asset_check(
        asset=dg.AssetKey(view.online_model or view.model),
        name="null_range_violations",
        partitions_def=daily_partitions,
        description=f"Rows of the partition of feature view {view.name} breaking a rule declared in its yml "
        f"({'; '.join(f'{f.name}: {f.rule}' for f in view.features)}); WARN on any.",
    )
    def null_range_check(
        context: dg.AssetCheckExecutionContext, postgres: PostgresResource
    ) -> dg.AssetCheckResult:
        with postgres.connect() as conn:
            measured = quality.range_violations(conn, _partition(context), view)
        # counts always with their unit ("0 of 877 rows violate ..."): a bare row count reads as violations
        return dg.AssetCheckResult(
            passed=measured.rows > 0 and not measured.violating_rows,
            severity=dg.AssetCheckSeverity.WARN,
            description=measured.summary,
            metadata={
                "summary": dg.MetadataValue.text(measured.summary),
                "feature_view": dg.MetadataValue.text(view.name),
                "snapshot_rows": dg.MetadataValue.int(measured.rows),
                "violating_rows": dg.MetadataValue.int(measured.violating_rows),
                **{
                    f"violating_rows/{name}": dg.MetadataValue.int(n) for name, n in measured.per_rule.items()
                },
            },
        )

    return null_range_check


#: one rule check per feature view of the registry
null_range_checks = [_null_range_check(view) for view in load_registry().views.values()]


@dg.asset_check(
    asset=RAW_INTERACTIONS,
    name="rejected_row_rate",
    description=f"Rejected / read rows of the interaction deliveries of the last 24 h; WARN above "
    f"{quality.REJECTED_RATE_MAX:.1%}.",
)
def rejected_rate_check(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        measured = quality.rejected_rate(conn)
    return dg.AssetCheckResult(
        passed=measured.rate <= quality.REJECTED_RATE_MAX,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{measured.rejected:,} of {measured.rows_read:,} rows rejected ({measured.rate:.3%}) "
        f"in {measured.files} files",
        metadata={
            "rejected_rate": dg.MetadataValue.float(measured.rate),
            "rows_read": dg.MetadataValue.int(measured.rows_read),
            "rows_rejected": dg.MetadataValue.int(measured.rejected),
            "files": dg.MetadataValue.int(measured.files),
            "maximum": dg.MetadataValue.float(quality.REJECTED_RATE_MAX),
            "deliveries": dg.MetadataValue.text(measured.deliveries),
        },
    )


monitoring_checks = [
    input_drift_check,
    *feature_drift_checks,
    prediction_drift_check,
    completeness_check,
    *null_range_checks,
    rejected_rate_check,
]
