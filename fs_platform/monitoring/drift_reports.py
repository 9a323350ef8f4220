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

from fs_platform.features.registry import FeatureView, load_registry
from fs_platform.infra.config import get_settings
from fs_platform.monitoring import drift_data
from fs_platform.monitoring.settings import OTHER_CATEGORY, ColumnRule, drift_settings, rules


class NotEnoughData(ValueError):
    """The current or the reference slice is too small to judge (no report, the check says why)."""


class WarmingUp(NotEnoughData):
    """The event history is shorter than the reference needs: a difference would be the history
    filling up, not drift (the message says ``warming up: N of M days of history ...``)."""


def day_range(first: date, last: date) -> str:
    """``first..last`` (both included) as ISO dates, e.g. ``2026-11-02..2026-11-08``."""
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"


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
    #: "warming up: N of M days of history ..." when the reference is shorter than configured
    warmup: str | None = None

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
        raise ValueError(
            f"unknown drift column(s) {', '.join(unknown)}; this check has {', '.join(sorted(current.columns))}"
        )
    counts = {c: (int(current[c].notna().sum()), int(reference[c].notna().sum())) for c in column_rules}
    current, reference = current.copy(), reference.copy()
    pooling: dict[str, Pooling] = {}
    for column, rule in column_rules.items():
        if rule.kind == "cat" and all(counts[column]):
            current[column], reference[column], pooling[column] = pool_rare_categories(
                current[column], reference[column], rule.min_category_count
            )
    reasons = {c: _skip_reason(counts[c], column_rules[c], pooling.get(c)) for c in column_rules}
    columns = [c for c in column_rules if reasons[c] is None]
    if not columns:
        raise NotEnoughData(
            "no column could be judged: " + "; ".join(f"{c}: {reasons[c]}" for c in column_rules)
        )
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
            # why a column was not judged (too few values, or too few per category)
            "skipped": reasons[column],
        }
        if column in pooling:
            result[column].update(asdict(pooling[column]))
    return result, html, js


@dataclass(frozen=True)
class Pooling:
    """What the sparse-category rule did to one categorical column."""

    categories: int  # distinct values on either side
    compared_categories: int  # kept as themselves
    pooled_categories: int  # merged into OTHER_CATEGORY

    @property
    def buckets(self) -> int:
        return self.compared_categories + (1 if self.pooled_categories else 0)


def pool_rare_categories(
    current: pd.Series, reference: pd.Series, min_count: int
) -> tuple[pd.Series, pd.Series, Pooling]:
    """Pool the categories too rare to compare into ``OTHER_CATEGORY`` on both sides.

    A category is kept when it has ``min_count`` current values or its reference count, scaled to the
    current sample size, predicts that many: a distance between samples is dominated by categories
    seen a handful of times, which differ between any two samples of the same distribution."""
    cur_counts, ref_counts = current.value_counts(), reference.value_counts()
    scale = cur_counts.sum() / max(int(ref_counts.sum()), 1)
    keys = cur_counts.index.union(ref_counts.index)
    cur_counts, ref_counts = cur_counts.reindex(keys, fill_value=0), ref_counts.reindex(keys, fill_value=0)
    kept = keys[(cur_counts >= min_count) | (ref_counts * scale >= min_count)]
    pooling = Pooling(len(keys), len(kept), len(keys) - len(kept))
    if not pooling.pooled_categories:
        return current, reference, pooling

    def pooled(values: pd.Series) -> pd.Series:
        out = values.where(values.isna() | values.isin(kept), OTHER_CATEGORY)
        return out.map(lambda v: v if pd.isna(v) else str(v)).astype(object)

    return pooled(current), pooled(reference), pooling


