"""On-demand features: vectorised functions of other features, computed where they are used.

Historical retrieval and serving call the same function on a frame whose columns are the input
feature references (``view:feature``), one row per entity row, so a cross feature is written
once and cannot drift between training and serving. A user without a snapshot has null inputs
and gets a null cross feature; a snapshot that lacks the listing's category or city gives 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class OnDemandFeature:
    name: str
    inputs: tuple[str, ...]
    type: str
    description: str
    function: Callable[[pd.DataFrame], pd.Series]
    owner: str = "team:feature-platform"

    def compute(self, inputs: pd.DataFrame) -> pd.Series:
        """The feature for every row of ``inputs`` (columns: the input references)."""
        missing = [ref for ref in self.inputs if ref not in inputs.columns]
        if missing:
            raise KeyError(f"on-demand feature {self.name} needs {missing}")
        out = self.function(inputs[list(self.inputs)])
        return pd.Series(np.asarray(out, dtype=np.float64), index=inputs.index, name=self.name)


ON_DEMAND_FEATURES: dict[str, OnDemandFeature] = {}


def on_demand_feature(name: str, inputs: tuple[str, ...], type: str, description: str):  # noqa: A002
    """Register a vectorised function as the on-demand feature ``on_demand:<name>``."""

    def register(function: Callable[[pd.DataFrame], pd.Series]) -> Callable[[pd.DataFrame], pd.Series]:
        if name in ON_DEMAND_FEATURES:
            raise ValueError(f"on-demand feature {name!r} is registered twice")
        ON_DEMAND_FEATURES[name] = OnDemandFeature(name, inputs, type, description, function)
        return function

    return register


def _share_of(shares: pd.Series, keys: pd.Series) -> list[float]:
    """shares[i].get(keys[i], 0) per row; null when the map (the user's snapshot) is null."""
    return [
        math.nan if not isinstance(m, dict) else float(m.get(k, 0.0)) if k is not None else 0.0
        for m, k in zip(shares, keys, strict=True)
    ]


@on_demand_feature(
    "user_category_affinity",
    ("user_features:category_affinity", "listing_features:category_id"),
    "numeric",
    "The user's share for the listing's category (0 if absent; null without a user snapshot).",
)
def user_category_affinity(frame: pd.DataFrame) -> list[float]:
    return _share_of(frame["user_features:category_affinity"], frame["listing_features:category_id"])


@on_demand_feature(
    "user_city_affinity",
    ("user_features:city_affinity", "listing_features:city"),
    "numeric",
    "The user's share for the listing's city (0 if absent; null without a user snapshot).",
)
def user_city_affinity(frame: pd.DataFrame) -> list[float]:
    return _share_of(frame["user_features:city_affinity"], frame["listing_features:city"])


@on_demand_feature(
    "price_gap",
    ("listing_features:price_pct", "user_features:price_sensitivity"),
    "numeric",
    "abs(price_pct - price_sensitivity): how far the listing is from the user's usual price level.",
)
def price_gap(frame: pd.DataFrame) -> pd.Series:
    pct = pd.to_numeric(frame["listing_features:price_pct"], errors="coerce").astype(float)
    sensitivity = pd.to_numeric(frame["user_features:price_sensitivity"], errors="coerce").astype(float)
    return (pct - sensitivity).abs()
