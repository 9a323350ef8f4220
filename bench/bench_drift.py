"""Detection quality of the monitoring checks, on synthetic data with injected drift.

Scenarios (``fs_platform/dev/detection.py`` does the work, with the real ingestion, real dbt
partitions, a real LightGBM model and the real Evidently checks):

- drift-free: ``DRIFT_FREE_DAYS`` consecutive partitions; every firing is a false alarm;
- one scenario per drift kind (category shift of 20% of the users, 15% price inflation of new
  listings, 20-point device-mix shift) and seed: detected when input drift fires within 1 day of the
  onset, feature / prediction drift within 7 days.

Besides the verdicts it records every column's worst drift-free value (the calibration margin of its
threshold) and, per drifted scenario, the values of the columns meant to catch it.

The targets: every scenario detected, at most 1 false alarm in 30 drift-free days per check.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.common import target, write_result
from bench.database import bench_database
from fs_platform.dev import detection
from fs_platform.dev.synthetic import DRIFT_KINDS
from fs_platform.monitoring.settings import drift_settings, rules

DRIFT_FREE_DAYS = 30
#: days of history before the first evaluated partition: 28-day reference + 28-day novelty lookback
WARM_UP_DAYS = 60
DRIFT_SEED, FREE_SEED = 202, 101
#: (check, drift) pairs that cannot fire by construction: the user features carry no device, and their
#: only price feature is a within-category price *percentile*, level-free by design: a 15% rise of new
#: listings' prices moves a user's price_sensitivity by well under its drift-free day-to-day noise
#: (recorded below as ``price_inflation.*.feature_drift.price_sensitivity.largest_in_window`` against
#: ``drift_free.feature_drift.price_sensitivity.worst``)
NOT_OBSERVABLE = {("feature_drift", "device_shift"), ("feature_drift", "price_inflation")}
#: per drift kind, the (check, column) values worth recording in the window ("largest" = furthest
#: towards drifting: the smallest p-value for a p-value test)
WATCHED = {
    "price_inflation": (
        ("input_drift", "new_listing_log_price_vs_category"),
        ("feature_drift", "price_sensitivity"),
    ),
    "category_shift": (
        ("input_drift", "engaged_category_novelty"),
        ("feature_drift", "category_affinity_top_share"),
    ),
    "device_shift": (("input_drift", "device_type"),),
}
#: check -> section of fs_platform.monitoring.settings
SETTINGS_KIND = {"input_drift": "input", "feature_drift": "features", "prediction_drift": "predictions"}
#: checks with a detection target (the issue's windows: input within 1 day, features within 7)
TARGETED = ("input_drift", "feature_drift")


def _first_firing(scenario: detection.Scenario, check: str) -> int | None:
    """Days from onset to the first firing partition inside the check's window (None: missed)."""
    assert scenario.onset is not None
    for day, fired in sorted(scenario.firings.get(check, {}).items()):
        if fired and detection._in_window(check, day, scenario):
            return (date.fromisoformat(day) - scenario.onset).days
    return None


def _worst_values(
    scenario: detection.Scenario, check: str, days: list[str] | None = None
) -> dict[str, float]:
    """Per column, the value nearest to drifting over ``days`` (default all): the largest distance, or
    the smallest p-value. On drift-free days this is the calibration margin of each threshold."""
    column_rules = rules(drift_settings(SETTINGS_KIND[check]))
    out: dict[str, float] = {}
    for day, columns in scenario.values.get(check, {}).items():
        if days is not None and day not in days:
            continue
        for column, value in columns.items():
            if value is None or column not in column_rules:
                continue
            pick = min if column_rules[column].is_p_value else max
            out[column] = pick(out.get(column, value), value)
    return out


def _metric(name: str, value: float, check: str, column: str) -> tuple[str, float]:
    """A p-value is recorded as -log10(p) (``<name>_neg_log10_p``): the results keep 4 decimals, which
    would print the p-value of a clear detection (1e-8) as 0."""
    if rules(drift_settings(SETTINGS_KIND[check]))[column].is_p_value:
        return f"{name}_neg_log10_p", -math.log10(max(value, 1e-300))
    return name, value


def _table(free: detection.Scenario, drifted: list[detection.Scenario]) -> str:
    """Markdown: one row per scenario, one column per check (first firing, in days after onset)."""
    header = "| scenario | " + " | ".join(detection.CHECKS) + " |"
    lines = [header, "| --- |" + " --- |" * len(detection.CHECKS)]
    for s in drifted:
        cells = []
        for check in detection.CHECKS:
            first = _first_firing(s, check)
            judged = "event day" if check == "input_drift" else "partition"
            cell = (
                f"detected ({judged} O+{first - (1 if check == 'input_drift' else 0)})" if first else "missed"
            )
            if (check, s.drift) in NOT_OBSERVABLE:
                cell += " (not observable)"
            cells.append(cell)
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    alarms = []
    for check in detection.CHECKS:
        fired, days = free.false_alarms(check)
        alarms.append(f"{fired} / {days} days")
    lines.append("| drift-free: false alarms | " + " | ".join(alarms) + " |")
    return "\n".join(lines)


