"""Evidently drift reports: run, judge per column, save HTML + JSON under the reports folder.

One function per check (input, features, predictions). Each returns a ``DriftResult`` with the
per-column values the Dagster check puts in its metadata (so the UI shows which columns moved) and
the paths of the saved report; the CLI writes the same reports outside Dagster.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg2.extensions
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from fs_platform.infra.config import get_settings
from fs_platform.monitoring import drift_data
from fs_platform.monitoring.settings import ColumnRule, drift_settings, rules


class NotEnoughData(ValueError):
    """The current or the reference slice is too small to judge (no report, the check says why)."""


@dataclass
class DriftResult:
    """Outcome of one drift check on one date."""

    check: str  # "input_drift" | "feature_drift" | "prediction_drift"
    day: str  # the partition / day judged
    current: str  # what was compared ...
    reference: str  # ... against what
    current_rows: int
    reference_rows: int
    columns: dict[str, dict[str, Any]]  # column -> method, threshold, value, drifted
    decisive: list[str]
    html_path: str
    json_path: str
    summary_path: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def drifted_columns(self) -> list[str]:
        return [c for c, r in self.columns.items() if r["drifted"] and c in self.decisive]

    @property
    def drift_detected(self) -> bool:
        return bool(self.drifted_columns)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "drifted_columns": self.drifted_columns,
            "drift_detected": self.drift_detected,
        }


def reports_dir(day: date | str, root: Path | None = None) -> Path:
    folder = (root or get_settings().reports_dir) / str(day)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _rounded(value: float | None, rule: ColumnRule) -> float | None:
    """Distances to 6 decimals; p-values to 4 significant digits (a tiny p-value must not become 0)."""
    if value is None:
        return None
    return float(f"{value:.4g}") if rule.is_p_value else round(value, 6)


def compare(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    column_rules: dict[str, ColumnRule],
    out_base: Path,
) -> tuple[dict[str, dict[str, Any]], Path, Path]:
    """Run Evidently's DataDriftPreset with our method/threshold per column; save HTML and JSON."""
    unknown = sorted(set(column_rules) - set(current.columns))
    if unknown:
        raise ValueError(f"unknown drift column(s) {unknown}; this check has {sorted(current.columns)}")
    counts = {c: (int(current[c].notna().sum()), int(reference[c].notna().sum())) for c in column_rules}
    columns = [c for c, (cur, ref) in counts.items() if cur >= column_rules[c].min_values and ref >= 1]
    if not columns:
        raise NotEnoughData("no column has enough values in both the current and the reference data")
    definition = DataDefinition(
        numerical_columns=[c for c in columns if column_rules[c].kind == "num"],
        categorical_columns=[c for c in columns if column_rules[c].kind == "cat"],
    )
    preset = DataDriftPreset(
        columns=columns,
        per_column_method={c: column_rules[c].method for c in columns},
        per_column_threshold={c: column_rules[c].threshold for c in columns},
        drift_share=1.0 / (len(columns) + 1),  # the preset's verdict: "any column drifted"
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            values[config["column"]] = float(metric["value"])
    out_base.parent.mkdir(parents=True, exist_ok=True)
    html, js = out_base.with_suffix(".html"), out_base.with_suffix(".json")
    snapshot.save_html(str(html))
    snapshot.save_json(str(js))
    result = {}
    for column, rule in column_rules.items():
        value = values.get(column)
        cur, ref = counts[column]
        result[column] = {
            "method": rule.method,
            "threshold": rule.threshold,
            "drifts_when": rule.drifts_when,
            "value": _rounded(value, rule),
            "drifted": rule.drifted(value),
            "current_values": cur,
            "reference_values": ref,
            # why a column was not judged (no values on one side, or fewer than its min_values)
            "skipped": None
            if column in columns
            else f"{cur} current / {ref} reference values, judged from {rule.min_values} current values",
        }
    return result, html, js


def _judged(
    check: str,
    partition: date,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    settings: dict,
    root: Path | None,
    *,
    labels: tuple[str, str],
    decisive: list[str] | None = None,
    notes: list[str] | None = None,
    skip: tuple[str, ...] = (),
) -> DriftResult:
    """Compare by the settings' rules, write the reports and the summary JSON beside them.

    A column that was not judged gets a note, unless it is in ``skip`` (the caller explained it)."""
    column_rules = rules(settings)
    columns, html, js = compare(current, reference, column_rules, reports_dir(partition, root) / check)
    result = DriftResult(
        check=check,
        day=partition.isoformat(),
        current=labels[0],
        reference=labels[1],
        current_rows=len(current),
        reference_rows=len(reference),
        columns=columns,
        decisive=list(column_rules) if decisive is None else [c for c in decisive if c in column_rules],
        html_path=str(html),
        json_path=str(js),
        notes=(notes or [])
        + [f"{c} skipped: {r['skipped']}" for c, r in columns.items() if r["skipped"] and c not in skip],
    )
    summary = html.with_name(html.stem + "_summary.json")
    result.summary_path = str(summary)
    summary.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return result


def _require(frame: pd.DataFrame, minimum: int, what: str) -> None:
    if len(frame) < minimum:
        raise NotEnoughData(f"{what}: {len(frame)} rows, fewer than the {minimum} needed to judge drift")


def input_drift(
    conn: psycopg2.extensions.connection,
    partition: date,
    *,
    override: dict | None = None,
    root: Path | None = None,
) -> DriftResult:
    """Partition D (cutoff D 00:00) judges the interactions of its last day D - 1 against the
    ``reference_days`` days before that."""
    settings = drift_settings("input", override)
    day = partition - timedelta(days=1)
    window = drift_data.input_window(day, int(settings["reference_days"]))
    first = drift_data.first_event_day(conn)
    lookback = timedelta(days=drift_data.NOVELTY_LOOKBACK_DAYS)
    novelty = first is not None and first <= window.reference[0] - lookback
    # both sides price new listings against the same category medians: the catalogue as of `day`
    current = drift_data.interactions_frame(conn, *window.current, novelty=novelty, catalogue_at=day)
    reference = drift_data.interactions_frame(conn, *window.reference, novelty=novelty, catalogue_at=day)
    _require(current, int(settings["min_current_rows"]), f"interactions of {day}")
    _require(reference, int(settings["min_current_rows"]), f"interactions of {window.reference}")
    notes = (
        []
        if novelty
        else [
            "engaged_category_novelty skipped: the events do not reach "
            f"{drift_data.NOVELTY_LOOKBACK_DAYS} days before the reference window"
        ]
    )
    notes += _price_level_note(current, reference, NEW_LISTING_PRICE)
    return _judged(
        "input_drift",
        partition,
        current,
        reference,
        settings,
        root,
        labels=(
            f"interactions of {day}",
            f"interactions of {window.reference[0]} .. {window.reference[1] - timedelta(days=1)}",
        ),
        notes=notes,
        skip=() if novelty else ("engaged_category_novelty",),
    )


#: the new-supply price column of input drift (ln of price / category median, per new listing)
NEW_LISTING_PRICE = "new_listing_log_price_vs_category"


def _price_level_note(current: pd.DataFrame, reference: pd.DataFrame, column: str) -> list[str]:
    """The price-level move in words an operator reads: mean log ratios as a percentage."""
    if column not in current or column not in reference:
        return []
    cur, ref = current[column].dropna(), reference[column].dropna()
    if cur.empty or ref.empty:
        return []
    move = math.exp(cur.mean() - ref.mean()) - 1.0
    return [
        f"new listings priced {move:+.1%} against the reference's new listings "
        f"(same-category medians; {len(cur)} vs {len(ref)} listings)"
    ]


def default_feature_reference(partition: date, settings: dict) -> date:
    """The same weekday a week earlier (weekly cycles cancel out)."""
    return partition - timedelta(days=int(settings["reference_offset_days"]))


def feature_drift(
    conn: psycopg2.extensions.connection,
    partition: date,
    *,
    reference_partition: date | None = None,
    override: dict | None = None,
    root: Path | None = None,
) -> DriftResult:
    """user_features of ``partition`` against ``reference_partition`` (default: a week earlier)."""
    settings = drift_settings("features", override)
    reference_day = reference_partition or default_feature_reference(partition, settings)
    current = drift_data.features_frame(conn, partition)
    reference = drift_data.features_frame(conn, reference_day)
    _require(current, int(settings["min_current_rows"]), f"user_features partition {partition}")
    _require(
        reference, int(settings["min_current_rows"]), f"user_features reference partition {reference_day}"
    )
    return _judged(
        "feature_drift",
        partition,
        current,
        reference,
        settings,
        root,
        labels=(f"user_features partition {partition}", f"user_features partition {reference_day}"),
    )


def prediction_drift(
    conn: psycopg2.extensions.connection,
    partition: date,
    *,
    model: Any | None = None,
    override: dict | None = None,
    root: Path | None = None,
) -> DriftResult:
    """Scores of the promoted model on the examples of the days before ``partition`` against the
    scores on its own test days (the distribution it was validated on)."""
    from fs_platform.monitoring import predictions

    settings = drift_settings("predictions", override)
    days = int(settings["current_days"])
    loaded = predictions.load_model(model)
    reference = predictions.reference_scores(loaded)
    first = partition - timedelta(days=days)
    current = predictions.current_scores(conn, loaded, first, partition - timedelta(days=1))
    _require(
        current, int(settings["min_current_rows"]), f"examples of {first} .. {partition - timedelta(days=1)}"
    )
    _require(reference, int(settings["min_current_rows"]), f"test examples of model {loaded.version}")
    test_range = loaded.metadata.get("training_window", {}).get("test", {})
    return _judged(
        "prediction_drift",
        partition,
        current,
        reference,
        settings,
        root,
        labels=(
            f"model {loaded.version} on examples of {first} .. {partition - timedelta(days=1)}",
            f"model {loaded.version} on its test days {test_range.get('first_day', '?')} .. "
            f"{test_range.get('last_day', '?')}",
        ),
        decisive=settings.get("decisive"),
    )
