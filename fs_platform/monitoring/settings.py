"""Drift methods and thresholds per check and column, with an optional JSON override file.

Why effect sizes and not p-values for most columns: a day holds thousands of events and the reference
window hundreds of thousands, so K-S / chi-squared p-values flag every harmless wobble. We use
Evidently's distance methods (normed Wasserstein for numbers, Jensen-Shannon for categories) whose
value does not grow with the sample size; the thresholds were calibrated on drift-free days (see
docs/monitoring.md and ``make bench``). The one exception is the price level of the day's new
listings: a few hundred values whose expected shift (15 % = 0.14 in log price) is a fifth of their
spread, which is the small-sample location question a t-test answers, with a p-value threshold set by
the false-alarm budget. ``FS_DRIFT_CONFIG`` may point at a JSON file overriding any of it, e.g.
``{"input": {"columns": {"device_type": {"threshold": 0.05}}}}``.

Sparse categories: a categorical column with many rare values (hundreds of categories over a day's
thousand events) has a large distance between two samples of the *same* distribution, because most
categories are seen once or never on one side. So a category is compared on its own only when it has
``min_category_count`` values in the current slice, or its reference share predicts that many; the
rest are pooled into one ``OTHER_CATEGORY`` bucket. A column whose current values average fewer than
``min_values_per_category`` per compared bucket is skipped with that reason rather than judged on noise.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: distance methods of Evidently: the column drifts when the value is >= the threshold
DISTANCE_METHODS = ("wasserstein", "jensenshannon", "psi", "hellinger", "kl_div", "energy_dist", "TVD")
#: the bucket rare categories are pooled into before a categorical column is compared
OTHER_CATEGORY = "_other_"
#: defaults of the sparse-category rules (each check's settings and each column may override them)
MIN_CATEGORY_COUNT = 10
MIN_VALUES_PER_CATEGORY = 20
#: two-sided tests of Evidently whose value is a p-value: the column drifts when it is < the threshold
#: (Evidently's ``mannw`` is left out: it is one-sided, it would never see a fall)
P_VALUE_METHODS = ("t_test", "ks", "chisquare")


@dataclass(frozen=True)
class ColumnRule:
    """How one column is compared: Evidently method, threshold, numeric or categorical, and the fewest
    current values it is judged on (below that it is skipped with a note, never judged on noise); for a
    categorical column, the sparse-category rules (see the module docstring)."""

    method: str
    threshold: float
    kind: str  # "num" | "cat"
    min_values: int = 1
    min_category_count: int = MIN_CATEGORY_COUNT
    min_values_per_category: int = MIN_VALUES_PER_CATEGORY

    @property
    def is_p_value(self) -> bool:
        return self.method in P_VALUE_METHODS

    def drifted(self, value: float | None) -> bool:
        if value is None:
            return False
        return value < self.threshold if self.is_p_value else value >= self.threshold

    @property
    def drifts_when(self) -> str:
        """The rule in words for reports and the UI, e.g. ``>= 0.3`` or ``p < 0.005``."""
        return f"p < {self.threshold:g}" if self.is_p_value else f">= {self.threshold:g}"


DEFAULTS: dict[str, dict[str, Any]] = {
    # the day's interactions against the 28 days before it
    "input": {
        "reference_days": 28,
        "min_current_rows": 200,
        "min_category_count": MIN_CATEGORY_COUNT,
        "min_values_per_category": MIN_VALUES_PER_CATEGORY,
        "columns": {
            "event_type": {"method": "jensenshannon", "threshold": 0.06, "kind": "cat"},
            "device_type": {"method": "jensenshannon", "threshold": 0.09, "kind": "cat"},
            "category_id": {"method": "jensenshannon", "threshold": 0.1, "kind": "cat"},
            "engaged_category_novelty": {"method": "jensenshannon", "threshold": 0.08, "kind": "cat"},
            "engaged_price": {"method": "wasserstein", "threshold": 0.3, "kind": "num"},
            "engaged_log_price_vs_category": {"method": "wasserstein", "threshold": 0.3, "kind": "num"},
            "events_per_active_user": {"method": "wasserstein", "threshold": 0.25, "kind": "num"},
            # price level of the day's new listings against the new listings of the 28 days before;
            # alpha = 0.005: nominal 0.15 false alarms per 30 days (docs/monitoring.md)
            "new_listing_log_price_vs_category": {
                "method": "t_test",
                "threshold": 0.005,
                "kind": "num",
                "min_values": 30,
            },
        },
    },
    # partition D's user features against partition D - reference_offset_days
    "features": {
        "reference_offset_days": 7,
        # days of events the reference partition needs before its features are comparable: three
        # half-lives of the 14-day decay (7/8 of the steady-state weight); fewer = warming up
        "warmup_days": 42,
        "min_current_rows": 100,
        "min_category_count": MIN_CATEGORY_COUNT,
        "min_values_per_category": MIN_VALUES_PER_CATEGORY,
        # the columns and their thresholds come from the view's yml (`drift` of each feature,
        # drift_data.feature_drift_columns); FS_DRIFT_CONFIG and run config may still override them
        "columns": {},
    },
    # the promoted model's scores on the latest day's examples against its own test days
    "predictions": {
        "current_days": 1,
        "min_current_rows": 200,
        "min_category_count": MIN_CATEGORY_COUNT,
        "min_values_per_category": MIN_VALUES_PER_CATEGORY,
        "columns": {
            "score": {"method": "wasserstein", "threshold": 0.1, "kind": "num"},
            "device_type": {"method": "jensenshannon", "threshold": 0.06, "kind": "cat"},
            "user_category_affinity": {"method": "wasserstein", "threshold": 0.15, "kind": "num"},
            "price_gap": {"method": "wasserstein", "threshold": 0.15, "kind": "num"},
        },
        # only these columns decide pass/fail; the others explain what moved
        "decisive": ["score"],
    },
}


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def drift_settings(
    kind: str, override: dict | None = None, columns: dict[str, dict] | None = None
) -> dict[str, Any]:
    """Defaults for check ``kind`` (with ``columns``: the rules declared in a view's yml), then
    FS_DRIFT_CONFIG's section, then ``override`` (run config)."""
    if kind not in DEFAULTS:
        raise ValueError(f"unknown drift check {kind!r}; expected one of {', '.join(DEFAULTS)}")
    merged = DEFAULTS[kind] if columns is None else _merge(DEFAULTS[kind], {"columns": columns})
    path = os.environ.get("FS_DRIFT_CONFIG")
    if path:
        try:
            from_file = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"FS_DRIFT_CONFIG={path}: cannot read a JSON object ({exc})") from exc
        if not isinstance(from_file, dict):
            raise ValueError(f"FS_DRIFT_CONFIG={path}: expected a JSON object")
        merged = _merge(merged, from_file.get(kind, {}))
    merged = _merge(merged, override or {})
    rules(merged)  # validate now: a typo fails the check with a clear message
    return merged