def _skip_reason(counts: tuple[int, int], rule: ColumnRule, pooling: Pooling | None) -> str | None:
    """Why a column is not judged, with the real counts; None when it is judged."""
    cur, ref = counts
    if cur == 0 and ref == 0:
        return "no values in either the current or the reference data"
    if cur < rule.min_values:
        needed = f"at least {rule.min_values:,}" if rule.min_values > 1 else "at least one"
        return f"{cur:,} current values ({ref:,} reference), needs {needed} current values"
    if ref == 0:
        return f"no reference values ({cur:,} current)"
    if pooling is not None:
        if pooling.compared_categories == 0:
            return (
                f"sparse: none of its {pooling.categories:,} categories has {rule.min_category_count:,} "
                f"values ({cur:,} current values)"
            )
        per_bucket = cur / pooling.buckets
        if per_bucket < rule.min_values_per_category:
            return (
                f"sparse: {cur:,} current values over {pooling.buckets:,} compared categories "
                f"({per_bucket:.1f} per category), needs {rule.min_values_per_category:,} per category"
            )
    return None


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
    skip: dict[str, str] | None = None,
    warmup: str | None = None,
) -> DriftResult:
    """Compare by the settings' rules, write the reports and the summary JSON beside them.

    A column that was not judged gets a note with the reason; ``skip`` gives the caller's reason for
    columns it left empty on purpose (it replaces the generic one)."""
    column_rules = rules(settings)
    columns, html, js = compare(current, reference, column_rules, reports_dir(partition, root) / check)
    for column, reason in (skip or {}).items():
        if column in columns and columns[column]["skipped"]:
            columns[column]["skipped"] = reason
    pooled = [
        f"{c}: {r['pooled_categories']:,} of {r['categories']:,} categories with fewer than "
        f"{column_rules[c].min_category_count} values pooled into {OTHER_CATEGORY}"
        for c, r in columns.items()
        if r.get("pooled_categories") and not r["skipped"]
    ]
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
        + [f"{c} skipped: {r['skipped']}" for c, r in columns.items() if r["skipped"]]
        + pooled,
        warmup=warmup,
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
    reference_days = int(settings["reference_days"])
    window = drift_data.input_window(day, reference_days)
    first = drift_data.first_event_day(conn)
    # a short reference still compares event mixes fairly, so the check judges and says it warms up
    warmup = _warm_up(
        first, day, reference_days, f"before {day.isoformat()} for its {reference_days}-day reference"
    )
    lookback = timedelta(days=drift_data.NOVELTY_LOOKBACK_DAYS)
    novelty = first is not None and first <= window.reference[0] - lookback
    # both sides price new listings against the same category medians: the catalogue as of `day`
    current = drift_data.interactions_frame(conn, *window.current, novelty=novelty, catalogue_at=day)
    reference = drift_data.interactions_frame(conn, *window.reference, novelty=novelty, catalogue_at=day)
    reference_days_text = day_range(window.reference[0], window.reference[1] - timedelta(days=1))
    _require(current, int(settings["min_current_rows"]), f"interactions of {day.isoformat()}")
    _require(reference, int(settings["min_current_rows"]), f"interactions of {reference_days_text}")
    skip = (
        {}
        if novelty
        else {
            "engaged_category_novelty": "the events do not reach "
            f"{drift_data.NOVELTY_LOOKBACK_DAYS} days before the reference window"
        }
    )
    return _judged(
        "input_drift",
        partition,
        current,
        reference,
        settings,
        root,
        labels=(f"interactions of {day.isoformat()}", f"interactions of {reference_days_text}"),
        notes=_price_level_note(current, reference, NEW_LISTING_PRICE),
        skip=skip,
        warmup=warmup,
    )


def _warm_up(first: date | None, until: date, needed: int, what: str) -> str | None:
    """``warming up: N of M days of history ...`` when the events start fewer than ``needed`` days
    before ``until``, else None."""
    if first is None:
        raise NotEnoughData("no interactions loaded yet")
    history = max(0, (until - first).days)
    if history >= needed:
        return None
    return f"warming up: {history} of {needed} days of history {what} (events start {first.isoformat()})"


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
    view: FeatureView | None = None,
    reference_partition: date | None = None,
    override: dict | None = None,
    root: Path | None = None,
) -> DriftResult:
    """A feature view's partition against ``reference_partition`` (default: a week earlier), on the
    columns its yml declares drift for; ``view`` defaults to the one view that declares any."""
    if view is None:
        declared = drift_data.drift_views(load_registry())
        if len(declared) != 1:
            raise ValueError(f"name the feature view: {[v.name for v in declared]} declare drift")
        view = declared[0]
    settings = drift_settings("features", override, drift_data.feature_drift_columns(view))
    reference_day = reference_partition or default_feature_reference(partition, settings)
    # the reference snapshot must hold enough history that the week between the two is not the
    # windows filling up (activity, categories per user and top shares all grow while they do)
    warmup = _warm_up(
        drift_data.first_event_day(conn),
        reference_day,
        int(settings["warmup_days"]),
        f"before the reference partition {reference_day.isoformat()}",
    )
    if warmup:
        raise WarmingUp(warmup)
    current = drift_data.features_frame(conn, view, partition)
    reference = drift_data.features_frame(conn, view, reference_day)
    _require(current, int(settings["min_current_rows"]), f"{view.name} partition {partition.isoformat()}")
    _require(
        reference,
        int(settings["min_current_rows"]),
        f"{view.name} reference partition {reference_day.isoformat()}",
    )
    return _judged(
        "feature_drift",
        partition,
        current,
        reference,
        settings,
        root,
        labels=(
            f"{view.name} partition {partition.isoformat()}",
            f"{view.name} partition {reference_day.isoformat()}",
        ),
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
    first, last = partition - timedelta(days=days), partition - timedelta(days=1)
    current = predictions.current_scores(conn, loaded, first, last)
    _require(current, int(settings["min_current_rows"]), f"examples of {day_range(first, last)}")
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
            f"model {loaded.version} on examples of {day_range(first, last)}",
            f"model {loaded.version} on its test days {test_range.get('first_day', '?')}.."
            f"{test_range.get('last_day', '?')}",
        ),
        decisive=settings.get("decisive"),
    )