def run(scale: str, runs: int, workdir: Path) -> Path:
    """``scale`` is recorded only: detection is measured on xs data (the CI size); ``runs`` = seeds per kind."""
    database_url = bench_database("drift")
    today = datetime.now(UTC).date()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    last = today - timedelta(days=1)
    partitions = [last - timedelta(days=DRIFT_FREE_DAYS - 1 - i) for i in range(DRIFT_FREE_DAYS)]
    first = partitions[0]
    free = detection.run_scenario(
        database_url,
        name="drift-free",
        drift=None,
        scale="xs",
        seed=FREE_SEED,
        end=last,
        days=(last - first).days + WARM_UP_DAYS,
        onset=None,
        partitions=partitions,
        workdir=workdir / "drift",
    )
    timings["drift_free_seconds"] = time.perf_counter() - started

    drifted: list[detection.Scenario] = []
    for run_no in range(max(1, runs)):
        for kind in DRIFT_KINDS:
            t0 = time.perf_counter()
            onset = today - timedelta(days=9)
            evaluated = [onset + timedelta(days=i) for i in range(1, 8)]
            drifted.append(
                detection.run_scenario(
                    database_url,
                    name=f"{kind} (seed {DRIFT_SEED + run_no})",
                    drift=kind,
                    scale="xs",
                    seed=DRIFT_SEED + run_no,
                    end=evaluated[-1],
                    days=(evaluated[-1] - evaluated[0]).days + WARM_UP_DAYS,
                    onset=onset,
                    partitions=evaluated,
                    workdir=workdir / "drift",
                )
            )
            timings[f"{kind}_{run_no}_seconds"] = time.perf_counter() - t0

    metrics: dict[str, float] = {"drift_free_days": DRIFT_FREE_DAYS, "drift_scenarios": len(drifted)}
    targets = []
    for check in detection.CHECKS:
        fired, days = free.false_alarms(check)
        per_30 = fired * 30 / days if days else 0.0
        metrics[f"{check}.false_alarms"] = fired
        metrics[f"{check}.false_alarms_per_30_days"] = per_30
        targets.append(target(f"{check}: false alarms per 30 drift-free days", per_30, "<= 1"))
        observable = [s for s in drifted if (check, s.drift) not in NOT_OBSERVABLE]
        hits = [s for s in drifted if s.detected(check)]
        metrics[f"{check}.detected_share"] = len(hits) / len(drifted)
        share = sum(1 for s in observable if s.detected(check)) / len(observable)
        metrics[f"{check}.detected_share_of_observable"] = share
        if check in TARGETED:
            targets.append(target(f"{check}: share of observable scenarios detected", share, ">= 1"))
    anywhere = sum(1 for s in drifted if any(s.detected(c) for c in detection.CHECKS)) / len(drifted)
    metrics["scenarios_detected_by_some_check"] = anywhere
    targets.append(target("scenarios detected by at least one check in its window", anywhere, ">= 1"))
    for s in drifted:
        for check in detection.CHECKS:
            first_day = _first_firing(s, check)
            key = f"{s.drift}.seed_{s.name.split('seed ')[-1].rstrip(')')}.{check}"
            metrics[f"{key}.first_firing_partition_offset"] = first_day if first_day else -1
    for check in detection.CHECKS:  # calibration margins: the worst drift-free value of every column
        for column, value in _worst_values(free, check).items():
            key, number = _metric(f"drift_free.{check}.{column}.worst", value, check, column)
            metrics[key] = number
    for s in drifted:  # what the detecting columns showed inside their windows
        seed = s.name.split("seed ")[-1].rstrip(")")
        for check in detection.CHECKS:
            window = [d for d in s.firings.get(check, {}) if detection._in_window(check, d, s)]
            for column, value in _worst_values(s, check, window).items():
                if (check, column) in WATCHED.get(s.drift or "", ()):
                    name = f"{s.drift}.seed_{seed}.{check}.{column}.largest_in_window"
                    key, number = _metric(name, value, check, column)
                    metrics[key] = number
    metrics.update({k: round(v, 1) for k, v in timings.items()})
    ratios = {"false_alarm_rate_input_drift": metrics["input_drift.false_alarms"] / DRIFT_FREE_DAYS}
    notes = (
        f"Scale-xs data (scale flag `{scale}` recorded only), {len(drifted)} drift scenarios from onset O "
        f"and {DRIFT_FREE_DAYS} drift-free partitions. Input drift on partition D judges event day D-1, "
        "so 'event day O+0' is the onset day itself. Not observable: the user features carry no device, and "
        "their only price feature is a level-free within-category percentile. "
        "Detection targets apply to input drift (within 1 day) and feature drift (within 7 days); "
        "prediction drift is measured with the 7-day window, without a target.\n\n" + _table(free, drifted)
    )
    return write_result("drift", "xs", metrics, ratios, targets, notes=notes)