def _count(column: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"column {column}: {name} must be a positive integer, got {value!r}")
    return value


def rules(settings: dict[str, Any]) -> dict[str, ColumnRule]:
    """Column -> rule, validated (known methods, thresholds that make sense for them)."""
    out = {}
    for column, spec in settings["columns"].items():
        method, threshold, kind = spec.get("method"), spec.get("threshold"), spec.get("kind")
        min_values = spec.get("min_values", 1)
        # per column, else the check's, else the module default
        sparse = {
            name: _count(column, name, spec.get(name, settings.get(name, default)))
            for name, default in (
                ("min_category_count", MIN_CATEGORY_COUNT),
                ("min_values_per_category", MIN_VALUES_PER_CATEGORY),
            )
        }
        if method not in DISTANCE_METHODS + P_VALUE_METHODS:
            raise ValueError(
                f"column {column}: method {method!r} is neither a distance method "
                f"({', '.join(DISTANCE_METHODS)}) nor a two-sided p-value test ({', '.join(P_VALUE_METHODS)})"
            )
        if not isinstance(threshold, int | float) or threshold <= 0:
            raise ValueError(f"column {column}: threshold must be a positive number, got {threshold!r}")
        if method in P_VALUE_METHODS and threshold >= 1:
            raise ValueError(f"column {column}: {method} gives a p-value; its threshold must be below 1")
        if kind not in ("num", "cat"):
            raise ValueError(f"column {column}: kind must be 'num' or 'cat', got {kind!r}")
        if method == "t_test" and kind != "num":
            raise ValueError(f"column {column}: t_test compares means, the column must be numeric")
        out[column] = ColumnRule(
            method=method,
            threshold=float(threshold),
            kind=kind,
            min_values=_count(column, "min_values", min_values),
            **sparse,
        )
    warmup = settings.get("warmup_days", 0)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup_days must be a non-negative integer, got {warmup!r}")
    return out
